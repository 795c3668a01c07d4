package handler

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/traceid"
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

// many is a KVService whose PutAllMany is f: what the service under the handler answers.
type many struct {
	kv.KVService
	f func(context.Context, *kv.PutAllManyRequest) (*kv.PutAllManyResponse, error)
}

func (m many) PutAllMany(ctx context.Context, req *kv.PutAllManyRequest) (*kv.PutAllManyResponse, error) {
	return m.f(ctx, req)
}

func TestPutAllManyGuard(t *testing.T) {
	outcomes := []*kv.PutAllOutcome{
		{Response: &kv.PutAllResponse{Revision: 7, Applied: 1}},
		{Error: &kv.KVError{Code: kv.ErrorCode_INTERNAL, Message: "store: disk on fire"}},
		{Error: &kv.KVError{Code: kv.ErrorCode_VERSION_MISMATCH, Message: "key \"k\": version mismatch"}},
	}
	want := fmt.Sprint(outcomes)
	req := &kv.PutAllManyRequest{Calls: []*kv.PutAllRequest{{}, {}, {}}}
	tests := []struct {
		name string
		req  *kv.PutAllManyRequest
		f    func(context.Context, *kv.PutAllManyRequest) (*kv.PutAllManyResponse, error)
		code kv.ErrorCode // of the whole request; OK: outcomes answered
		// logs are what the one "internal error" line logged must hold; none: nothing is
		// logged.
		logs []string
	}{
		{"an INTERNAL outcome", req, func(context.Context, *kv.PutAllManyRequest) (*kv.PutAllManyResponse, error) {
			return &kv.PutAllManyResponse{Outcomes: outcomes}, nil
		}, kv.ErrorCode_OK, []string{"method=PutAll ", "disk on fire", "request_id=rid-1"}},
		{"a panic", req, func(context.Context, *kv.PutAllManyRequest) (*kv.PutAllManyResponse, error) {
			panic("boom")
		}, kv.ErrorCode_INTERNAL, []string{"method=PutAllMany ", "boom", "request_id=rid-1", "stack="}},
		{"a fault", req, func(context.Context, *kv.PutAllManyRequest) (*kv.PutAllManyResponse, error) {
			return nil, errors.New("PutAllMany: panic in a call: boom")
		}, kv.ErrorCode_INTERNAL, []string{"method=PutAllMany ", "panic in a call: boom"}},
		{"refused whole", req, func(context.Context, *kv.PutAllManyRequest) (*kv.PutAllManyResponse, error) {
			return nil, &kv.KVError{Code: kv.ErrorCode_TOO_LARGE, Message: "too many calls"}
		}, kv.ErrorCode_TOO_LARGE, nil},
		{"missing request", nil, func(context.Context, *kv.PutAllManyRequest) (*kv.PutAllManyResponse, error) {
			t.Error("called with a missing request")
			return nil, nil
		}, kv.ErrorCode_INVALID_ARGUMENT, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			h := New(many{f: tc.f}, slog.New(slog.NewTextHandler(&logs, nil)))
			var resp *kv.PutAllManyResponse
			var err error
			func() {
				// The boundary must never panic; report it as this test's failure rather than
				// stop the package's tests.
				defer func() {
					if p := recover(); p != nil {
						t.Fatalf("the handler panicked: %v", p)
					}
				}()
				resp, err = h.PutAllMany(traceid.With(context.Background(), "rid-1"), tc.req)
			}()
			if tc.code == kv.ErrorCode_OK {
				if err != nil {
					t.Fatalf("err = %v; want the outcomes", err)
				}
				if got := fmt.Sprint(resp.GetOutcomes()); got != want {
					t.Fatalf("outcomes = %s; want %s, unchanged", got, want)
				}
			} else {
				var ke *kv.KVError
				if !errors.As(err, &ke) || ke.Code != tc.code {
					t.Fatalf("err = %v; want a KVError %v", err, tc.code)
				}
				if resp != nil {
					t.Errorf("resp = %v; want none with a whole-request error", resp)
				}
				if tc.code == kv.ErrorCode_INTERNAL && (strings.Contains(ke.Message, "boom") || strings.Contains(ke.Message, "panic")) {
					t.Errorf("message %q: the cause must not reach the caller", ke.Message)
				}
			}
			out := logs.String()
			if len(tc.logs) == 0 {
				if out != "" {
					t.Errorf("log = %q; want nothing logged", out)
				}
				return
			}
			if n := strings.Count(out, "internal error"); n != 1 || strings.Count(out, "\n") != 1 {
				t.Errorf("log = %q; want one internal error line", out)
			}
			for _, s := range tc.logs {
				if !strings.Contains(out, s) {
					t.Errorf("log = %q; want it to hold %q", out, s)
				}
			}
			if strings.Contains(out, "VERSION_MISMATCH") || strings.Contains(out, "mismatch") {
				t.Errorf("log = %q; a call's API error is not an operator's matter", out)
			}
		})
	}
}
