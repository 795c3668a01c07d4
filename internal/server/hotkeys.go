package server

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/putallkv/putallkv/biz/service"
	"github.com/putallkv/putallkv/pkg/config"
	"github.com/putallkv/putallkv/pkg/hotkey"
	"github.com/putallkv/putallkv/pkg/metrics"
)

// hotKeys builds the hot-key detector hot_keys configures (nil when sample_every is 0) and
// registers its series: how many keys are hot and the share of the writes they take. Key names
// are never label values (unbounded, and possibly sensitive); they are only at
// GET /admin/hotkeys, which needs the admin role like every admin command.
func hotKeys(cfg config.HotKeysConfig, reg prometheus.Registerer) (*hotkey.Detector, error) {
	if cfg.SampleEvery == 0 {
		return nil, nil
	}
	d := hotkey.New(hotkey.Config{SampleEvery: cfg.SampleEvery, Threshold: cfg.Threshold,
		Window: cfg.Window, KeepAlive: cfg.KeepAlive, MaxKeys: cfg.MaxKeys})
	count := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: metrics.Namespace, Name: "hot_keys",
		Help: "Keys written hot now (hot_keys.threshold sampled writes within hot_keys.window); their names are at GET /admin/hotkeys."},
		func() float64 { return float64(len(d.Hot())) })
	share := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: metrics.Namespace, Name: "hot_keys_write_share",
		Help: "Estimated fraction of the writes of the last hot_keys.window that went to the keys hot now."},
		func() float64 {
			sum := 0.0
			for _, k := range d.Hot() {
				sum += k.Share
			}
			return min(sum, 1)
		})
	for _, c := range []prometheus.Collector{count, share} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// observer is d as the service's KeyObserver, or nil when detection is off (a nil *Detector in
// the interface would not be nil).
func observer(d *hotkey.Detector) service.KeyObserver {
	if d == nil {
		return nil
	}
	return d
}
