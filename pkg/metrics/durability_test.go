package metrics

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestDurability feeds the adapter the events of a log and a store and reads them back from
// the registry, by the names docs/metrics.md gives.
func TestDurability(t *testing.T) {
	reg := NewRegistry()
	m, err := NewDurability(reg)
	if err != nil {
		t.Fatal(err)
	}
	m.Wrote(3, 100)
	m.Wrote(1, 20)
	m.Synced(2 * time.Millisecond)
	m.Recovered(1500*time.Millisecond, 7, 5)
	m.Snapshotted(time.Second, 5, nil)
	m.Snapshotted(time.Second, 5, errors.New("disk full"))
	want := `
# HELP recovered_records Log records replayed at start-up.
# TYPE recovered_records gauge
recovered_records 7
# HELP recovery_duration_seconds How long start-up recovery took.
# TYPE recovery_duration_seconds gauge
recovery_duration_seconds 1.5
# HELP wal_bytes_total Bytes written to the log.
# TYPE wal_bytes_total counter
wal_bytes_total 120
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "recovered_records", "recovery_duration_seconds", "wal_bytes_total"); err != nil {
		t.Error(err)
	}
	for name, n := range map[string]int{"wal_fsync_seconds": 1, "wal_group_commit_size": 1, "snapshot_duration_seconds": 2} {
		if got, err := testutil.GatherAndCount(reg, name); err != nil || got != n {
			t.Errorf("%s: %d series, %v; want %d", name, got, err, n)
		}
	}
	if _, err := NewDurability(reg); err == nil {
		t.Error("a second NewDurability on the same registry succeeded; want the duplicate refused")
	}
}
