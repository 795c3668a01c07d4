// Package traceid carries a per-call trace id from a caller to the server as Kitex metadata,
// so both sides log the same id. The trace id is for following one call through the logs; it
// is not the idempotency key a write carries in its request_id field. Outside Go it keeps the
// names the API gives it: the X-Request-ID header and problem+json's request_id on HTTP, the
// PUTALLKV_REQUEST_ID metainfo key on RPC, request_id in the logs. The id travels in a
// transient metainfo value, which Kitex sends only over TTHeader: clients must use
// transport.TTHeader with transmeta.ClientTTHeaderHandler, servers
// transmeta.ServerTTHeaderHandler.
package traceid

import (
	"context"
	"crypto/rand"
	"encoding/hex"

	"github.com/bytedance/gopkg/cloud/metainfo"
)

// key is the metainfo key of the trace id (a wire name: it stays as it is). Transient values
// go one hop, which is what a per-call id wants.
const key = "PUTALLKV_REQUEST_ID"

// MaxLen bounds an accepted id, so a caller cannot make the server log unbounded strings.
const MaxLen = 128

// With returns ctx carrying id as the trace id of outgoing calls.
func With(ctx context.Context, id string) context.Context {
	return metainfo.WithValue(ctx, key, id)
}

// From returns the trace id carried by ctx: on a server, the one the caller sent. ok is false
// when there is none or it is longer than MaxLen.
func From(ctx context.Context) (id string, ok bool) {
	id, ok = metainfo.GetValue(ctx, key)
	if !ok || id == "" || len(id) > MaxLen {
		return "", false
	}
	return id, true
}

// New returns a fresh random id: 16 random bytes in hex.
func New() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}
