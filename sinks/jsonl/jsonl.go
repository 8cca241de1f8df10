package jsonl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sinks"
)

// Factory creates jsonl sinks from their Config.
var Factory = sinks.FactoryOf(Type, DefaultConfig, func(_ config.Sink, c *Config, s sinks.Settings) (*Sink, error) {
	return New(*c, s)
})

// StdoutPath is the path that selects Settings.Stdout instead of a file.
const StdoutPath = "-"

const (
	// Records hold user names, client addresses and, for malicious requests, headers and
	// bodies: the owner's alone. A shipper running as another user reads them through a
	// group it is given explicitly (chmod after the fact), never by default.
	fileMode = 0o600
	dirMode  = 0o700
	// chunkBytes is how much of a batch is gathered before it goes to the writer; chunks end on
	// line boundaries.
	chunkBytes = 64 << 10
	// rotateRetry is how long the sink writes on to an oversized file after a rotation failed
	// before it tries again, so a lasting problem costs one warning, not one per line.
	rotateRetry = time.Minute
	// keepBufBytes caps the buffers kept between batches, so one huge record does not pin its
	// memory for the life of the sink.
	keepBufBytes = 1 << 20
)

// Sink writes records as JSON lines. It is safe for concurrent use.
type Sink struct {
	logger *slog.Logger
	// path is the file written; "" when out is stdout.
	path       string
	maxBackups int
	// maxBytes is the size at which the file rotates; 0 = never.
	maxBytes int64
	// special is true when path is not a regular file (a device or a pipe): never rotated or
	// truncated.
	special bool

	mu     sync.Mutex
	out    io.Writer // the file or stdout
	file   *os.File  // nil for stdout, or while a reopen after rotation has failed
	size   int64     // bytes in the current file
	closed bool
	// torn is set when a failed write may have left part of a line behind that could not be cut
	// away; the next write starts with a newline so that the next record starts a line.
	torn bool
	// noRotateUntil is set when a rotation failed.
	noRotateUntil time.Time

	chunk bytes.Buffer // whole lines waiting for the writer
	line  []byte       // the line being encoded, reused from record to record
}

// New opens the sink that cfg describes: path "-" writes to s.Stdout; any other path is a file
// opened for appending (created 0640, its directory 0750) that rotates when a line would take it
// past max_size_mb (0 = no limit), keeping max_backups older files as path.1 (newest) … path.N.
func New(cfg Config, s sinks.Settings) (*Sink, error) {
	if err := validate(cfg); err != nil {
		return nil, err
	}
	logger := s.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	sk := &Sink{
		logger:     logger,
		maxBackups: cfg.MaxBackups,
		maxBytes:   int64(cfg.MaxSizeMB) << 20,
	}
	if cfg.Path == StdoutPath {
		if s.Stdout == nil {
			return nil, errors.New("jsonl: path \"-\" needs a standard output, and none was given")
		}
		sk.out = s.Stdout
		sk.maxBytes = 0
		return sk, nil
	}
	sk.path = filepath.Clean(cfg.Path)
	if err := os.MkdirAll(filepath.Dir(sk.path), dirMode); err != nil {
		return nil, fmt.Errorf("jsonl: create directory: %w", err)
	}
	if err := sk.open(os.O_APPEND); err != nil {
		return nil, err
	}
	return sk, nil
}

// validate refuses what New cannot open. It is more lenient than Config.Validate, which
// checks what a configuration file may say: a sink built in code may switch rotation off.
func validate(cfg Config) error {
	var errs []error
	if cfg.Path == "" {
		errs = append(errs, errors.New(`jsonl: path is empty; set a file path, or "-" for standard output`))
	}
	if cfg.MaxSizeMB < 0 {
		errs = append(errs, fmt.Errorf("jsonl: max_size_mb is %d; use 0 (no rotation) or a positive size", cfg.MaxSizeMB))
	}
	if cfg.MaxBackups < 0 {
		errs = append(errs, fmt.Errorf("jsonl: max_backups is %d; use 0 or more", cfg.MaxBackups))
	}
	return errors.Join(errs...)
}

