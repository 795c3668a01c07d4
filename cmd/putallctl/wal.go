package main

import (
	"fmt"
	"io"

	"github.com/putallkv/putallkv/pkg/wal"
)

// runWAL is `putallctl wal check|repair DIR`. check verifies a data directory's log and snapshots
// without changing anything (it works while a server runs, and says so); it exits 0 when the
// directory recovers every record by itself (a torn tail is cut at start-up), 1 when something is
// damaged or missing. repair takes the directory's lock (so it refuses while a server runs),
// moves whatever it cuts into a folder inside DIR, says what and how to undo it, then checks
// again: exit 0 once the directory is sound.
func runWAL(args []string, stdout, stderr io.Writer) int {
	if len(args) != 2 || (args[0] != "check" && args[0] != "repair") {
		fmt.Fprintln(stderr, "usage: putallctl wal check|repair DIR")
		return exitUsage
	}
	op, dir := args[0], args[1]
	if op == "check" {
		r, err := wal.Check(dir)
		if err != nil {
			fmt.Fprintf(stderr, "putallctl: wal check %s: %v\n", dir, err)
			return exitFailed
		}
		return printReport(stdout, dir, &r)
	}
	r, err := wal.Repair(dir)
	if err != nil {
		fmt.Fprintf(stderr, "putallctl: wal repair %s: %v\n", dir, err)
		return exitFailed
	}
	printDamage(stdout, &r)
	if m := r.Moved; m != nil {
		fmt.Fprintf(stdout, "moved aside into %s (nothing was deleted):\n", m.Dir)
		for _, a := range m.Actions {
			fmt.Fprintf(stdout, "  - %s\n", a)
		}
		fmt.Fprintf(stdout, "  %d intact record(s) cut off the end of the log", m.Records)
		if m.Superseded > 0 {
			fmt.Fprintf(stdout, "; %d moved from its start, held by the snapshot", m.Superseded)
		}
		fmt.Fprintf(stdout, "\n  to undo, with the server stopped: %s\n", m.UndoCommand(dir))
	} else {
		fmt.Fprintln(stdout, "nothing to repair")
	}
	after, err := wal.Check(dir)
	if err != nil {
		fmt.Fprintf(stderr, "putallctl: wal check %s after the repair: %v\n", dir, err)
		return exitFailed
	}
	fmt.Fprint(stdout, "after the repair: ")
	return printReport(stdout, dir, &after)
}

// printReport prints what Check found and returns the exit status: OK when the directory is sound.
func printReport(w io.Writer, dir string, r *wal.Report) int {
	fmt.Fprintf(w, "%s: %d segments, %d records (LSN %d..%d), %d valid snapshot(s)", dir, r.Segments, r.Records, r.FirstLSN, r.LastLSN, r.Snapshots)
	if r.Snapshots > 0 {
		fmt.Fprintf(w, ", the newest at LSN %d", r.SnapshotLSN)
	}
	fmt.Fprintln(w)
	if r.Held {
		fmt.Fprintf(w, "a server is running on %s (pid %d holds its lock): the log may be changing while it is read\n", dir, r.Holder)
	}
	printDamage(w, r)
	if r.NoMarker {
		fmt.Fprintln(w, "note: no LAST_SEGMENT marker (a directory from an older version): a missing last segment cannot be noticed until the server writes one at start-up")
	}
	if !r.Sound() {
		fmt.Fprintln(w, "damaged: the server refuses to start, or starts without what is listed above; see `putallctl wal repair`")
		return exitFailed
	}
	fmt.Fprintln(w, "ok")
	return exitOK
}

// printDamage prints each problem of r, one line each, with what a repair does about it.
func printDamage(w io.Writer, r *wal.Report) {
	for _, s := range r.BadSnapshots {
		fmt.Fprintf(w, "invalid snapshot: %s: %s; %s\n", s.File, s.Reason, s.Repair)
	}
	if d := r.TornTail; d != nil {
		fmt.Fprintf(w, "torn write: %s at offset %d: %s (%d bytes: a record a crash cut short, never acknowledged); %s\n",
			d.File, d.Offset, d.Reason, d.Bytes, d.Repair)
	}
	if d := r.Corruption; d != nil {
		fmt.Fprintf(w, "corruption: %s at offset %d: %s; %s\n", d.File, d.Offset, d.Reason, d.Repair)
	}
	if r.Gap != "" {
		fmt.Fprintf(w, "missing records: %s; only a backup of the missing files can bring them back\n", r.Gap)
	}
}
