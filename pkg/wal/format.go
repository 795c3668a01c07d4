package wal

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// The segment file layout (a header, then framed records, each with a CRC-32C) is described in
// the package documentation, "On-disk format".
const (
	segMagic        = "PKVW"
	segVersion      = 1
	segHeaderSize   = 16
	frameHeaderSize = 16
)

// MaxRecordBytes is the largest record Append accepts. The length field could describe 4 GiB; the
// bound keeps one record from pinning an unreasonable amount of memory in the writer.
const MaxRecordBytes = 1 << 30

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// segmentHeader returns the header of the segment whose first record has LSN first.
func segmentHeader(first uint64) []byte {
	h := make([]byte, segHeaderSize)
	copy(h, segMagic)
	binary.LittleEndian.PutUint32(h[4:], segVersion)
	binary.LittleEndian.PutUint64(h[8:], first)
	return h
}

// appendFrame appends rec framed as record lsn to dst. payloadCRC must be the CRC-32C of rec; it is
// a parameter so that Append can compute it before taking the log's lock.
func appendFrame(dst []byte, lsn uint64, payloadCRC uint32, rec []byte) []byte {
	var h [frameHeaderSize]byte
	binary.LittleEndian.PutUint32(h[0:], uint32(len(rec)))
	binary.LittleEndian.PutUint64(h[8:], lsn)
	binary.LittleEndian.PutUint32(h[4:], frameCRC(payloadCRC, h[:]))
	dst = append(dst, h[:]...)
	return append(dst, rec...)
}

// frameCRC extends the payload's CRC with the length and LSN fields of the frame header h.
func frameCRC(payloadCRC uint32, h []byte) uint32 {
	c := crc32.Update(payloadCRC, castagnoli, h[0:4])
	return crc32.Update(c, castagnoli, h[8:16])
}

// decodeFrame decodes the record at the start of b. It returns a non-empty problem when b does not
// start with a whole record whose checksum matches; the LSN is not checked against any expectation.
func decodeFrame(b []byte) (lsn uint64, rec []byte, problem string) {
	if len(b) < frameHeaderSize {
		return 0, nil, fmt.Sprintf("incomplete record header (%d of %d bytes)", len(b), frameHeaderSize)
	}
	n := binary.LittleEndian.Uint32(b)
	if uint64(n) > uint64(len(b)-frameHeaderSize) {
		return 0, nil, fmt.Sprintf("record length %d runs past the end of the file (%d bytes left)", n, len(b)-frameHeaderSize)
	}
	rec = b[frameHeaderSize : frameHeaderSize+int(n)]
	if frameCRC(crc32.Checksum(rec, castagnoli), b) != binary.LittleEndian.Uint32(b[4:]) {
		return 0, nil, "checksum mismatch"
	}
	return binary.LittleEndian.Uint64(b[8:]), rec, ""
}

// segmentScan is what scanSegment learned about one segment file.
type segmentScan struct {
	end     int64   // offset just past the last valid record (0 when the header is bad)
	records uint64  // valid records
	last    uint64  // LSN of the last valid record; first-1 when there is none
	damage  *Damage // the first bad spot, File left empty; nil when the whole file is valid
	torn    bool    // damage is a torn tail (cut off silently) rather than corruption
}

