package kvclient_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/kvclient"
)

// TestMetrics checks the SDK's series against a real server: calls by method and code,
// their durations, and the sizes of coalesced round trips and of the Batcher's PutAlls.
func TestMetrics(t *testing.T) {
	addr := startServer(t)
	reg := prometheus.NewRegistry()
	m, err := kvclient.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kvclient.NewMetrics(reg); err == nil {
		t.Fatal("registering the series twice must fail")
	}
	c, err := kvclient.New([]string{addr}, kvclient.WithMetrics(m), kvclient.WithCoalescing(1))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	ctx := context.Background()

	if _, err := c.Get(ctx, &kv.GetRequest{Key: "absent"}); !errors.Is(err, kvclient.ErrNotFound) {
		t.Fatalf("Get: %v, want NOT_FOUND", err)
	}
	put := &kv.PutAllRequest{Mode: kv.WriteMode_ATOMIC, Entries: []*kv.Entry{{Key: "a", Value: []byte("1")}}}
	if _, err := c.PutAll(ctx, put); err != nil {
		t.Fatal(err)
	}
	b := c.NewBatcher()
	if _, err := b.Put(ctx, "b", []byte("2")); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	got := samples(t, reg)
	for series, want := range map[string]float64{
		`putallkv_client_calls_total{code="NOT_FOUND",method="Get"}`:   1,
		`putallkv_client_calls_total{code="OK",method="PutAll"}`:       2, // the caller's and the Batcher's
		`putallkv_client_call_duration_seconds_count{method="Get"}`:    1,
		`putallkv_client_call_duration_seconds_count{method="PutAll"}`: 2,
		`putallkv_client_batch_size_count{source="coalescing"}`:        2, // the caller's PutAll and the Batcher's, each alone
		`putallkv_client_batch_size_sum{source="coalescing"}`:          2,
		`putallkv_client_batch_size_count{source="batcher"}`:           1,
		`putallkv_client_batch_size_sum{source="batcher"}`:             1,
	} {
		if got[series] != want {
			t.Errorf("%s = %v, want %v", series, got[series], want)
		}
	}
	if len(got) != 10 {
		t.Errorf("series %v, want only the 8 above and the 2 duration sums", got)
	}
}

// samples gathers reg into one value per series: a counter's value, a histogram's _count
// and _sum.
func samples(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			series := "{" + strings.Join(labels, ",") + "}"
			if h := m.GetHistogram(); h != nil {
				out[f.GetName()+"_count"+series] = float64(h.GetSampleCount())
				out[f.GetName()+"_sum"+series] = h.GetSampleSum()
				continue
			}
			out[f.GetName()+series] = m.GetCounter().GetValue()
		}
	}
	return out
}
