package kvclient

import (
	"errors"
	"fmt"
	"time"

	"github.com/cloudwego/kitex/pkg/remote"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/rpcguard"
)

// codeError is the type of the sentinel errors: a bare code. Comparing codes rather than
// pointers lets one (*Error).Is serve every sentinel without a table.
type codeError kv.ErrorCode

func (c codeError) Error() string { return "kvclient: " + kv.ErrorCode(c).String() }

// Sentinel errors, one per failure code, for errors.Is. Every error a Client method returns is
// an *Error, which matches the sentinel of its code.
var (
	ErrInvalidArgument     error = codeError(kv.ErrorCode_INVALID_ARGUMENT)
	ErrNotFound            error = codeError(kv.ErrorCode_NOT_FOUND)
	ErrVersionMismatch     error = codeError(kv.ErrorCode_VERSION_MISMATCH)
	ErrAlreadyExists       error = codeError(kv.ErrorCode_ALREADY_EXISTS)
	ErrResourceExhausted   error = codeError(kv.ErrorCode_RESOURCE_EXHAUSTED)
	ErrIdempotencyConflict error = codeError(kv.ErrorCode_IDEMPOTENCY_CONFLICT)
	ErrTooLarge            error = codeError(kv.ErrorCode_TOO_LARGE)
	ErrUnauthenticated     error = codeError(kv.ErrorCode_UNAUTHENTICATED)
	ErrPermissionDenied    error = codeError(kv.ErrorCode_PERMISSION_DENIED)
	ErrUnavailable         error = codeError(kv.ErrorCode_UNAVAILABLE)
	ErrInternal            error = codeError(kv.ErrorCode_INTERNAL)
	ErrCrossSlot           error = codeError(kv.ErrorCode_CROSS_SLOT)
)

// Error is a failed call: the code and message the server sent (from its KVError, or
// TOO_LARGE or INVALID_ARGUMENT for a request it refused unread), or code UNAVAILABLE when
// the call did not get an answer (connection refused, timeout, any other Kitex error).
// Unwrap returns the cause.
type Error struct {
	// Code is the stable machine-readable reason; never OK.
	Code kv.ErrorCode
	// Message is the human-readable detail.
	Message string
	// RetryAfter is how long the server asks the caller to wait before trying again
	// (set with RESOURCE_EXHAUSTED).
	RetryAfter time.Duration
	// Failed lists the keys that made a multi-key call fail, each with its own code and
	// current version: for an ATOMIC write, every failing key.
	Failed []*kv.KeyStatus

	// cause is the server's *kv.KVError, or the Kitex error otherwise.
	cause error
}

// Error returns "CODE: message".
func (e *Error) Error() string { return e.Code.String() + ": " + e.Message }

// Unwrap returns what the error was made from: the server's *kv.KVError, or the Kitex error.
func (e *Error) Unwrap() error { return e.cause }

// Is reports whether target is the sentinel of e's code, so that
// errors.Is(err, ErrVersionMismatch) works.
func (e *Error) Is(target error) bool {
	c, ok := target.(codeError)
	return ok && kv.ErrorCode(c) == e.Code
}

// thrownByServer reports whether the server threw e as a KVError: an answer, where an
// UNAVAILABLE not thrown means the call got none.
func (e *Error) thrownByServer() bool {
	var ke *kv.KVError
	return errors.As(e.cause, &ke)
}

// toError maps what a generated client method returned to an *Error. The server's exception
// arrives as the *kv.KVError itself (the generated code returns the result's exception
// field after a successful Kitex call); a request the server refused to read (too large or
// malformed) arrives as a Kitex transport exception (see package rpcguard); anything else
// is a call that got no answer.
func toError(method string, err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var ke *kv.KVError
	if errors.As(err, &ke) {
		code, msg := ke.GetCode(), ke.GetMessage()
		if code == kv.ErrorCode_OK {
			// A server must not fail a call with OK; keep CodeOf(err) == OK meaning success.
			code, msg = kv.ErrorCode_INTERNAL, "server failed the call with code OK: "+msg
		}
		return &Error{
			Code:       code,
			Message:    msg,
			RetryAfter: time.Duration(ke.GetRetryAfterMs()) * time.Millisecond,
			Failed:     ke.GetFailed(),
			cause:      err,
		}
	}
	var te *remote.TransError
	if errors.As(err, &te) {
		// The server refused the request unread, in its codec, where no KVError can be thrown.
		switch te.TypeID() {
		case rpcguard.TypeTooLarge:
			return &Error{Code: kv.ErrorCode_TOO_LARGE, Message: te.Error(), cause: err}
		case rpcguard.TypeMalformed:
			return &Error{Code: kv.ErrorCode_INVALID_ARGUMENT, Message: te.Error(), cause: err}
		}
	}
	return &Error{
		Code:    kv.ErrorCode_UNAVAILABLE,
		Message: fmt.Sprintf("%s got no answer: %v", method, err),
		cause:   err,
	}
}

// CodeOf returns the code of err: OK for nil; the code of an *Error, of a *kv.KVError (as a
// handler called in-process returns) or of a sentinel; for any other error, the code the
// Client would give it (UNAVAILABLE for a call that got no answer).
func CodeOf(err error) kv.ErrorCode {
	if err == nil {
		return kv.ErrorCode_OK
	}
	var c codeError
	if errors.As(err, &c) {
		return kv.ErrorCode(c)
	}
	return toError("call", err).Code
}
