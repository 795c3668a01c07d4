package service

import (
	"fmt"
	"strings"
	"testing"

	"putallkv/kitex_gen/kv"
	"putallkv/pkg/store"
)

// An engine that applies atomically only within a hash slot refuses an ATOMIC call over two
// slots: the caller gets INVALID_ARGUMENT naming both keys and the hash-tag remedy.
func TestCrossSlotRefusalIsInvalidArgument(t *testing.T) {
	err := fmt.Errorf("wrapped: %w", &store.CrossSlotError{First: "a", FirstSlot: 15495, Second: "b", SecondSlot: 3300})
	ke := storeError(err)
	if ke.Code != kv.ErrorCode_INVALID_ARGUMENT {
		t.Fatalf("code %v; want INVALID_ARGUMENT", ke.Code)
	}
	for _, want := range []string{`"a"`, `"b"`, "15495", "3300", "hash tag", "nothing was written"} {
		if !strings.Contains(ke.Message, want) {
			t.Errorf("message %q does not mention %s", ke.Message, want)
		}
	}
	if len(ke.Failed) != 2 || ke.Failed[0].Key != "a" || ke.Failed[1].Key != "b" {
		t.Fatalf("failed %v; want a and b", ke.Failed)
	}
}
