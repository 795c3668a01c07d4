// Package reqid carries a per-call request id (a tracing id, distinct from the idempotency
// request_id in the API) from a caller to the server as Kitex metadata, so both sides log the
// same id. The id travels in a transient metainfo value, which Kitex sends only over TTHeader:
// clients must use transport.TTHeader with transmeta.ClientTTHeaderHandler, servers
// transmeta.ServerTTHeaderHandler.
package reqid

import (
	"context"
	"crypto/rand"
	"encoding/hex"

	"github.com/bytedance/gopkg/cloud/metainfo"
)

// key is the metainfo key of the request id. Transient values go one hop, which is what a
// per-call id wants.
const key = "PUTALLKV_REQUEST_ID"

// MaxLen bounds an accepted id, so a caller cannot make the server log unbounded strings.
const MaxLen = 128

// With returns ctx carrying id as the request id of outgoing calls.
func With(ctx context.Context, id string) context.Context {
	return metainfo.WithValue(ctx, key, id)
}

// From returns the request id carried by ctx: on a server, the one the caller sent. ok is false
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
