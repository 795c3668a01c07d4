package kvclient

import (
	"errors"
	"testing"

	"github.com/putallkv/putallkv/kitex_gen/kv"
)

func TestStatuses(t *testing.T) {
	entries := []*kv.Entry{{Key: "a"}, {Key: "b"}}
	got, err := Statuses(entries, nil, 9)
	if err != nil || len(got) != 2 || *got[0] != (kv.KeyStatus{Key: "a", Version: 9}) || *got[1] != (kv.KeyStatus{Key: "b", Version: 9}) {
		t.Fatalf("results left out: %v, %v; want a and b OK at 9", got, err)
	}
	sent := []*kv.KeyStatus{{Key: "a", Version: 9}, {Key: "b", Code: kv.ErrorCode_ALREADY_EXISTS, Version: 3}}
	if got, err := Statuses(entries, sent, 9); err != nil || &got[0] != &sent[0] {
		t.Fatalf("results sent: %v, %v; want them as they are", got, err)
	}
	if _, err := Statuses(entries, sent[:1], 9); !errors.Is(err, ErrInternal) {
		t.Fatalf("one result for two entries: err = %v, want ErrInternal", err)
	}
}
