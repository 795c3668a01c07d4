package kvclient

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cloudwego/kitex/client"
	"github.com/cloudwego/kitex/pkg/endpoint"
	"github.com/cloudwego/kitex/pkg/kerrors"
	"github.com/cloudwego/kitex/pkg/remote"

	"github.com/putallkv/putallkv/internal/testnet"
	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/leakcheck"
	"github.com/putallkv/putallkv/pkg/rpcguard"
	"github.com/putallkv/putallkv/pkg/traceid"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// attempts records what each attempt of a call carried, through a Kitex middleware (the
// WithKitexOptions escape hatch), so tests see the real client's behaviour.
type attempts struct {
	mu  sync.Mutex
	ids []string // trace id of each attempt
}

func (a *attempts) middleware(next endpoint.Endpoint) endpoint.Endpoint {
	return func(ctx context.Context, req, resp any) error {
		id, _ := traceid.From(ctx)
		a.mu.Lock()
		a.ids = append(a.ids, id)
		a.mu.Unlock()
		return next(ctx, req, resp)
	}
}

func (a *attempts) take() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	ids := a.ids
	a.ids = nil
	return ids
}

func newDeadClient(t *testing.T, a *attempts) *Client {
	t.Helper()
	c, err := New([]string{testnet.DeadAddr(t)},
		WithRPCTimeout(time.Second),
		WithConnectTimeout(200*time.Millisecond),
		WithRetries(2),
		// Each call's own retries are under test here, not the budget they share.
		WithRetryBudget(1, 100),
		WithKitexOptions(client.WithMiddleware(a.middleware)),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	return c
}

// TestUnreachableServer checks, against an address where nothing listens, that every method
// fails with ErrUnavailable and makes as many attempts as its retry policy allows, all
// under one trace id.
func TestUnreachableServer(t *testing.T) {
	id := "req-1"
	var a attempts
	c := newDeadClient(t, &a)
	tests := []struct {
		name string
		call func(ctx context.Context) error
		want int // attempts
	}{
		{"Get", func(ctx context.Context) error {
			_, err := c.Get(ctx, &kv.GetRequest{Key: "k"})
			return err
		}, 3},
		{"GetAll", func(ctx context.Context) error {
			_, err := c.GetAll(ctx, &kv.GetAllRequest{Keys: []string{"k"}})
			return err
		}, 3},
		{"Put", func(ctx context.Context) error {
			_, err := c.Put(ctx, &kv.PutRequest{Key: "k"})
			return err
		}, 1},
		{"Put with request_id", func(ctx context.Context) error {
			_, err := c.Put(ctx, &kv.PutRequest{Key: "k", RequestId: &id})
			return err
		}, 3},
		{"Delete", func(ctx context.Context) error {
			_, err := c.Delete(ctx, &kv.DeleteRequest{Key: "k"})
			return err
		}, 1},
		{"Delete with request_id", func(ctx context.Context) error {
			_, err := c.Delete(ctx, &kv.DeleteRequest{Key: "k", RequestId: &id})
			return err
		}, 3},
		{"PutAll", func(ctx context.Context) error {
			_, err := c.PutAll(ctx, &kv.PutAllRequest{Entries: []*kv.Entry{{Key: "k"}}})
			return err
		}, 1},
		{"PutAll with request_id", func(ctx context.Context) error {
			_, err := c.PutAll(ctx, &kv.PutAllRequest{Entries: []*kv.Entry{{Key: "k"}}, RequestId: &id})
			return err
		}, 3},
		{"DeleteAll", func(ctx context.Context) error {
			_, err := c.DeleteAll(ctx, &kv.DeleteAllRequest{Entries: []*kv.DeleteEntry{{Key: "k"}}})
			return err
		}, 1},
		{"DeleteAll with request_id", func(ctx context.Context) error {
			_, err := c.DeleteAll(ctx, &kv.DeleteAllRequest{Entries: []*kv.DeleteEntry{{Key: "k"}}, RequestId: &id})
			return err
		}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := tt.call(ctx)
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("err = %v, want ErrUnavailable", err)
			}
			var e *Error
			if !errors.As(err, &e) || e.Unwrap() == nil {
				t.Fatalf("err = %#v, want an *Error wrapping the transport cause", err)
			}
			// Nothing listens: the error says so, rather than netpoll's "closed by peer".
			if !errors.Is(err, syscall.ECONNREFUSED) || !strings.Contains(err.Error(), "connection refused") {
				t.Errorf("err = %v, want it to say the connection was refused", err)
			}
			ids := a.take()
			if len(ids) != tt.want {
				t.Fatalf("%d attempts, want %d", len(ids), tt.want)
			}
			for _, got := range ids {
				if got == "" || got != ids[0] {
					t.Fatalf("attempts carried trace ids %q, want one non-empty id", ids)
				}
			}
		})
	}
}

