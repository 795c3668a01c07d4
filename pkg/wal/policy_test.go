package wal

import (
	"strings"
	"testing"
)

func TestParseSyncPolicy(t *testing.T) {
	for _, p := range []SyncPolicy{SyncAlways, SyncInterval, SyncNone} {
		if got, err := ParseSyncPolicy(p.String()); err != nil || got != p {
			t.Errorf("ParseSyncPolicy(%q) = %v, %v; want %v", p.String(), got, err, p)
		}
	}
	for _, name := range []string{"", "sometimes", "Always", " none", "SyncPolicy(3)"} {
		if _, err := ParseSyncPolicy(name); err == nil || !strings.Contains(err.Error(), "must be always, interval or none") {
			t.Errorf("ParseSyncPolicy(%q) = %v; want an error naming the three policies", name, err)
		}
	}
}
