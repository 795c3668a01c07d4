package handler

import (
	"context"
	"errors"
	"log/slog"

	"github.com/cloudwego/kitex/pkg/endpoint"
	"github.com/cloudwego/kitex/pkg/kerrors"
	"github.com/cloudwego/kitex/pkg/rpcinfo"
	"github.com/cloudwego/kitex/pkg/streaming"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/auth"
	"github.com/putallkv/putallkv/pkg/traceid"
)

// methodRoles is the role each KVService method needs. A method missing here (one added to
// the IDL and forgotten) needs admin: refused rather than open by mistake.
var methodRoles = map[string]auth.Role{
	"Get":        auth.Read,
	"GetAll":     auth.Read,
	"Scan":       auth.Read,
	"Put":        auth.Write,
	"PutAll":     auth.Write,
	"PutAllMany": auth.Write,
	"Load":       auth.Write,
	"Delete":     auth.Write,
	"DeleteAll":  auth.Write,
}

// RoleOf returns the role a call of method needs.
func RoleOf(method string) auth.Role {
	if r, ok := methodRoles[method]; ok {
		return r
	}
	return auth.Admin
}

// Authorize returns a Kitex server middleware that lets a call through only when its token
// (TTHeader metadata: kvclient.WithToken, or auth.ContextWithToken on a call's context) is
// one of a's and its role covers the method. A refusal is the method's own exception,
// UNAUTHENTICATED or PERMISSION_DENIED, so clients see it as any other KVError; it is logged
// at debug level with the token's name, never the token. A stream (Load) is checked once, when
// it opens, and refused with the code as its business status (StreamError).
func Authorize(a *auth.Authenticator, log *slog.Logger) endpoint.Middleware {
	return func(next endpoint.Endpoint) endpoint.Endpoint {
		return func(ctx context.Context, req, resp any) error {
			method := rpcinfo.GetRPCInfo(ctx).Invocation().MethodName()
			token, _ := auth.TokenFromContext(ctx)
			id, err := a.Authorize(token, RoleOf(method))
			if err == nil {
				return next(ctx, req, resp)
			}
			tid, _ := traceid.From(ctx)
			log.DebugContext(ctx, "call refused", "method", method, "token_name", id.Name, "request_id", tid, "err", err.Error())
			refusal := &kv.KVError{Code: kv.ErrorCode_UNAUTHENTICATED, Message: err.Error()}
			if errors.Is(err, auth.ErrPermissionDenied) {
				refusal.Code = kv.ErrorCode_PERMISSION_DENIED
			}
			if _, stream := req.(*streaming.Args); stream {
				// The stream's business status, as a handler's would be (ttstream then
				// answers it without logging an error for every refused stream).
				if inv, ok := rpcinfo.GetRPCInfo(ctx).Invocation().(rpcinfo.InvocationSetter); ok {
					be, _ := kerrors.FromBizStatusError(StreamError(refusal))
					inv.SetBizStatusErr(be)
					return nil
				}
				return StreamError(refusal)
			}
			if r, ok := resp.(interface{ SetErr(*kv.KVError) }); ok {
				r.SetErr(refusal)
				return nil
			}
			return refusal
		}
	}
}
