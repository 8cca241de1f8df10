// Package store is the database behind the explore API: a SQLite file in the data directory,
// or a PostgreSQL database shared by replicas, that keeps every request record and the state of
// every session part (derived from its request records alone), answers the session list and part
// queries with their filters and the overview of a period, and deletes parts older than the
// retention.
//
// The store is a sink (type "store"): the sinks pipeline hands it batches off the ext_proc path
// and each batch is one transaction, committed before Write returns, so a record acknowledged
// as written survives a crash of the process. One connection writes; a small pool reads, so
// queries never wait for a write (WAL mode on SQLite).
//
// It imports the record shape, the configuration schema and the sinks framework; never the
// sessions engine, gRPC or the HTTP layer.
package store

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the pure-Go "sqlite" driver

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions/risk"
	"github.com/apisessions/apisessions/sinks"
)

// FileName is the database file the store keeps in its directory (with the -wal and -shm files
// SQLite adds next to it).
const FileName = "apisessions.db"

const (
	dirMode = 0o700
	// DefaultRetention applies when Options.Retention is zero.
	DefaultRetention = 7 * 24 * time.Hour
	// retentionEvery is how often the background job looks for expired parts.
	retentionEvery = time.Minute
	// purgeParts and purgeRows bound one retention transaction, so the writer lock is held for
	// milliseconds and ingest is never stalled behind a large deletion.
	purgeParts = 64
	purgeRows  = 1000
)

// Errors a caller branches on.
var (
	// ErrNotFound is returned for an unknown session part or request id.
	ErrNotFound = errors.New("not found")
	// ErrClosed is returned by queries after Close.
	ErrClosed = errors.New("store closed")
	// ErrBadCursor is returned for a cursor the store did not produce.
	ErrBadCursor = errors.New("cursor is not one this API returned; start again without cursor")
)

// Options configure Open.
type Options struct {
	// Driver is DriverSQLite (the default, "") or DriverPostgres.
	Driver string
	// Dir is the directory of a SQLite database (the sink's path, by default server.data_dir).
	Dir string
	// DSN is the PostgreSQL connection string (postgres://user:password@host/db?sslmode=…).
	DSN string
	// Retention is how long a part is kept after its last request (sessions.retention);
	// zero means DefaultRetention, negative keeps parts forever.
	Retention time.Duration
	// Logger already names the component; nil discards.
	Logger *slog.Logger
	// Now is the retention job's clock; nil means time.Now.
	Now func() time.Time
	// NoRetentionJob leaves the background retention job off; Purge can still be called.
	NoRetentionJob bool
	// Readers bounds the read connections (0 = number of CPUs, at least 2).
	Readers int
	// IdleTimeout (sessions.idle_timeout) and DayBoundary (sessions.day_boundary, nil = UTC)
	// are the engine's rules for ending parts: the store derives from them whether a part
	// has ended. Zero IdleTimeout: parts end by day only.
	IdleTimeout time.Duration
	DayBoundary *time.Location
	// Risk scores parts (sessions.risk); nil is the default model.
	Risk *risk.Model

	// Tests set these to move the checkpoint thresholds (checkpoint.go); zero keeps them.
	ckFrames, ckWriterFrames int
	ckIdle                   time.Duration
}

