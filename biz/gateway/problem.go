package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cloudwego/hertz/pkg/app"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/kvclient"
	"github.com/putallkv/putallkv/pkg/traceid"
)

// problemBase prefixes every problem type URI: the type of a problem with code C is
// problemBase + C in lower case with '_' as '-', e.g. https://putallkv.dev/problems/version-mismatch.
// The URIs are stable identifiers for clients to switch on (RFC 9457 §3.1.1); they need not
// resolve.
const problemBase = "https://putallkv.dev/problems/"

// Codes of the problems only the gateway raises. Every other code is a kv.ErrorCode name.
const (
	// codeRouteNotFound: no route has this path (404). Unlike NOT_FOUND, it says nothing of keys.
	codeRouteNotFound = "ROUTE_NOT_FOUND"
	// codeMethodNotAllowed: the path exists for other methods, listed in Allow (405).
	codeMethodNotAllowed = "METHOD_NOT_ALLOWED"
	// codeKeyInUse: a request with the same Idempotency-Key is still in flight through this
	// gateway (409, as the IETF Idempotency-Key draft asks). Retrying once it has finished
	// replays its response.
	codeKeyInUse = "IDEMPOTENCY_KEY_IN_USE"
)

// statusOf maps every problem code to its HTTP status: the API's codes as docs/design.md says, then
// the gateway's own.
var statusOf = map[string]int{
	kv.ErrorCode_INVALID_ARGUMENT.String():     400,
	kv.ErrorCode_NOT_FOUND.String():            404,
	kv.ErrorCode_VERSION_MISMATCH.String():     412,
	kv.ErrorCode_ALREADY_EXISTS.String():       412,
	kv.ErrorCode_RESOURCE_EXHAUSTED.String():   429,
	kv.ErrorCode_IDEMPOTENCY_CONFLICT.String(): 422,
	kv.ErrorCode_TOO_LARGE.String():            413,
	kv.ErrorCode_UNAUTHENTICATED.String():      401,
	kv.ErrorCode_PERMISSION_DENIED.String():    403,
	kv.ErrorCode_CROSS_SLOT.String():           400,
	kv.ErrorCode_UNAVAILABLE.String():          503,
	kv.ErrorCode_INTERNAL.String():             500,
	codeRouteNotFound:                          404,
	codeMethodNotAllowed:                       405,
	codeKeyInUse:                               409,
	codeUnsupportedMediaType:                   415,
	codeMisdirected:                            421,
	codeOriginNotAllowed:                       403,
	codeHeadersTooLarge:                        431,
	codeRequestTimeout:                         408,
}

// apiError is every failure the gateway answers with a problem: a code (a key of statusOf), a
// sentence for the caller, and where the code has them, the failing keys and a retry delay.
type apiError struct {
	code       string
	detail     string
	failed     []*kv.KeyStatus
	retryAfter time.Duration
}

func (e *apiError) Error() string { return e.code + ": " + e.detail }

// invalid is the INVALID_ARGUMENT error for a request the gateway cannot decode.
func invalid(format string, args ...any) *apiError {
	return &apiError{code: kv.ErrorCode_INVALID_ARGUMENT.String(), detail: fmt.Sprintf(format, args...)}
}

// tooLarge is the TOO_LARGE error for a body over the gateway's bound.
func tooLarge(format string, args ...any) *apiError {
	return &apiError{code: kv.ErrorCode_TOO_LARGE.String(), detail: fmt.Sprintf(format, args...)}
}

// internalError is what the caller sees of a bug: a code and a sentence, never the cause.
var internalError = &apiError{code: kv.ErrorCode_INTERNAL.String(), detail: "internal error"}

// toAPIError classifies what a handler or the service returned. The service's errors arrive
// as a *kv.KVError in-process, or as a *kvclient.Error over RPC (which also covers calls that
// got no answer: UNAVAILABLE). Anything else, and any code the gateway does not know (OK
// included), is INTERNAL; known reports whether err was classified as it stands.
func toAPIError(err error) (e *apiError, known bool) {
	if ae, ok := errors.AsType[*apiError](err); ok {
		e = ae
	} else if ce, ok := errors.AsType[*kvclient.Error](err); ok {
		e = &apiError{code: ce.Code.String(), detail: ce.Message, failed: ce.Failed, retryAfter: ce.RetryAfter}
	} else if ke, ok := errors.AsType[*kv.KVError](err); ok {
		e = &apiError{code: ke.Code.String(), detail: ke.Message, failed: ke.Failed,
			retryAfter: time.Duration(ke.RetryAfterMs) * time.Millisecond}
	}
	if e == nil {
		return internalError, false
	}
	if _, ok := statusOf[e.code]; !ok {
		return internalError, false
	}
	return e, true
}

// problem is the RFC 9457 body of an error response, with two extension members: code (the
// stable code clients switch on) and failed (the keys that made a multi-key call fail, each
// with its own code and current version; empty otherwise). request_id is the trace id, as in
// X-Request-ID.
type problem struct {
	Type    string      `json:"type"`
	Title   string      `json:"title"`
	Status  int         `json:"status"`
	Detail  string      `json:"detail"`
	Code    string      `json:"code"`
	Failed  []keyStatus `json:"failed"`
	TraceID string      `json:"request_id,omitempty"`
}

// newProblem builds the body for e.
func newProblem(e *apiError, traceID string) problem {
	return problem{
		Type:    problemBase + strings.ReplaceAll(strings.ToLower(e.code), "_", "-"),
		Title:   titleOf(e.code),
		Status:  statusOf[e.code],
		Detail:  e.detail,
		Code:    e.code,
		Failed:  keyStatuses(e.failed),
		TraceID: traceID,
	}
}

// titleOf is the fixed, human-readable summary of a code: "VERSION_MISMATCH" -> "Version mismatch".
func titleOf(code string) string {
	t := strings.ReplaceAll(strings.ToLower(code), "_", " ")
	return strings.ToUpper(t[:1]) + t[1:]
}

// retryAfterSeconds is the Retry-After value for d: whole seconds, rounded up, at least 1
// (Retry-After cannot say "less than a second", and 0 would invite an immediate retry).
func retryAfterSeconds(d time.Duration) int {
	s := int((d + time.Second - 1) / time.Second)
	return max(s, 1)
}

// writeError answers err as application/problem+json: the one place errors become responses.
// An error the gateway could not classify is logged (it is a bug) and answered as INTERNAL;
// an INTERNAL the service reported was logged where it happened.
func (g *Gateway) writeError(ctx context.Context, c *app.RequestContext, err error) {
	e, known := toAPIError(err)
	id, _ := traceid.From(ctx)
	if !known {
		g.log.ErrorContext(ctx, "gateway: internal error", "error", err.Error(), "request_id", id)
	}
	p := newProblem(e, id)
	if e.retryAfter > 0 { // not on a memory-quota refusal: waiting does not free a full store
		c.Response.Header.Set("Retry-After", fmt.Sprint(retryAfterSeconds(e.retryAfter)))
	}
	challenge(c, e)
	writeJSON(c, p.Status, "application/problem+json", p)
}
