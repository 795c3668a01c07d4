package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// saveCheckpoint writes v as JSON to file atomically (replaceFile), so that after a crash file
// holds either the checkpoint before or this one, whole.
func saveCheckpoint(file string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return replaceFile(file, ".putallctl-checkpoint-*", func(f *os.File) error {
		_, err := f.Write(append(b, '\n'))
		return err
	})
}

// replaceFile makes file hold what write writes, whole or not at all: write fills a scratch
// file beside it (named by pattern, as os.CreateTemp takes it), which is synced, renamed over
// file, and the directory synced. A failure removes the scratch file and leaves file as it was.
func replaceFile(file, pattern string, write func(f *os.File) error) (err error) {
	dir := filepath.Dir(file)
	tmp, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := write(tmp); err != nil {
		return err
	}
	if err := errors.Join(tmp.Sync(), tmp.Close()); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

// loadCheckpoint reads the checkpoint file into v, refusing unknown fields (a checkpoint of
// another command, or of a newer putallctl).
func loadCheckpoint(file string, v any) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("checkpoint %s: %w", file, err)
	}
	return nil
}
