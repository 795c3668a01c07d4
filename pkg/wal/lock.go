package wal

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// lockName is the file of a data directory that the process using the directory holds an
// exclusive flock(2) on, for as long as it uses it; the file holds that process's pid. flock locks
// belong to an open file, not to a process, so two Logs of one process exclude each other too, and
// the kernel releases the lock when the holder exits, however it exits.
const lockName = "LOCK"

// Lock attempts: Check probes the lock with a shared flock for an instant, so a process that finds
// it taken tries again a few times before it gives up.
const (
	lockAttempts = 5
	lockRetry    = 10 * time.Millisecond
)

// LockedError is returned by Open and Repair when another process (or another open Log of this
// one) is using the directory.
type LockedError struct {
	Dir string // the data directory
	PID int    // the pid the holder wrote into the lock file; 0 when it could not be read
}

// Error names the directory and the holder.
func (e *LockedError) Error() string {
	holder := "another process"
	if e.PID > 0 {
		holder = fmt.Sprintf("another process (pid %d)", e.PID)
	}
	return fmt.Sprintf("wal: data directory %s is in use by %s; two processes must never share one", e.Dir, holder)
}

// dirLock is a held lock on a data directory.
type dirLock struct{ f *os.File }

// lockDir takes the exclusive lock of dir and writes this process's pid into the lock file. It
// fails with a *LockedError when the lock is held elsewhere.
func lockDir(dir string) (*dirLock, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	for attempt := 1; ; attempt++ {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EWOULDBLOCK) || attempt == lockAttempts {
			break
		}
		time.Sleep(lockRetry)
	}
	if errors.Is(err, syscall.EWOULDBLOCK) {
		pid := readPID(f)
		f.Close()
		return nil, &LockedError{Dir: dir, PID: pid}
	}
	if err == nil {
		err = f.Truncate(0)
	}
	if err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("wal: lock %s: %w", dir, err)
	}
	return &dirLock{f: f}, nil
}

// release gives the lock up. The pid stays in the file: removing the file could let two
// processes lock two different files of the same name.
func (l *dirLock) release() error { return l.f.Close() }

// lockHolder reports the pid of the process holding dir's lock (0 when its pid is unknown), and
// whether one does, without taking the lock for longer than an instant and without creating the
// lock file.
func lockHolder(dir string) (pid int, held bool, err error) {
	f, err := os.Open(filepath.Join(dir, lockName))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("wal: %w", err)
	}
	defer f.Close()
	switch err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); {
	case errors.Is(err, syscall.EWOULDBLOCK):
		return readPID(f), true, nil
	case err != nil:
		return 0, false, fmt.Errorf("wal: probe the lock of %s: %w", dir, err)
	}
	return 0, false, nil // closing f releases the probe
}

// readPID reads the pid a lock holder wrote into the lock file f; 0 when there is none.
func readPID(f *os.File) int {
	b := make([]byte, 32)
	n, _ := f.ReadAt(b, 0)
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b[:n])))
	if err != nil {
		return 0
	}
	return pid
}
