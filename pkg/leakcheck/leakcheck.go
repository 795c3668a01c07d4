// Package leakcheck is the goroutine-leak check of this module's tests: go.uber.org/goleak,
// told about the goroutines CloudWeGo starts once per process and never stops, so that a test
// fails only on goroutines of its own.
package leakcheck

import (
	"slices"
	"testing"

	"go.uber.org/goleak"
)

// frameworkGoroutines are process-wide goroutines of Kitex, netpoll and Hertz that outlive
// any one client or server.
var frameworkGoroutines = []goleak.Option{
	// Kitex keeps one balancer factory per address list, each with a watcher that never exits.
	goleak.IgnoreTopFunction("github.com/cloudwego/kitex/pkg/loadbalance/lbcache.(*BalancerFactory).watcher"),
	// Kitex's shared tickers (the balancers' resolver refresh, stopped only when a balancer
	// expires 15-30 s after its last use; a long pool's idle sweeper runs on the same function).
	goleak.IgnoreTopFunction("github.com/cloudwego/kitex/pkg/utils.(*SharedTicker).Tick"),
	// Kitex's RPC-timeout worker pool, whose workers exit only after a minute idle.
	goleak.IgnoreTopFunction("github.com/cloudwego/kitex/client.(*timeoutPool).createTicker.func1"),
	goleak.IgnoreTopFunction("github.com/cloudwego/kitex/client.(*timeoutPool).createWorker.func1"),
	// netpoll's epoll loops, started once per process and shared by Kitex and Hertz.
	goleak.IgnoreAnyFunction("github.com/cloudwego/netpoll.(*defaultPoll).Wait"),
	// Hertz's cached Date header, refreshed every second by one goroutine started with the
	// first server.
	goleak.IgnoreAnyFunction("github.com/cloudwego/hertz/pkg/protocol.UpdateServerDate.func1"),
}

// VerifyTestMain runs the package's tests, then fails if goroutines other than the
// frameworks' own are still running. Call it from TestMain; opts go to goleak beside the
// frameworks' (goleak.Cleanup, say, to remove what TestMain made before the process exits).
func VerifyTestMain(m *testing.M, opts ...goleak.Option) {
	goleak.VerifyTestMain(m, slices.Concat(frameworkGoroutines, opts)...)
}
