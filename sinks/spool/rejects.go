package spool

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// RejectsFile is the name of the file Rejects writes; the previous one is RejectsFile + ".1".
const RejectsFile = "rejected.jsonl"

// Rejects keeps what a destination refused, for a person to inspect: one JSON line per entry,
//
//	{"time": "2026-11-22T10:00:00.000Z", "reason": "webhook: status 400", "record": {...}}
//
// in RejectsFile, which is moved to RejectsFile.1 (replacing the older one) when it reaches half
// of the size limit, so the two never pass it together. Entries must be JSON values. It is safe
// for concurrent use.
type Rejects struct {
	path string
	half int64

	mu     sync.Mutex
	f      *os.File
	size   int64
	closed bool
	buf    []byte
	now    func() time.Time
}

// OpenRejects opens (creating it if needed) the rejects file in dir, keeping at most maxBytes.
func OpenRejects(dir string, maxBytes int64) (*Rejects, error) {
	if maxBytes <= 0 {
		return nil, fmt.Errorf("spool: rejects size limit %d is not positive", maxBytes)
	}
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return nil, fmt.Errorf("spool: create rejects directory: %w", err)
	}
	r := &Rejects{path: filepath.Join(dir, RejectsFile), half: max(maxBytes/2, 1), now: time.Now}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Rejects) open() error {
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, fileMode)
	if err != nil {
		return fmt.Errorf("spool: open rejects: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("spool: stat rejects: %w", err)
	}
	r.f, r.size = f, st.Size()
	return nil
}

// Add writes one line per entry with reason, which must not hold anything secret. A line longer
// than the file may hold is not written and counts in dropped.
func (r *Rejects) Add(reason string, entries [][]byte) (dropped int, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, ErrClosed
	}
	quoted, err := json.Marshal(reason)
	if err != nil {
		return 0, fmt.Errorf("spool: encode reject reason: %w", err)
	}
	if r.f == nil {
		// A rotation failed to reopen the file; try again.
		if err := r.open(); err != nil {
			return 0, err
		}
	}
	stamp := r.now().UTC().Format("2006-01-02T15:04:05.000Z07:00")
	for _, e := range entries {
		r.buf = append(r.buf[:0], `{"time":"`...)
		r.buf = append(r.buf, stamp...)
		r.buf = append(r.buf, `","reason":`...)
		r.buf = append(r.buf, quoted...)
		r.buf = append(r.buf, `,"record":`...)
		r.buf = append(r.buf, e...)
		r.buf = append(r.buf, "}\n"...)
		if int64(len(r.buf)) > r.half {
			dropped++
			continue
		}
		if r.size+int64(len(r.buf)) > r.half {
			if err := r.rotate(); err != nil {
				return dropped, err
			}
		}
		n, err := r.f.Write(r.buf)
		r.size += int64(n)
		if err != nil {
			return dropped, fmt.Errorf("spool: write rejects: %w", err)
		}
	}
	if cap(r.buf) > 1<<20 {
		r.buf = nil
	}
	return dropped, nil
}

func (r *Rejects) rotate() error {
	if err := r.f.Close(); err != nil {
		return fmt.Errorf("spool: close rejects: %w", err)
	}
	r.f = nil
	if err := os.Rename(r.path, r.path+".1"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("spool: rotate rejects: %w", err)
	}
	return r.open()
}

// Close closes the file.
func (r *Rejects) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}
