// Package handler is the KVService implementation that Kitex serves. It is thin: it guards the
// boundary (a missing request, a panic, an error that is not the API's exception) and logs what
// an operator must see, and leaves the use cases to biz/service.
package handler

import (
	"context"
	"errors"
	"log/slog"
	"runtime/debug"
	"strconv"

	"github.com/cloudwego/kitex/pkg/kerrors"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/rpcguard"
	"github.com/putallkv/putallkv/pkg/traceid"
)

// KVService serves the API by delegating to a kv.KVService (the biz/service implementation).
type KVService struct {
	next kv.KVService
	log  *slog.Logger
}

var _ kv.KVService = (*KVService)(nil)

// New returns the handler over next, logging to log.
func New(next kv.KVService, log *slog.Logger) *KVService {
	return &KVService{next: next, log: log}
}

// guard calls f(ctx, req) and makes its outcome fit the API: a nil request is INVALID_ARGUMENT,
// a panic or an error that is not a *kv.KVError becomes INTERNAL (logged with the caller's
// trace id, never shown to the caller).
func guard[Req, Resp any](ctx context.Context, h *KVService, method string, req *Req,
	f func(context.Context, *Req) (Resp, error)) (resp Resp, err error) {
	defer func() {
		if p := recover(); p != nil {
			h.internal(ctx, method, "panic", p, string(debug.Stack()))
			var zero Resp
			resp, err = zero, &kv.KVError{Code: kv.ErrorCode_INTERNAL, Message: "internal error"}
		}
	}()
	if req == nil {
		return resp, &kv.KVError{Code: kv.ErrorCode_INVALID_ARGUMENT, Message: "the request is missing"}
	}
	resp, err = f(ctx, req)
	if err == nil {
		return resp, nil
	}
	var ke *kv.KVError
	if !errors.As(err, &ke) {
		h.internal(ctx, method, "error", err.Error(), "")
		return resp, &kv.KVError{Code: kv.ErrorCode_INTERNAL, Message: "internal error"}
	}
	if ke.Code == kv.ErrorCode_INTERNAL {
		h.internal(ctx, method, "error", ke.Message, "")
	}
	return resp, ke
}

func (h *KVService) internal(ctx context.Context, method, what string, detail any, stack string) {
	id, _ := traceid.From(ctx)
	attrs := []any{"method", method, what, detail, "request_id", id}
	if stack != "" {
		attrs = append(attrs, "stack", stack)
	}
	h.log.Error("internal error", attrs...)
}

// Put implements kv.KVService.
func (h *KVService) Put(ctx context.Context, req *kv.PutRequest) (*kv.PutResponse, error) {
	return guard(ctx, h, "Put", req, h.next.Put)
}

// Get implements kv.KVService.
func (h *KVService) Get(ctx context.Context, req *kv.GetRequest) (*kv.GetResponse, error) {
	return guard(ctx, h, "Get", req, h.next.Get)
}

// Delete implements kv.KVService.
func (h *KVService) Delete(ctx context.Context, req *kv.DeleteRequest) (*kv.DeleteResponse, error) {
	return guard(ctx, h, "Delete", req, h.next.Delete)
}

// PutAll implements kv.KVService.
func (h *KVService) PutAll(ctx context.Context, req *kv.PutAllRequest) (*kv.PutAllResponse, error) {
	return guard(ctx, h, "PutAll", req, h.next.PutAll)
}

// GetAll implements kv.KVService.
func (h *KVService) GetAll(ctx context.Context, req *kv.GetAllRequest) (*kv.GetAllResponse, error) {
	return guard(ctx, h, "GetAll", req, h.next.GetAll)
}

// Scan implements kv.KVService.
func (h *KVService) Scan(ctx context.Context, req *kv.ScanRequest) (*kv.ScanResponse, error) {
	return guard(ctx, h, "Scan", req, h.next.Scan)
}

// DeleteAll implements kv.KVService.
func (h *KVService) DeleteAll(ctx context.Context, req *kv.DeleteAllRequest) (*kv.DeleteAllResponse, error) {
	return guard(ctx, h, "DeleteAll", req, h.next.DeleteAll)
}

// PutAllMany implements kv.KVService. A call's INTERNAL outcome is logged as a PutAll's
// would be.
func (h *KVService) PutAllMany(ctx context.Context, req *kv.PutAllManyRequest) (*kv.PutAllManyResponse, error) {
	resp, err := guard(ctx, h, "PutAllMany", req, h.next.PutAllMany)
	if err != nil {
		return nil, err
	}
	for _, o := range resp.Outcomes {
		if e := o.GetError(); e != nil && e.Code == kv.ErrorCode_INTERNAL {
			h.internal(ctx, "PutAll", "error", e.Message, "")
		}
	}
	return resp, err
}

// Load implements kv.KVService. A stream that fails ends with its error as a Kitex business
// status whose code is the kv.ErrorCode (kvclient turns it back into an *Error); a panic ends
// it INTERNAL, logged, as guard does for calls. A chunk whose bytes
// rpcguard refused ends it INVALID_ARGUMENT; a failure of the stream itself (the client gone),
// UNAVAILABLE.
func (h *KVService) Load(ctx context.Context, stream kv.KVService_LoadServer) error {
	_, err := guard(ctx, h, "Load", &stream, func(ctx context.Context, st *kv.KVService_LoadServer) (struct{}, error) {
		if *st == nil {
			return struct{}{}, &kv.KVError{Code: kv.ErrorCode_INVALID_ARGUMENT, Message: "the stream is missing"}
		}
		err := h.next.Load(ctx, *st)
		if _, ok := errors.AsType[*kv.KVError](err); ok || err == nil {
			return struct{}{}, err
		}
		// What the stream itself returned: bytes rpcguard refused, or a stream that failed
		// under the handler (the client went away), which is not the server's bug.
		if rpcguard.IsRefusal(err) {
			return struct{}{}, &kv.KVError{Code: kv.ErrorCode_INVALID_ARGUMENT, Message: err.Error()}
		}
		return struct{}{}, &kv.KVError{Code: kv.ErrorCode_UNAVAILABLE, Message: "the stream failed: " + err.Error()}
	})
	if err == nil {
		return nil
	}
	return StreamError(err.(*kv.KVError))
}

// StreamError is how a stream carries the API's exception: a Kitex business status whose code
// is e's ErrorCode and whose message is e's (retry_after_ms, when set, in its extra).
func StreamError(e *kv.KVError) error {
	var extra map[string]string
	if e.RetryAfterMs > 0 {
		extra = map[string]string{"retry_after_ms": strconv.FormatInt(e.RetryAfterMs, 10)}
	}
	return kerrors.NewBizStatusErrorWithExtra(int32(e.Code), e.Message, extra)
}
