package service

import (
	"fmt"
	"strings"
	"testing"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/store"
)

// An engine that applies atomically only within a hash slot refuses an ATOMIC call over two
// slots: the caller gets CROSS_SLOT naming both keys and the hash-tag remedy.
func TestCrossSlotRefusal(t *testing.T) {
	err := fmt.Errorf("wrapped: %w", &store.CrossSlotError{First: "a", FirstSlot: 15495, Second: "b", SecondSlot: 3300})
	ke := storeError(err)
	if ke.Code != kv.ErrorCode_CROSS_SLOT {
		t.Fatalf("code %v; want CROSS_SLOT", ke.Code)
	}
	for _, want := range []string{`"a"`, `"b"`, "15495", "3300", "hash tag", "nothing was written"} {
		if !strings.Contains(ke.Message, want) {
			t.Errorf("message %q does not mention %s", ke.Message, want)
		}
	}
	if len(ke.Failed) != 2 || ke.Failed[0].Key != "a" || ke.Failed[1].Key != "b" ||
		ke.Failed[0].Code != kv.ErrorCode_CROSS_SLOT || ke.Failed[1].Code != kv.ErrorCode_CROSS_SLOT {
		t.Fatalf("failed %v; want a and b, each CROSS_SLOT", ke.Failed)
	}
}

// An engine whose backend refused a call before carrying it out (Redis out of memory, its
// cluster down) makes the call UNAVAILABLE, saying nothing was written, not INTERNAL.
func TestEngineRefusalIsUnavailable(t *testing.T) {
	err := fmt.Errorf("redisstore: nothing was written: slot 7: %w: OOM command not allowed", store.ErrRefused)
	ke := storeError(err)
	if ke.Code != kv.ErrorCode_UNAVAILABLE || !strings.Contains(ke.Message, "nothing was written") || !strings.Contains(ke.Message, "OOM") {
		t.Fatalf("%v: %s; want UNAVAILABLE saying nothing was written, with the cause", ke.Code, ke.Message)
	}
}
