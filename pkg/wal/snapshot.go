package wal

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// The snapshot file layout (header, the caller's body, trailer with a CRC-32C) and how a snapshot
// is written are described in the package documentation, "On-disk format".
const (
	snapMagic       = "PKVS"
	snapEndMagic    = "PKVE"
	snapVersion     = 1
	snapHeaderSize  = 16
	snapTrailerSize = 16
	snapSuffix      = ".snap"
	snapTempSuffix  = ".tmp"
)

// badSnapshotError says why a snapshot file's contents do not verify (as opposed to an I/O error).
type badSnapshotError struct{ reason string }

func (e *badSnapshotError) Error() string { return "invalid snapshot: " + e.reason }

func badSnapshot(format string, args ...any) error {
	return &badSnapshotError{reason: fmt.Sprintf(format, args...)}
}

// WriteSnapshot atomically writes the snapshot of the state at LSN lsn into dir, with contents
// produced by write, and returns its path. The file is read back and verified before it takes
// its name, so a snapshot file that exists was whole when written. A failure (of write too)
// leaves no snapshot file.
func WriteSnapshot(dir string, lsn uint64, write func(w io.Writer) error) (path string, err error) {
	f, err := os.CreateTemp(dir, fmt.Sprintf("%020d%s.*%s", lsn, snapSuffix, snapTempSuffix))
	if err != nil {
		return "", fmt.Errorf("wal: snapshot: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
			err = fmt.Errorf("wal: snapshot %d: %w", lsn, err)
		}
	}()
	bw := bufio.NewWriterSize(f, 256<<10)
	body := &snapshotWriter{w: bw, crc: crc32.New(castagnoli)}
	h := make([]byte, snapHeaderSize)
	copy(h, snapMagic)
	binary.LittleEndian.PutUint32(h[4:], snapVersion)
	binary.LittleEndian.PutUint64(h[8:], lsn)
	if _, err := body.Write(h); err != nil {
		return "", err
	}
	if err := write(body); err != nil {
		return "", err
	}
	t := make([]byte, snapTrailerSize)
	binary.LittleEndian.PutUint64(t[0:], uint64(body.n-snapHeaderSize))
	binary.LittleEndian.PutUint32(t[8:], body.crc.Sum32())
	copy(t[12:], snapEndMagic)
	if _, err := bw.Write(t); err != nil {
		return "", err
	}
	if err := bw.Flush(); err != nil {
		return "", err
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	if err := verifySnapshot(f, lsn); err != nil {
		return "", fmt.Errorf("read back: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	path = filepath.Join(dir, fmt.Sprintf("%020d%s", lsn, snapSuffix))
	if err := os.Rename(f.Name(), path); err != nil {
		return "", err
	}
	return path, syncDir(dir)
}

// snapshotWriter is the writer WriteSnapshot hands the caller: it checksums and counts the bytes.
type snapshotWriter struct {
	w   io.Writer
	crc hash.Hash32
	n   int64
}

func (s *snapshotWriter) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	s.crc.Write(p[:n])
	s.n += int64(n)
	return n, err
}

// ReadLatestSnapshot returns the newest valid snapshot in dir: its LSN and its body, read in one
// allocation and verified whole before it is returned, so it never yields unverified bytes; a nil
// body (and LSN 0) when there is none. A snapshot that fails verification is logged (to log,
// slog.Default when nil) and skipped for the next older one. Leftover temporary files of
// interrupted WriteSnapshot calls are removed first, so ReadLatestSnapshot must not run while a
// WriteSnapshot into the same dir is in progress. The body is the caller's: recovery keeps parts
// of it as the store's memory rather than copying them.
func ReadLatestSnapshot(dir string, log *slog.Logger) (lsn uint64, body []byte, err error) {
	if log == nil {
		log = slog.Default()
	}
	if err := removeSnapshotTemps(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, nil, nil
		}
		return 0, nil, fmt.Errorf("wal: %w", err)
	}
	snaps, err := listSeq(dir, snapSuffix)
	if err != nil {
		return 0, nil, fmt.Errorf("wal: %w", err)
	}
	for i := len(snaps) - 1; i >= 0; i-- {
		body, err := readSnapshot(snaps[i])
		if _, ok := errors.AsType[*badSnapshotError](err); ok {
			log.Warn("wal: skipping an invalid snapshot for an older one; `putallctl wal check` shows it, `putallctl wal repair` moves it aside",
				"file", snaps[i].path, "err", err)
			continue
		}
		if err != nil {
			return 0, nil, fmt.Errorf("wal: %w", err)
		}
		return snaps[i].seq, body, nil
	}
	return 0, nil, nil
}

// RemoveSnapshotsBefore deletes the snapshot files of dir whose LSN is less than lsn.
func RemoveSnapshotsBefore(dir string, lsn uint64) error {
	snaps, err := listSeq(dir, snapSuffix)
	if err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	removed := false
	for _, s := range snaps {
		if s.seq >= lsn {
			break
		}
		if err := os.Remove(s.path); err != nil {
			return fmt.Errorf("wal: %w", err)
		}
		removed = true
	}
	if !removed {
		return nil
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	return nil
}

// readSnapshot reads the snapshot s (s.seq is the LSN its name gives) whole, verifies it and
// returns its body. Contents that do not verify give a *badSnapshotError.
func readSnapshot(s seqFile) ([]byte, error) {
	data, err := readFile(s.path, nil)
	if err != nil {
		return nil, err
	}
	size := int64(len(data))
	if size < snapHeaderSize+snapTrailerSize {
		return nil, badSnapshot("%d bytes is too short", size)
	}
	crcEnd := size - snapTrailerSize
	if err := checkSnapshotFrame(data[:snapHeaderSize], data[crcEnd:], size, s.seq); err != nil {
		return nil, err
	}
	if crc32.Checksum(data[:crcEnd], castagnoli) != binary.LittleEndian.Uint32(data[crcEnd+8:]) {
		return nil, badSnapshot("checksum mismatch")
	}
	return data[snapHeaderSize:crcEnd:crcEnd], nil
}

// verifySnapshot checks header, trailer and checksum of the snapshot file f, which must be for LSN
// lsn, reading it in pieces.
func verifySnapshot(f *os.File, lsn uint64) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	if size < snapHeaderSize+snapTrailerSize {
		return badSnapshot("%d bytes is too short", size)
	}
	h := make([]byte, snapHeaderSize)
	t := make([]byte, snapTrailerSize)
	if _, err := f.ReadAt(h, 0); err != nil {
		return err
	}
	if _, err := f.ReadAt(t, size-snapTrailerSize); err != nil {
		return err
	}
	if err := checkSnapshotFrame(h, t, size, lsn); err != nil {
		return err
	}
	crc := crc32.New(castagnoli)
	if _, err := io.Copy(crc, io.NewSectionReader(f, 0, size-snapTrailerSize)); err != nil {
		return err
	}
	if crc.Sum32() != binary.LittleEndian.Uint32(t[8:]) {
		return badSnapshot("checksum mismatch")
	}
	return nil
}

// checkSnapshotFrame checks the header h and trailer t of a snapshot file of size bytes, which
// must be for LSN lsn (all but the checksum).
func checkSnapshotFrame(h, t []byte, size int64, lsn uint64) error {
	bodyLen := size - snapHeaderSize - snapTrailerSize
	switch {
	case string(h[:4]) != snapMagic || string(t[12:]) != snapEndMagic:
		return badSnapshot("bad magic")
	case binary.LittleEndian.Uint32(h[4:]) != snapVersion:
		return badSnapshot("unsupported version %d", binary.LittleEndian.Uint32(h[4:]))
	case binary.LittleEndian.Uint64(h[8:]) != lsn:
		return badSnapshot("header says LSN %d, file name says %d", binary.LittleEndian.Uint64(h[8:]), lsn)
	case binary.LittleEndian.Uint64(t[0:]) != uint64(bodyLen):
		return badSnapshot("trailer says %d body bytes, file has %d", binary.LittleEndian.Uint64(t[0:]), bodyLen)
	}
	return nil
}

// checkSnapshotFile verifies the snapshot s (s.seq is the LSN its name gives) without holding it
// in memory. Contents that do not verify give a *badSnapshotError.
func checkSnapshotFile(s seqFile) error {
	f, err := os.Open(s.path)
	if err != nil {
		return err
	}
	defer f.Close()
	return verifySnapshot(f, s.seq)
}

// snapshotScan is what scanSnapshots found in a directory.
type snapshotScan struct {
	valid []seqFile // the snapshot files that verify, oldest first
	bad   []Damage  // the ones that do not, oldest first
}

// scanSnapshots verifies every snapshot file of dir.
func scanSnapshots(dir string) (snapshotScan, error) {
	snaps, err := listSeq(dir, snapSuffix)
	if err != nil {
		return snapshotScan{}, fmt.Errorf("wal: %w", err)
	}
	var sc snapshotScan
	for _, s := range snaps {
		err := checkSnapshotFile(s)
		if bad, ok := errors.AsType[*badSnapshotError](err); ok {
			sc.bad = append(sc.bad, Damage{File: s.path, Reason: bad.Error(), Repair: "recovery skips it; a repair moves it aside"})
			continue
		}
		if err != nil {
			return sc, fmt.Errorf("wal: %w", err)
		}
		sc.valid = append(sc.valid, s)
	}
	return sc, nil
}

// newest returns the LSN of the newest valid snapshot; 0 when there is none.
func (sc snapshotScan) newest() uint64 {
	if len(sc.valid) == 0 {
		return 0
	}
	return sc.valid[len(sc.valid)-1].seq
}

// newestBadAfter returns the path of the newest invalid snapshot newer than lsn; "" for none.
func (sc snapshotScan) newestBadAfter(lsn uint64) string {
	if n := len(sc.bad); n > 0 {
		if seq, _ := parseSeq(filepath.Base(sc.bad[n-1].File), snapSuffix); seq > lsn {
			return sc.bad[n-1].File
		}
	}
	return ""
}

// removeSnapshotTemps removes the temporary files interrupted WriteSnapshot calls left in dir.
func removeSnapshotTemps(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if name := e.Name(); strings.Contains(name, snapSuffix+".") && strings.HasSuffix(name, snapTempSuffix) {
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				return err
			}
		}
	}
	return nil
}
