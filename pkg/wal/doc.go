// Package wal is a write-ahead log of opaque records with group commit, plus atomic snapshot files
// and the check and repair of a log directory.
//
// A Log is a directory of segment files. Append gives each record the next LSN (log sequence
// number: 1, 2, 3, ... for a new log) and queues it; one writer goroutine writes everything queued
// with a single write call and, under SyncAlways, a single fsync when a Wait asks for one of
// them, then releases everyone waiting in Wait for those records, and no one else (each waiter
// parks on the channel of its group of records). Records queued while an fsync runs form the
// next group. A caller that appends several
// records and waits for the last holds the log meanwhile (Hold), so the writer does not split
// them between two fsyncs. Snapshots are separate files (WriteSnapshot, ReadLatestSnapshot) whose
// contents are the caller's; the intended cycle is: write a snapshot covering LSN s, Rotate,
// then RemoveBefore(p) for the previous snapshot's LSN p, so that recovery can fall back to the
// previous snapshot should the newest one be damaged.
//
// # On-disk format, version 1
//
// This section is the one description of the files this package writes; what goes inside a
// record and a snapshot body is the caller's (pkg/store's documentation describes the
// putallkv store's). A data directory holds:
//
//	00000000000000000001.wal    segments: the log, each named after the LSN of its first record
//	00000000000000000042.snap   snapshots, each named after the LSN it covers
//	LAST_SEGMENT                the name of the newest segment created, and a newline
//	LOCK                        the pid of the process using the directory, and a newline
//	repair-20060102T150405Z/    what a repair took out of the directory (see Repair folders)
//
// Names are 20 decimal digits and a suffix; files are created 0600, directories 0700. Open, Check
// and Repair ignore every other name (LAST_SEGMENT.tmp, a snapshot's temporary file, a repair
// folder). Integers below are little-endian. Each layout carries its own version number (1 for
// both segments and snapshots in format version 1); a reader refuses a version it does not know
// (a segment's as damage, a snapshot's as invalid).
//
// Segment file:
//
//	header  magic "PKVW" | version uint32 (1) | first LSN uint64           16 bytes
//	record  length uint32 | crc uint32 | LSN uint64 | payload[length]     16 + length bytes
//	record  ...
//
// crc is the CRC-32C (Castagnoli) of the payload followed by the length and LSN fields, so a
// torn or flipped length, a wrong LSN and a damaged payload are all caught by the one checksum.
// A payload is at most MaxRecordBytes. LSNs are consecutive within a segment and across
// segments: the header's first LSN is the one the file name gives, and one more than the last
// LSN of the segment before. A new log starts at LSN 1; segments a snapshot made redundant are
// removed from the start, so the first segment may start later. A segment is fsynced before the
// next one is created; a new segment's header is fsynced, then the directory, then LAST_SEGMENT is
// rewritten to name it.
//
// Snapshot file:
//
//	header   magic "PKVS" | version uint32 (1) | LSN uint64             16 bytes
//	body     the caller's bytes
//	trailer  body length uint64 | crc uint32 | magic "PKVE"             16 bytes
//
// crc is the CRC-32C of header and body. A snapshot at LSN s holds the state after records 1..s:
// recovery loads the newest snapshot that verifies and replays the records after s. A snapshot
// is written to a temporary file (%020d.snap.*.tmp), fsynced, read back and verified, renamed
// into place and the directory fsynced, so a snapshot file either is whole or does not exist;
// temporary files an interrupted write left are removed by ReadLatestSnapshot.
//
// LAST_SEGMENT names the newest segment the log created (for example
// "00000000000000000001.wal\n"). Segments are found by listing the directory, so without it a
// deleted last segment would look like a log that simply ends earlier. It is rewritten through
// LAST_SEGMENT.tmp (write, fsync, rename, fsync of the directory) each time a segment starts,
// once the segment's header is durable: it never names a segment newer than the newest one
// created. A directory without one (made before it existed) gets one when the log is next opened.
//
// LOCK is held with an exclusive flock(2) by the process using the directory (Open to Close, and
// Repair), which writes its pid into it; a second Open fails with a *LockedError naming that pid.
// Check probes it with a shared flock for an instant. The file is never removed (removing it
// could let two processes lock two different files of one name); the kernel releases the lock
// when its holder exits, however it exits.
//
// Repair folders: Repair deletes nothing. It moves what it takes out of the directory (invalid
// snapshots, segments cut off the end or moved from the start of the log, and the original of a
// segment it truncates, byte for byte) into repair-<UTC time> (repair-<UTC time>-2, ... when
// taken), with REPAIR.txt saying what it did and the cp command that undoes it.
//
// # Torn write or corruption
//
// Open, Check and Repair judge a log by one rule. A bad spot is an incomplete record header, a
// length running past the end of the file, or a checksum mismatch.
//   - In the last segment it is a torn write when the record there is cut short and nothing valid
//     follows: fewer bytes than a record header are left, or only zeros, or the record's length
//     runs past the end of the file (and the bytes up to the end are not the whole record with
//     only its length field damaged). That is what a crash during a write leaves: a prefix of the
//     batch being written, or zeros. Such a record was never acknowledged; Open cuts it off
//     (truncates, fsyncs, logs it).
//   - Anything else is corruption: data the log once wrote in full was damaged, or a segment is
//     missing. A whole record (its length fits in the file) whose checksum does not match, in
//     the last segment too; any bad spot followed by a valid record; any bad spot in a segment
//     other than the last (a segment is fsynced before the next one is created, so no crash can
//     have damaged it); a record with a matching checksum but an unexpected LSN; a bad segment
//     header (other than a partly written or zeroed one in a last segment that LAST_SEGMENT does
//     not name yet); a gap in LSNs between segments; a segment LAST_SEGMENT names that is not
//     there. Open returns a *CorruptionError and changes nothing, Check reports it, Repair
//     moves the damaged part aside.
//
// On a file system that can expose unwritten blocks as zeros inside a file after a power failure
// (or persist later pages of a write but not earlier ones) a torn write can look like a whole
// record with a bad checksum, or a hole followed by valid records of the same batch: the rule calls
// that corruption, stopping for an operator rather than silently dropping what might be an
// acknowledged write.
//
// # I/O failures
//
// When a write or fsync fails (disk full, EIO) the writer keeps every record it accepted, cuts any
// partial write off the file, marks the log failed (Err, and Append refuses with ErrFailed) and
// retries with backoff (10ms doubling to 1s). Wait keeps waiting meanwhile. When a retry succeeds
// the log is healthy again and the waiters are released.
package wal
