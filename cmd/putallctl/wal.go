package main

import (
	"fmt"
	"io"

	"putallkv/pkg/wal"
)

// runWAL is `putallctl wal check|repair DIR`: inspect a data directory's write-ahead log
// offline, or cut it at its first bad record, as redis-check-aof does. The server must not be
// running on DIR. Exit status: check 0 when the log would recover as it is (a torn tail is cut
// at start-up), 1 when it is corrupt; repair 0 once the log is sound.
func runWAL(args []string, stdout, stderr io.Writer) int {
	if len(args) != 2 || (args[0] != "check" && args[0] != "repair") {
		fmt.Fprintln(stderr, "usage: putallctl wal check|repair DIR")
		return exitUsage
	}
	op, dir := args[0], args[1]
	check := wal.Check
	if op == "repair" {
		check = wal.Repair
	}
	r, err := check(dir)
	if err != nil {
		fmt.Fprintf(stderr, "putallctl: wal %s %s: %v\n", op, dir, err)
		return exitFailed
	}
	fmt.Fprintf(stdout, "%s: %d segments, %d records (LSN %d..%d), %d snapshots\n",
		dir, r.Segments, r.Records, r.FirstLSN, r.LastLSN, r.Snapshots)
	if d := r.TornTail; d != nil {
		fmt.Fprintf(stdout, "torn tail: %s at offset %d: %s (%d bytes; a write that was never acknowledged)\n",
			d.File, d.Offset, d.Reason, d.Bytes)
	}
	if d := r.Corruption; d != nil {
		verb := "corruption"
		if op == "repair" {
			verb = "repaired corruption"
		}
		fmt.Fprintf(stdout, "%s: %s at offset %d: %s (%d bytes from there on dropped by repair)\n",
			verb, d.File, d.Offset, d.Reason, d.Bytes)
		if op == "check" {
			return exitFailed
		}
	}
	if r.TornTail == nil && r.Corruption == nil {
		fmt.Fprintln(stdout, "ok")
	}
	return exitOK
}
