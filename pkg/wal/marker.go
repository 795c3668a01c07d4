package wal

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// markerName is the file naming the newest segment the log created. Segments are found by
// listing the directory, so without it a deleted last segment would look like a log that simply
// ends earlier. The log rewrites it (temporary file, fsync, rename, fsync of the directory) each
// time it starts a segment, once the segment's header is durable; so the marker never names a
// segment newer than the newest one created, and a segment it names has a durable header. A
// directory without a marker (made before it existed) gets one when the log is next opened.
const markerName = "LAST_SEGMENT"

// readMarker returns the first LSN of the segment the marker names; ok is false when there is
// no marker.
func readMarker(dir string) (first uint64, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, markerName))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	first, ok = parseSeq(strings.TrimSpace(string(b)), ".wal")
	if !ok {
		return 0, false, fmt.Errorf("%s does not name a segment: %.40q", filepath.Join(dir, markerName), b)
	}
	return first, true, nil
}

// writeMarker makes the marker of dir name the segment whose first LSN is first, atomically.
func writeMarker(dir string, first uint64) error {
	tmp := filepath.Join(dir, markerName+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteString(filepath.Base(segmentPath(dir, first)) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if err = errors.Join(err, f.Close()); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, markerName)); err != nil {
		return err
	}
	return syncDir(dir)
}
