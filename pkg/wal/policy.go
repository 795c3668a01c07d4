package wal

import "fmt"

// ParseSyncPolicy returns the policy whose configuration name (what String returns) is name:
// always, interval or none. It is the one place those names are read, so that the
// configuration's validation and the server's wiring cannot disagree on them. Any other
// name is an error worded to follow the name of the setting it came from.
func ParseSyncPolicy(name string) (SyncPolicy, error) {
	for p := SyncAlways; p <= SyncNone; p++ {
		if p.String() == name {
			return p, nil
		}
	}
	return 0, fmt.Errorf("must be always, interval or none, got %q", name)
}
