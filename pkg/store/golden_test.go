package store

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/putallkv/putallkv/pkg/wal"
)

// Golden data directories: testdata/golden-v<N>/ is a data directory written by format version N
// (see the package documentation), and testdata/golden-v<N>.txt what a store recovered from it
// holds. TestGoldenDataDirectories opens a copy of each and checks every key, version and
// revision, so that a change that can no longer read old data fails. -update-golden rewrites
// the current format's directory (goldenDir) with the code as it is: only for a change that
// keeps the format, or to write the first directory of a new format version.
var updateGolden = flag.Bool("update-golden", false, "rewrite "+goldenDir+" and its expectations")

const (
	goldenDir = "testdata/golden-v2"
	// goldenNowMs is the clock the golden directory is checked with; it was written a minute
	// earlier. Key "ttl/short" has expired by then, "ttl/long" has not.
	goldenNowMs = 1_700_000_000_000
)

func TestGoldenDataDirectories(t *testing.T) {
	if *updateGolden {
		writeGolden(t)
	}
	dirs, err := filepath.Glob("testdata/golden-v*[0-9]")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no golden data directory (%v)", err)
	}
	for _, golden := range dirs {
		t.Run(filepath.Base(golden), func(t *testing.T) {
			want, err := os.ReadFile(golden + ".txt")
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			copyDir(t, golden, dir) // recovery takes a lock and may write: never in testdata
			if got := describeDataDir(t, dir); got != string(want) {
				t.Errorf("the store recovered from %s holds\n%s\nwant (%s.txt)\n%s", golden, got, golden, want)
			}
			// Without its newest snapshot, recovery falls back to the one before and replays more
			// of the log: the store comes out the same.
			snaps, err := filepath.Glob(filepath.Join(dir, "*.snap"))
			if err != nil || len(snaps) < 2 {
				t.Fatalf("%s holds %d snapshots; want two (%v)", golden, len(snaps), err)
			}
			if err := os.Remove(snaps[len(snaps)-1]); err != nil {
				t.Fatal(err)
			}
			if got, want := storePart(describeDataDir(t, dir)), storePart(string(want)); got != want {
				t.Errorf("recovered from the older snapshot, the store holds\n%s\nwant\n%s", got, want)
			}
		})
	}
}