func TestCallerTraceIDKept(t *testing.T) {
	var a attempts
	c := newDeadClient(t, &a)
	ctx := traceid.With(context.Background(), "trace-42")
	if _, err := c.Get(ctx, &kv.GetRequest{Key: "k"}); err == nil {
		t.Fatal("Get to a dead address succeeded")
	}
	for _, id := range a.take() {
		if id != "trace-42" {
			t.Fatalf("attempt carried trace id %q, want the caller's trace-42", id)
		}
	}
}

func TestCanceledContextStopsRetries(t *testing.T) {
	var a attempts
	c := newDeadClient(t, &a)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.Get(ctx, &kv.GetRequest{Key: "k"})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if n := len(a.take()); n > 1 {
		t.Fatalf("%d attempts with a canceled context, want at most 1", n)
	}
}

func TestNilRequest(t *testing.T) {
	var a attempts
	c := newDeadClient(t, &a)
	_, err := c.PutAll(context.Background(), nil)
	if !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("err = %v, want ErrInvalidArgument", err)
	}
	if n := len(a.take()); n != 0 {
		t.Fatalf("a nil request was sent %d times", n)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	tests := []struct {
		name  string
		addrs []string
		opts  []Option
	}{
		{"no address", nil, nil},
		{"address without port", []string{"127.0.0.1"}, nil},
		{"negative retries", []string{"127.0.0.1:1"}, []Option{WithRetries(-1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if c, err := New(tt.addrs, tt.opts...); err == nil {
				_ = c.Close()
				t.Fatal("New succeeded")
			}
		})
	}
}

// sentinels maps every failure code to its sentinel: the test fails if a code lacks one.
var sentinels = map[kv.ErrorCode]error{
	kv.ErrorCode_INVALID_ARGUMENT:     ErrInvalidArgument,
	kv.ErrorCode_NOT_FOUND:            ErrNotFound,
	kv.ErrorCode_VERSION_MISMATCH:     ErrVersionMismatch,
	kv.ErrorCode_ALREADY_EXISTS:       ErrAlreadyExists,
	kv.ErrorCode_RESOURCE_EXHAUSTED:   ErrResourceExhausted,
	kv.ErrorCode_IDEMPOTENCY_CONFLICT: ErrIdempotencyConflict,
	kv.ErrorCode_TOO_LARGE:            ErrTooLarge,
	kv.ErrorCode_UNAUTHENTICATED:      ErrUnauthenticated,
	kv.ErrorCode_PERMISSION_DENIED:    ErrPermissionDenied,
	kv.ErrorCode_UNAVAILABLE:          ErrUnavailable,
	kv.ErrorCode_INTERNAL:             ErrInternal,
	kv.ErrorCode_CROSS_SLOT:           ErrCrossSlot,
}

func TestServerErrorMapping(t *testing.T) {
	for code := kv.ErrorCode_INVALID_ARGUMENT; code.String() != "<UNSET>"; code++ {
		t.Run(code.String(), func(t *testing.T) {
			sentinel, ok := sentinels[code]
			if !ok {
				t.Fatalf("no sentinel for code %v", code)
			}
			failed := []*kv.KeyStatus{{Key: "a", Code: code, Version: 7}}
			thrown := &kv.KVError{Code: code, Message: "boom", RetryAfterMs: 1500, Failed: failed}
			// The generated client returns the exception as is; accept it wrapped too.
			for _, in := range []error{thrown, fmt.Errorf("wrapped: %w", thrown)} {
				err := error(toError("PutAll", in))
				for other, s := range sentinels {
					if got := errors.Is(err, s); got != (other == code) {
						t.Errorf("errors.Is(%v, %v) = %v", err, s, got)
					}
				}
				if !errors.Is(err, sentinel) {
					t.Errorf("errors.Is(%v, sentinel) = false", err)
				}
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("errors.As(%v, *Error) = false", err)
				}
				if e.Code != code || e.Message != "boom" || e.RetryAfter != 1500*time.Millisecond || len(e.Failed) != 1 || e.Failed[0] != failed[0] {
					t.Errorf("got %+v", e)
				}
				if !e.thrownByServer() {
					t.Error("thrownByServer() = false for a server's KVError")
				}
				var ke *kv.KVError
				if !errors.As(err, &ke) || ke != thrown {
					t.Error("the server's *kv.KVError is not reachable through Unwrap")
				}
				if CodeOf(err) != code || CodeOf(in) != code || CodeOf(sentinel) != code {
					t.Errorf("CodeOf disagrees with %v", code)
				}
			}
		})
	}
}

