package handler

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cloudwego/kitex/pkg/rpcinfo"
)

// callWithTimeout runs CallerDeadline around next for a call whose caller sent timeout.
func callWithTimeout(timeout time.Duration, next func(ctx context.Context) error) error {
	cfg := rpcinfo.NewRPCConfig()
	_ = rpcinfo.AsMutableRPCConfig(cfg).SetRPCTimeout(timeout)
	ri := rpcinfo.NewRPCInfo(nil, nil, nil, cfg, nil)
	ctx := rpcinfo.NewCtxWithRPCInfo(context.Background(), ri)
	return CallerDeadline(func(ctx context.Context, _, _ any) error { return next(ctx) })(ctx, nil, nil)
}

// TestCallerDeadline checks that a call's context carries the caller's deadline while the
// call runs and is released once it returns, and that a call without one gets none.
func TestCallerDeadline(t *testing.T) {
	var seen context.Context
	err := callWithTimeout(time.Hour, func(ctx context.Context) error {
		d, ok := ctx.Deadline()
		if !ok || time.Until(d) > time.Hour || time.Until(d) < 59*time.Minute {
			t.Errorf("deadline %v %v; want about an hour from now", d, ok)
		}
		seen = ctx
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(seen.Err(), context.Canceled) {
		t.Fatalf("after the call returned, its context's err = %v; want it released (context.Canceled)", seen.Err())
	}
	_ = callWithTimeout(0, func(ctx context.Context) error {
		if _, ok := ctx.Deadline(); ok || ctx.Done() != nil {
			t.Error("a call without a caller deadline got one")
		}
		return nil
	})
}