// writeGolden writes goldenDir afresh: batches in both modes, with preconditions that fail,
// TTLs, deletes and tags, two snapshots (one holding saved tags) and more of the log after the
// newest, ending with a batch that only deletes. Small segments make the log span several.
func writeGolden(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{}
	clock.ms.Store(goldenNowMs - 60_000)
	d, err := OpenDurable(DurableOptions{Options: Options{Shards: 4, Now: clock.Now}, Dir: dir,
		WAL:          wal.Options{Sync: wal.SyncNone, SegmentBytes: 1 << 10},
		SnapshotTags: func() [][]byte { return [][]byte{[]byte("saved/1"), []byte("saved/2")} }})
	if err != nil {
		t.Fatal(err)
	}
	tagged := func(mode Mode, tag string, writes ...Write) {
		t.Helper()
		results := make([]Result, len(writes))
		if _, err := d.Apply(context.Background(), Batch{Mode: mode, Writes: writes, Tag: []byte(tag)}, results); err != nil {
			t.Fatal(err)
		}
	}
	snapshot := func() {
		t.Helper()
		if err := d.Snapshot(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	cas := func(key, value string, version int64) Write {
		return Write{Key: key, Value: []byte(value), ExpectedVersion: version}
	}
	del := func(key string, version int64) Write { return Write{Key: key, Delete: true, ExpectedVersion: version} }
	expiring := func(key, value string, atMs int64) Write {
		w := put(key, value)
		w.ExpiresAtMs = atMs
		return w
	}

	for i := range 12 {
		tagged(Atomic, "", put(fmt.Sprintf("key/%02d", i), fmt.Sprintf("value %d of the first batches", i)),
			put(fmt.Sprintf("pair/%02d", i), strings.Repeat("p", i)))
	}
	tagged(Atomic, "req/atomic", cas("key/00", "replaced once", 1), cas("fresh/1", "created", 0))
	tagged(BestEffort, "req/best-effort", cas("key/01", "stale", 7), cas("key/02", "replaced", 3),
		cas("fresh/2", "created", 0), del("absent", AnyVersion))
	tagged(Atomic, "", expiring("ttl/short", "gone by the check", goldenNowMs-1), expiring("ttl/long", "kept", 4_000_000_000_000))
	snapshot()
	for i := range 6 {
		tagged(BestEffort, "", put(fmt.Sprintf("key/%02d", i), fmt.Sprintf("value %d after the first snapshot", i)),
			del(fmt.Sprintf("pair/%02d", i), AnyVersion))
	}
	tagged(Atomic, "req/empty-value", put("empty", ""))
	snapshot()
	tagged(BestEffort, "req/after-snapshot", cas("fresh/1", "replaced after the snapshots", 13), del("pair/06", 7),
		cas("fresh/2", "exists", 0), cas("key/01", "stale", 2), del("absent", AnyVersion))
	for i := 6; i < 12; i++ {
		tagged(Atomic, "", put(fmt.Sprintf("key/%02d", i), fmt.Sprintf("value %d in the log's tail", i)))
	}
	tagged(Atomic, "", expiring("ttl/tail", "written in the log's tail", 4_000_000_000_000), put("ttl/long", "no longer expires"))
	tagged(Atomic, "req/delete-only", del("key/11", AnyVersion), del("pair/11", AnyVersion))
	clock.ms.Store(goldenNowMs)
	before := describeStore(t, d)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "LOCK")); err != nil { // it holds a pid: not part of the data
		t.Fatal(err)
	}
	if err := os.RemoveAll(goldenDir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(goldenDir, 0o755); err != nil {
		t.Fatal(err)
	}
	copyDir(t, dir, goldenDir)
	check := t.TempDir()
	copyDir(t, goldenDir, check)
	got := describeDataDir(t, check)
	if !strings.Contains(got, before) {
		t.Fatalf("the store held\n%s\nand recovered\n%s", before, got)
	}
	if err := os.WriteFile(goldenDir+".txt", []byte(got), 0o644); err != nil {
		t.Fatal(err)
	}
}

// describeDataDir checks the data directory dir (wal.Check) and recovers a store from it, and
// describes both: the log, the tags recovery handed back, then the store.
func describeDataDir(t *testing.T, dir string) string {
	t.Helper()
	report, err := wal.Check(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !report.Sound() || report.TornTail != nil || report.NoMarker {
		t.Fatalf("wal.Check of %s: %+v", dir, report)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "log segments=%d first_lsn=%d last_lsn=%d snapshots=%d snapshot_lsn=%d\n",
		report.Segments, report.FirstLSN, report.LastLSN, report.Snapshots, report.SnapshotLSN)
	clock := &fakeClock{}
	clock.ms.Store(goldenNowMs)
	d, err := OpenDurable(DurableOptions{Options: Options{Shards: 4, Now: clock.Now}, Dir: dir,
		WAL: wal.Options{Sync: wal.SyncNone},
		Recovered: func(tag []byte, rev int64, keys []string, results []Result) {
			fmt.Fprintf(&b, "recovered tag %q revision=%d", tag, rev)
			for i, k := range keys {
				fmt.Fprintf(&b, " %s:%s:%d", k, results[i].Code, results[i].Version)
			}
			b.WriteString("\n")
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	b.WriteString(describeStore(t, d))
	return b.String()
}

// describeStore describes every resident key (expired ones too: they are part of the data)
// with its value, version and expiry, how a read at the store's clock answers it, and the
// store's gauges.
func describeStore(t *testing.T, d *Durable) string {
	t.Helper()
	type entry struct {
		key, value           string
		version, expiresAtMs int64
	}
	var entries []entry
	if _, err := d.mem.scan(func(key, value []byte, version, expiresAtMs int64) error {
		entries = append(entries, entry{string(key), string(value), version, expiresAtMs})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.key, b.key) })
	keys := make([]string, len(entries))
	for i, e := range entries {
		keys[i] = e.key
	}
	items := make([]Item, len(keys))
	rev, err := d.GetAll(context.Background(), keys, items)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	st := d.Stats()
	fmt.Fprintf(&b, "store revision=%d keys=%d bytes=%d read_revision=%d\n", st.Revision, st.Keys, st.Bytes, rev)
	for i, e := range entries {
		fmt.Fprintf(&b, "key %q value=%q version=%d expires=%d read=%v\n", e.key, e.value, e.version, e.expiresAtMs, items[i].Found)
	}
	return b.String()
}

// storePart is the store's description in a describeDataDir text: from its "store" line on.
func storePart(text string) string {
	if i := strings.Index(text, "\nstore "); i >= 0 {
		return text[i+1:]
	}
	return text
}

// copyDir copies the regular files of from into the directory to.
func copyDir(t *testing.T, from, to string) {
	t.Helper()
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
