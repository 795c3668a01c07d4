package kvclient

import (
	"context"
	"errors"
	"testing"

	"github.com/putallkv/putallkv/internal/testnet"
)

// TestLoaderAgainstNothing checks a Loader's options and that a Loader of an address where
// nothing listens fails with UNAVAILABLE at once (Load's server side is tested end to end in
// test/e2e).
func TestLoaderAgainstNothing(t *testing.T) {
	c, err := New([]string{testnet.DeadAddr(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	for _, opt := range []LoaderOption{WithLoadWindow(0), WithLoadAckTimeout(-1)} {
		if _, err := c.NewLoader(ctx, opt); err == nil {
			t.Error("NewLoader accepted a window or timeout that is not positive")
		}
	}
	_, err = c.NewLoader(ctx)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("NewLoader of a dead address: %v; want UNAVAILABLE", err)
	}
	if err := c.Load(ctx, nil); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Client.Load: %v; want INVALID_ARGUMENT", err)
	}
}
