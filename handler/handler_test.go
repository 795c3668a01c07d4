package handler

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"putallkv/kitex_gen/kv"
)

// faulty is a KVService whose PutAll panics and whose GetAll fails with a plain error: the two
// ways a bug can reach the boundary.
type faulty struct{ kv.KVService }

func (faulty) PutAll(context.Context, *kv.PutAllRequest) (*kv.PutAllResponse, error) {
	panic("boom")
}

func (faulty) GetAll(context.Context, *kv.GetAllRequest) (*kv.GetAllResponse, error) {
	return nil, errors.New("disk on fire")
}

func (faulty) Get(context.Context, *kv.GetRequest) (*kv.GetResponse, error) {
	return nil, &kv.KVError{Code: kv.ErrorCode_NOT_FOUND, Message: "no such key"}
}

func TestGuard(t *testing.T) {
	var logs bytes.Buffer
	h := New(faulty{}, slog.New(slog.NewTextHandler(&logs, nil)))
	ctx := context.Background()

	code := func(err error) kv.ErrorCode {
		var ke *kv.KVError
		if !errors.As(err, &ke) {
			t.Fatalf("err = %v; want a KVError", err)
		}
		return ke.Code
	}
	if _, err := h.PutAll(ctx, &kv.PutAllRequest{}); code(err) != kv.ErrorCode_INTERNAL {
		t.Errorf("panic: %v", err)
	}
	if _, err := h.GetAll(ctx, &kv.GetAllRequest{}); code(err) != kv.ErrorCode_INTERNAL || strings.Contains(err.Error(), "fire") {
		t.Errorf("plain error: %v (the cause must not reach the caller)", err)
	}
	if _, err := h.Get(ctx, &kv.GetRequest{}); code(err) != kv.ErrorCode_NOT_FOUND {
		t.Errorf("API error changed: %v", err)
	}
	if _, err := h.Put(ctx, nil); code(err) != kv.ErrorCode_INVALID_ARGUMENT {
		t.Errorf("nil request: %v", err)
	}
	out := logs.String()
	if !strings.Contains(out, "boom") || !strings.Contains(out, "disk on fire") || strings.Count(out, "internal error") != 2 {
		t.Errorf("log = %q; want both internal errors logged once", out)
	}
}
