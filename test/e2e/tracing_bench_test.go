package e2e

import (
	"context"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/putallkv/putallkv/internal/server"
	"github.com/putallkv/putallkv/internal/testnet"
	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/config"
	"github.com/putallkv/putallkv/pkg/kvclient"
)

// BenchmarkPutAllTracing measures what tracing costs a PutAll of 16 keys of 64 bytes from 50
// concurrent callers through the plain SDK against the real server (memory only), client and
// server in this process: tracing off; on but sampling nothing (sample_ratio 0); on at
// sample_ratio 1, every span posted over OTLP/HTTP to a receiver on loopback (which counts
// them); and on with the SDK's client spans too, posted to the same receiver. One run measures
// the four in turn; repeat it (go test's -count repeats each variant before the next) so that
// they alternate on a shared machine (docs/performance.md, Tracing):
//
//	go test -c -o /tmp/e2e.test ./test/e2e
//	for i in 1 2 3 4 5; do /tmp/e2e.test -test.run '^$' -test.bench PutAllTracing -test.benchtime 3s; done
//
// cpu-µs/op is the CPU time of the whole process (client, server and receiver) per call;
// spans/op is what reached the receiver (the batcher drops spans when its queue is full).
func BenchmarkPutAllTracing(b *testing.B) {
	for _, v := range []struct {
		name              string
		server, clientToo bool
		ratio             float64
	}{{"off", false, false, 1}, {"sampled-out", true, false, 0}, {"on", true, false, 1}, {"on+sdk", true, true, 1}} {
		b.Run(v.name, func(b *testing.B) {
			recv := startOTLPReceiver(b, true)
			endpoint := "http://" + recv.ln.Addr().String() + "/v1/traces"
			cfg := testConfig(b)
			cfg.Tracing = config.TracingConfig{Enabled: v.server, Endpoint: endpoint, SampleRatio: v.ratio, ServiceName: "putallkv-bench"}
			srv, err := server.Start(cfg, quiet)
			if err != nil {
				b.Fatal(err)
			}
			var opts []kvclient.Option
			var tp *sdktrace.TracerProvider
			if v.clientToo {
				exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(endpoint))
				if err != nil {
					b.Fatal(err)
				}
				tp = sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp))
				opts = append(opts, kvclient.WithTracerProvider(tp))
			}
			c := newClient(b, srv.RPCAddr(), append(opts, kvclient.WithPool(64, 64, time.Minute))...)
			var caller atomic.Int64
			value := make([]byte, 64)
			b.SetParallelism(25) // 50 callers on 2 cores
			cpu := cpuTime()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				id := caller.Add(1)
				req := &kv.PutAllRequest{Mode: kv.WriteMode_ATOMIC, Entries: make([]*kv.Entry, 16)}
				for i := range req.Entries {
					req.Entries[i] = &kv.Entry{Key: fmt.Sprintf("bench/%d/%d", id, i), Value: value}
				}
				for pb.Next() {
					if _, err := c.PutAll(context.Background(), req); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64((cpuTime()-cpu).Microseconds())/float64(b.N), "cpu-µs/op")
			if tp != nil {
				_ = tp.Shutdown(context.Background())
			}
			testnet.Stop(b, srv) // exports the spans still batched
			recv.mu.Lock()
			b.ReportMetric(float64(recv.count)/float64(b.N), "spans/op")
			recv.mu.Unlock()
		})
	}
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