// Store is one open database. Its query methods are safe for concurrent use; Write is called
// by the sinks pipeline from one goroutine.
type Store struct {
	log       *slog.Logger
	path      string
	retention time.Duration
	now       func() time.Time

	// wdb has exactly one connection: SQLite allows one writer, and keeping it in one place
	// lets prepared statements live for the life of the store.
	wdb *sql.DB
	rdb *sql.DB
	// wmu serialises the writer between Write and the retention job.
	wmu  sync.Mutex
	stmt writeStmts
	// values remembers the uncounted part_values rows known to be stored (writer only).
	values *valueCache
	// d is the database engine's dialect.
	d *dialect
	// parts decides whether a part has ended (query.go).
	parts partRules
	// risk scores parts from their risk sums.
	risk *risk.Model
	// afterCommit, when tests set it, runs once a batch is committed, before Write returns:
	// where a crash loses the acknowledgement of a committed batch.
	afterCommit func()
	// pgParts are the request partitions known to exist (PostgreSQL).
	pgParts *partitions
	// ck checkpoints the WAL beside the writer (checkpoint.go).
	ck *checkpointer
	// maxSpanW is the longest last_seen - first_seen of any part, as stored in meta: the
	// writer updates meta only when a batch makes it longer.
	maxSpanW int64
	// probe is how many parts List collects through the filter indexes (probeParts).
	probe int
	// chunk is how many request rows one retention transaction deletes (purgeRows).
	chunk int

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
	closed    chan struct{}
}

// createPrivate creates the database file 0600 before SQLite opens it, because SQLite gives
// the WAL and shared-memory files it creates beside it the database file's mode, and narrows
// the three files of a database that an older version left readable by others.
func createPrivate(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("store: create %s: %w", path, err)
	}
	f.Close()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Chmod(p, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("store: %w", err)
		}
	}
	return nil
}

// Open opens (creating when needed) the database in o.Dir, brings its schema up to date and
// starts the retention job.
func Open(o Options) (*Store, error) {
	switch o.Driver {
	case "", DriverSQLite:
		if o.Dir == "" {
			return nil, errors.New("store: path is empty; set the directory of the store (by default server.data_dir)")
		}
		if err := os.MkdirAll(o.Dir, dirMode); err != nil {
			return nil, fmt.Errorf("store: create directory: %w", err)
		}
	case DriverPostgres:
		if o.DSN == "" {
			return nil, errors.New("store: driver postgres needs a dsn; set dsn: postgres://user:password@host:5432/db")
		}
	default:
		return nil, fmt.Errorf("store: unknown driver %q; use %s or %s", o.Driver, DriverSQLite, DriverPostgres)
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{
		log:       logger,
		path:      filepath.Join(o.Dir, FileName),
		retention: o.Retention,
		now:       o.Now,
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
		closed:    make(chan struct{}),
		probe:     probeParts,
		chunk:     purgeRows,
		d:         sqliteDialect,
		values:    newValueCache(valueCacheSize),
		parts:     partRules{idle: o.IdleTimeout, zone: cmp.Or(o.DayBoundary, time.UTC)},
		risk:      o.Risk,
	}
	if s.risk == nil {
		s.risk = risk.New(config.Default().Sessions.Risk)
	}
	if s.retention == 0 {
		s.retention = DefaultRetention
	}
	if s.now == nil {
		s.now = time.Now
	}
	var err error
	if o.Driver == DriverPostgres {
		s.d = postgresDialect()
		s.pgParts = &partitions{days: map[int64]bool{}}
		err = s.openPostgres(o)
	} else {
		err = s.openDatabases(o)
	}
	if err != nil {
		return nil, err
	}
	n := o.Readers
	if n <= 0 {
		n = max(runtime.NumCPU(), 2)
	}
	s.rdb.SetMaxOpenConns(n)
	s.rdb.SetMaxIdleConns(n)
	if o.NoRetentionJob || s.retention < 0 {
		close(s.done)
	} else {
		go s.retentionLoop()
	}
	return s, nil
}

// openDatabases opens the writer (and brings the schema up to date through it), the readers
// and the checkpoint connection, and starts the checkpoint loop. On error nothing stays open.
func (s *Store) openDatabases(o Options) error {
	var err error
	// WAL lets readers run beside the writer; synchronous=NORMAL keeps every committed
	// transaction across a crash of the process (the WAL is in the OS's hands once written)
	// and only a power loss may lose the last commits. The writer takes its lock at BEGIN so
	// a transaction never fails half-way on a busy database.
	if err := createPrivate(s.path); err != nil {
		return err
	}
	writerFrames := cmp.Or(o.ckWriterFrames, ckWriterFrames)
	s.wdb, err = sql.Open("sqlite", dsn(s.path, writerFrames))
	if err != nil {
		return fmt.Errorf("store: open: %w", err)
	}
	s.wdb.SetMaxOpenConns(1)
	s.wdb.SetMaxIdleConns(1)
	s.wdb.SetConnMaxLifetime(0)
	ctx := context.Background()
	if err := migrate(ctx, s.wdb); err != nil {
		s.wdb.Close()
		return fmt.Errorf("store: %s: %w", s.path, err)
	}
	if err := s.prepare(ctx); err != nil {
		s.wdb.Close()
		return err
	}
	s.rdb, err = sql.Open("sqlite", dsn(s.path, -1))
	if err != nil {
		s.stmt.close()
		s.wdb.Close()
		return fmt.Errorf("store: open readers: %w", err)
	}
	cdb, err := sql.Open("sqlite", dsn(s.path, 0))
	if err != nil {
		s.stmt.close()
		s.wdb.Close()
		s.rdb.Close()
		return fmt.Errorf("store: open checkpointer: %w", err)
	}
	cdb.SetMaxOpenConns(1)
	cdb.SetMaxIdleConns(1)
	cdb.SetConnMaxLifetime(0)
	s.ck = &checkpointer{db: cdb, frames: int64(cmp.Or(o.ckFrames, ckFrames)), idle: cmp.Or(o.ckIdle, ckIdle),
		kick: make(chan struct{}, 1), done: make(chan struct{})}
	go s.checkpointLoop()
	return nil
}

// dsn is the data source of the writer (writerFrames > 0: its automatic checkpoint size), of
// the checkpoint connection (0) or of the readers (-1).
func dsn(path string, writerFrames int) string {
	readOnly := writerFrames < 0
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "foreign_keys(OFF)")
	q.Add("_pragma", "temp_store(MEMORY)")
	if readOnly {
		q.Add("_pragma", "query_only(ON)")
		q.Add("_pragma", "cache_size(-16000)")
	} else {
		// A small cache: with 128 MiB the pager's bookkeeping per transaction over its page
		// table cost more than the reads it saved (docs/performance.md); the operating
		// system caches the file.
		q.Add("_pragma", "cache_size(-16384)")
		// Checkpoints run beside the writer; its own only bound the WAL (checkpoint.go).
		q.Add("_pragma", fmt.Sprintf("wal_autocheckpoint(%d)", max(writerFrames, 0)))
		q.Set("_txlock", "immediate")
	}
	return "file:" + path + "?" + q.Encode()
}

