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
# HELP putallkv_recovered_records Log records replayed at start-up.
# TYPE putallkv_recovered_records gauge
putallkv_recovered_records 7
# HELP putallkv_recovery_duration_seconds How long start-up recovery took.
# TYPE putallkv_recovery_duration_seconds gauge
putallkv_recovery_duration_seconds 1.5
# HELP putallkv_wal_bytes_total Bytes written to the log.
# TYPE putallkv_wal_bytes_total counter
putallkv_wal_bytes_total 120
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "putallkv_recovered_records", "putallkv_recovery_duration_seconds", "putallkv_wal_bytes_total"); err != nil {
		t.Error(err)
	}
	for name, n := range map[string]int{"putallkv_wal_fsync_seconds": 1, "putallkv_wal_group_commit_size": 1, "putallkv_snapshot_duration_seconds": 2} {
		if got, err := testutil.GatherAndCount(reg, name); err != nil || got != n {
			t.Errorf("%s: %d series, %v; want %d", name, got, err, n)
		}
	}
	if _, err := NewDurability(reg); err == nil {
		t.Error("a second NewDurability on the same registry succeeded; want the duplicate refused")
	}
}

// TestWatchJournal reads putallkv_wal_failing as the log's health changes under it.
func TestWatchJournal(t *testing.T) {
	reg := NewRegistry()
	var failing error
	if err := WatchJournal(reg, func() error { return failing }); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		err  error
		want string
	}{{nil, "0"}, {errors.New("no space left on device"), "1"}, {nil, "0"}} {
		failing = c.err
		want := "# HELP putallkv_wal_failing 1 while the write-ahead log refuses writes (an I/O error, a full disk), else 0.\n" +
			"# TYPE putallkv_wal_failing gauge\nputallkv_wal_failing " + c.want + "\n"
		if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "putallkv_wal_failing"); err != nil {
			t.Errorf("log error %v: %v", c.err, err)
		}
	}
}