// scanSegment checks the segment file contents data, whose first record must have LSN first, and
// calls fn (when not nil) for each valid record in order; rec aliases data. tail says whether this
// is the last segment of the log, the only place a torn write can be. It stops at the first bad
// spot and classifies it by the rule in the package documentation ("Torn write or corruption").
// The error is fn's, when fn fails; damage is reported in the result, not as an error.
func scanSegment(data []byte, first uint64, tail bool, fn func(lsn uint64, rec []byte) error) (segmentScan, error) {
	s := segmentScan{last: first - 1}
	want := segmentHeader(first)
	if len(data) < segHeaderSize || !bytes.Equal(data[:segHeaderSize], want) {
		torn := tail && (allZero(data) || len(data) < segHeaderSize && bytes.HasPrefix(want, data))
		s.fail(data, 0, headerProblem(data, first), torn)
		return s, nil
	}
	s.end = segHeaderSize
	for s.end < int64(len(data)) {
		lsn, rec, problem := decodeFrame(data[s.end:])
		if problem != "" {
			torn, why := tornWrite(data, s.end, s.last+1)
			s.fail(data, s.end, problem+why, tail && torn)
			return s, nil
		}
		if lsn != s.last+1 {
			s.fail(data, s.end, fmt.Sprintf("record has LSN %d, expected %d", lsn, s.last+1), false)
			return s, nil
		}
		if fn != nil {
			if err := fn(lsn, rec); err != nil {
				return s, err
			}
		}
		s.last, s.records = lsn, s.records+1
		s.end += frameHeaderSize + int64(len(rec))
	}
	return s, nil
}

// tornWrite judges the bad spot at off in segment data, where decodeFrame failed and the next
// record should have LSN next: whether it is what a write cut short leaves (torn: only a
// prefix of a record, or zeros, from there to the end of the file), and otherwise why it is not,
// as a clause to append to the problem.
func tornWrite(data []byte, off int64, next uint64) (torn bool, why string) {
	rest := data[off:]
	if len(rest) < frameHeaderSize || allZero(rest) {
		return true, "" // not even a record header, or nothing written at all
	}
	if p := findFrame(data, off+1, next); p >= 0 {
		return false, fmt.Sprintf("; a valid record follows at offset %d", p)
	}
	n := binary.LittleEndian.Uint32(rest)
	if uint64(n) <= uint64(len(rest)-frameHeaderSize) {
		return false, fmt.Sprintf(" in a whole record (%d bytes): data written in full was damaged", frameHeaderSize+int64(n))
	}
	// The record runs past the end of the file: cut short, unless it is whole and only its
	// length field was damaged.
	var h [frameHeaderSize]byte
	copy(h[:], rest)
	binary.LittleEndian.PutUint32(h[:], uint32(len(rest)-frameHeaderSize))
	if len(rest)-frameHeaderSize <= MaxRecordBytes &&
		frameCRC(crc32.Checksum(rest[frameHeaderSize:], castagnoli), h[:]) == binary.LittleEndian.Uint32(h[4:]) {
		return false, "; the record is whole and only its length field is damaged"
	}
	return true, ""
}

func (s *segmentScan) fail(data []byte, off int64, reason string, torn bool) {
	s.damage = &Damage{Offset: off, Bytes: int64(len(data)) - off, Reason: reason}
	s.torn = torn
}

// headerProblem says what is wrong with a segment header that is not the expected one.
func headerProblem(data []byte, first uint64) string {
	switch {
	case len(data) < segHeaderSize:
		return fmt.Sprintf("incomplete segment header (%d of %d bytes)", len(data), segHeaderSize)
	case string(data[:4]) != segMagic:
		return fmt.Sprintf("bad segment magic %q", data[:4])
	case binary.LittleEndian.Uint32(data[4:]) != segVersion:
		return fmt.Sprintf("unsupported segment version %d", binary.LittleEndian.Uint32(data[4:]))
	default:
		return fmt.Sprintf("segment header says first LSN %d, file name says %d", binary.LittleEndian.Uint64(data[8:]), first)
	}
}

// findFrame returns the first offset at or after from holding a whole record with a matching
// checksum and an LSN in [minLSN, minLSN+records that could fit], or -1. The LSN window is checked
// first so that the search costs one comparison per byte on zeros and random data.
func findFrame(data []byte, from int64, minLSN uint64) int64 {
	if allZero(data[from:]) {
		return -1
	}
	maxLSN := minLSN + uint64(len(data))/frameHeaderSize
	for p := from; p+frameHeaderSize <= int64(len(data)); p++ {
		if lsn := binary.LittleEndian.Uint64(data[p+8:]); lsn < minLSN || lsn > maxLSN {
			continue
		}
		if _, _, problem := decodeFrame(data[p:]); problem == "" {
			return p
		}
	}
	return -1
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