// Path is the database file, or the PostgreSQL DSN without its password.
func (s *Store) Path() string { return s.path }

// Ready reports nil while the store is open.
func (s *Store) Ready() error {
	select {
	case <-s.closed:
		return ErrClosed
	default:
		return nil
	}
}

// Close stops the retention job, finishes the write in flight and closes the database. It is
// idempotent; queries after it return ErrClosed. ctx bounds the wait for the retention job.
func (s *Store) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		close(s.stop)
		select {
		case <-s.done:
		case <-ctx.Done():
			s.closeErr = fmt.Errorf("store: retention job still running: %w", ctx.Err())
		}
		if s.ck != nil {
			<-s.ck.done
		}
		s.wmu.Lock()
		close(s.closed)
		s.stmt.close()
		if s.ck == nil {
			s.closeErr = errors.Join(s.closeErr, s.rdb.Close(), s.wdb.Close())
			s.wmu.Unlock()
			return
		}
		// Leave the planner statistics current for the next start; cheap when nothing changed.
		_, _ = s.wdb.ExecContext(context.WithoutCancel(ctx), "PRAGMA optimize")
		// The writer's connection closes last: SQLite checkpoints the whole WAL then.
		s.closeErr = errors.Join(s.closeErr, s.ck.db.Close(), s.rdb.Close(), s.wdb.Close())
		s.wmu.Unlock()
	})
	return s.closeErr
}

var _ sinks.Sink = (*Store)(nil)