// open opens s.path for appending, with extra flags (os.O_TRUNC to start it over).
func (s *Sink) open(flags int) error {
	f, err := os.OpenFile(s.path, os.O_RDWR|os.O_CREATE|flags, fileMode)
	if err != nil {
		return fmt.Errorf("jsonl: open %s: %w", s.path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("jsonl: stat %s: %w", s.path, err)
	}
	s.file, s.out, s.size = f, f, st.Size()
	s.torn = false
	if !st.Mode().IsRegular() {
		// A device, pipe or socket (/dev/null, a FIFO a collector reads): it has no size to
		// rotate at and must never be renamed, replaced or truncated.
		s.special, s.maxBytes, s.size = true, 0, 0
		return nil
	}
	// A file that does not end a line (a crash mid-write) gets a newline before the next record.
	if s.size > 0 {
		var last [1]byte
		if _, err := f.ReadAt(last[:], s.size-1); err == nil && last[0] != '\n' {
			s.torn = true
		}
	}
	return nil
}

// Write appends one line per record. Records that cannot be encoded are skipped and reported
// as a permanent *sinks.PartialError; when the writer fails, the records not yet written are
// reported as a *sinks.PartialError (or a plain error when none was written) worth retrying.
func (s *Sink) Write(ctx context.Context, batch []record.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return sinks.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.out == nil {
		// A reopen after rotation failed; try again.
		if err := s.open(os.O_APPEND); err != nil {
			return err
		}
	}
	defer s.trimBuffers()

	var (
		ok        int // records whose lines reached the writer
		skipped   int // records that could not be encoded
		encodeErr error
	)
	fail := func(err error) error {
		if ok == 0 {
			return err
		}
		return &sinks.PartialError{Failed: len(batch) - ok, Err: err}
	}
	flush := func() error {
		n, err := s.flush()
		ok += n
		return err
	}
	for _, rec := range batch {
		if err := s.encode(rec); err != nil {
			skipped++
			if encodeErr == nil {
				encodeErr = sinks.Permanent(err)
			}
			continue
		}
		n := len(s.line)
		if used := s.size + int64(s.chunk.Len()); s.maxBytes > 0 && used > 0 && used+int64(n) > s.maxBytes && s.rotationAllowed() {
			// Every line before this one goes to the current file, then it rotates.
			if err := flush(); err != nil {
				return fail(err)
			}
			if err := s.rotate(); err != nil {
				return fail(err)
			}
		}
		if s.chunk.Len() > 0 && s.chunk.Len()+n > chunkBytes {
			if err := ctx.Err(); err != nil {
				return fail(err)
			}
			if err := flush(); err != nil {
				return fail(err)
			}
		}
		s.chunk.Write(s.line)
	}
	if err := flush(); err != nil {
		return fail(err)
	}
	if skipped > 0 {
		return &sinks.PartialError{Failed: skipped, Err: encodeErr}
	}
	return nil
}

// encode writes rec's JSON line into s.line, with the kind the record's type implies: records
// whose Kind field is empty or wrong are copied, never changed in place. The line is the one a
// json.Encoder writes: json.Marshal's bytes (HTML-escaped, as both escape by default) and a
// newline.
func (s *Sink) encode(rec record.Record) error {
	b, err := sinks.AppendRecord(s.line[:0], rec)
	if err != nil {
		return err
	}
	s.line = append(b, '\n')
	return nil
}

// flush writes the chunk and returns how many of its lines reached the writer. After a failed
// write, a line the writer took only in part is cut away when the output is a file; otherwise
// the next write starts with a newline, so that the records after it stay whole lines.
func (s *Sink) flush() (int, error) {
	if s.chunk.Len() == 0 {
		return 0, nil
	}
	defer s.chunk.Reset()
	if s.torn {
		if _, err := s.out.Write([]byte{'\n'}); err != nil {
			return 0, fmt.Errorf("jsonl: write: %w", err)
		}
		s.size++
		s.torn = false
	}
	chunk := s.chunk.Bytes()
	n, err := s.out.Write(chunk)
	if err == nil && n < len(chunk) {
		err = io.ErrShortWrite
	}
	if err == nil {
		s.size += int64(n)
		return bytes.Count(chunk, []byte{'\n'}), nil
	}
	n = min(max(n, 0), len(chunk))
	whole := bytes.LastIndexByte(chunk[:n], '\n') + 1
	s.size += int64(whole)
	if n > whole {
		s.torn = s.file == nil || s.special || s.file.Truncate(s.size) != nil
	}
	return bytes.Count(chunk[:whole], []byte{'\n'}), fmt.Errorf("jsonl: write: %w", err)
}

// rotate moves the full file aside (path → path.1 → … → path.N, the oldest deleted) and opens a
// new one; without backups it starts the file over. When the renames fail the current file is
// kept, so records are never lost to a rotation problem; they only make the file grow.
func (s *Sink) rotate() error {
	if s.special {
		return nil
	}
	if s.maxBackups == 0 {
		if err := s.file.Close(); err != nil {
			s.logger.Warn("close before rotation", "error", err.Error())
		}
		s.file, s.out = nil, nil
		return s.open(os.O_TRUNC)
	}
	if err := s.shiftBackups(); err != nil {
		s.noRotateUntil = time.Now().Add(rotateRetry)
		s.logger.Warn("rotation failed, writing on to the current file",
			"retry_in", rotateRetry.String(), "error", err.Error())
		return nil
	}
	if err := s.file.Close(); err != nil {
		s.logger.Warn("close after rotation", "error", err.Error())
	}
	s.file, s.out = nil, nil
	return s.open(os.O_APPEND)
}

func (s *Sink) rotationAllowed() bool {
	return s.noRotateUntil.IsZero() || !time.Now().Before(s.noRotateUntil)
}

// shiftBackups renames path.i to path.i+1 from the oldest down, then path to path.1.
func (s *Sink) shiftBackups() error {
	oldest := s.backup(s.maxBackups)
	if err := os.Remove(oldest); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove oldest backup: %w", err)
	}
	for i := s.maxBackups - 1; i >= 1; i-- {
		if err := os.Rename(s.backup(i), s.backup(i+1)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("rename backup %d: %w", i, err)
		}
	}
	if err := os.Rename(s.path, s.backup(1)); err != nil {
		return fmt.Errorf("rename to backup 1: %w", err)
	}
	return nil
}

func (s *Sink) backup(i int) string { return s.path + "." + strconv.Itoa(i) }

// trimBuffers drops buffers a huge record grew, keeping ordinary ones for the next batch.
func (s *Sink) trimBuffers() {
	if s.chunk.Cap() > keepBufBytes {
		s.chunk = bytes.Buffer{}
	}
	if cap(s.line) > keepBufBytes {
		s.line = nil
	}
}

// Close flushes and closes the file; standard output is left open. Later Writes fail with
// sinks.ErrClosed; Close is idempotent.
func (s *Sink) Close(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	_, err := s.flush()
	if s.file != nil {
		if cerr := s.file.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("jsonl: close %s: %w", s.path, cerr))
		}
	}
	s.file, s.out = nil, nil
	return err
}