func TestServerErrorWithCodeOKIsInternal(t *testing.T) {
	err := toError("Get", &kv.KVError{Code: kv.ErrorCode_OK, Message: "huh"})
	if !errors.Is(err, ErrInternal) {
		t.Fatalf("err = %v, want ErrInternal", err)
	}
}

func TestTransportErrorMapping(t *testing.T) {
	cause := fmt.Errorf("rpc timeout: %w", context.DeadlineExceeded)
	err := error(toError("Get", cause))
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v does not unwrap to its cause", err)
	}
	var e *Error
	if !errors.As(err, &e) || e.thrownByServer() {
		t.Fatalf("err = %#v, want an *Error not from the server", err)
	}
	if want := "UNAVAILABLE: Get got no answer: rpc timeout: context deadline exceeded"; err.Error() != want {
		t.Fatalf("message %q, want %q", err.Error(), want)
	}
}

// TestRefusalMapping checks that a request the server refused unread, which Kitex reports
// as a transport exception of one of rpcguard's types, maps to its code with the server's
// message, and is not retried.
func TestRefusalMapping(t *testing.T) {
	for _, tc := range []struct {
		typeID int32
		want   error
		msg    string
	}{
		{rpcguard.TypeTooLarge, ErrTooLarge, "TOO_LARGE: request is over the server's limit"},
		{rpcguard.TypeMalformed, ErrInvalidArgument, "INVALID_ARGUMENT: request is over the server's limit"},
	} {
		refusal := remote.NewTransErrorWithMsg(tc.typeID, "request is over the server's limit")
		err := error(toError("PutAll", kerrors.ErrRemoteOrNetwork.WithCause(refusal)))
		if !errors.Is(err, tc.want) {
			t.Fatalf("err = %v, want %v", err, tc.want)
		}
		if err.Error() != tc.msg {
			t.Fatalf("message %q, want %q", err.Error(), tc.msg)
		}
		if writePolicy("id").allows(err.(*Error)) {
			t.Fatal("a refused write would be retried")
		}
	}
}

func TestCodeOf(t *testing.T) {
	tests := []struct {
		err  error
		want kv.ErrorCode
	}{
		{nil, kv.ErrorCode_OK},
		{&Error{Code: kv.ErrorCode_TOO_LARGE}, kv.ErrorCode_TOO_LARGE},
		{fmt.Errorf("ctx: %w", &Error{Code: kv.ErrorCode_NOT_FOUND}), kv.ErrorCode_NOT_FOUND},
		{&kv.KVError{Code: kv.ErrorCode_ALREADY_EXISTS}, kv.ErrorCode_ALREADY_EXISTS},
		{ErrResourceExhausted, kv.ErrorCode_RESOURCE_EXHAUSTED},
		{fmt.Errorf("ctx: %w", ErrUnauthenticated), kv.ErrorCode_UNAUTHENTICATED},
		{errors.New("connection reset"), kv.ErrorCode_UNAVAILABLE},
	}
	for _, tt := range tests {
		if got := CodeOf(tt.err); got != tt.want {
			t.Errorf("CodeOf(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestRetryPolicy(t *testing.T) {
	unanswered := toError("Put", errors.New("connection refused"))
	serverUnavailable := toError("Put", &kv.KVError{Code: kv.ErrorCode_UNAVAILABLE})
	serverRefused := toError("Put", &kv.KVError{Code: kv.ErrorCode_RESOURCE_EXHAUSTED, RetryAfterMs: 10})
	tests := []struct {
		name string
		p    policy
		err  *Error
		want bool
	}{
		{"read, no answer", retryUnavailable, unanswered, true},
		{"read, server unavailable", retryUnavailable, serverUnavailable, true},
		{"read, server refused", retryUnavailable, serverRefused, false},
		{"keyed write, no answer", writePolicy("id"), unanswered, true},
		{"keyed write, server unavailable", writePolicy("id"), serverUnavailable, false},
		{"keyed write, server refused", writePolicy("id"), serverRefused, false},
		{"unkeyed write, no answer", writePolicy(""), unanswered, false},
		{"unkeyed write, server unavailable", writePolicy(""), serverUnavailable, false},
	}
	for _, tt := range tests {
		if got := tt.p.allows(tt.err); got != tt.want {
			t.Errorf("%s: allows = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestBackoffBounds(t *testing.T) {
	for attempt := range 40 {
		ceiling := maxBackoff
		if attempt < 6 {
			ceiling = min(baseBackoff<<attempt, maxBackoff)
		}
		for range 50 {
			d := backoff(attempt, 0)
			if d < ceiling/2 || d > ceiling {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", attempt, d, ceiling/2, ceiling)
			}
		}
	}
	if d := backoff(0, 3*time.Second); d != 3*time.Second {
		t.Fatalf("backoff with retry-after 3s = %v", d)
	}
}
