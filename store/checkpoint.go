package store

import (
	"context"
	"database/sql"
	"fmt"
	"sync/atomic"
	"time"
)

// Checkpoints. Folding the WAL into the database file writes every page a batch dirtied a
// second time and syncs the file; from a few hundred thousand requests on it costs more than
// the inserts themselves, because the request id index is keyed by random ids and each request
// dirties a leaf of its own. A goroutine does it on a connection of its own, beside the writer
// (SQLite lets a checkpoint run while the writer appends to the WAL), so the writer's commits
// do not wait for it.
//
// The WAL starts again from its beginning only at a write that finds every frame
// checkpointed. Under writes without a pause a checkpoint beside the writer never leaves it
// so, and the WAL would grow; SQLite's own automatic checkpoint on the writer's connection, set
// to ckWriterFrames, bounds it: past that size the writer checkpoints after its commit, when no
// new frame can arrive, and the next write restarts the WAL. By then the goroutine has copied
// all but the last few batches' pages, so that checkpoint is short. (Having the goroutine take
// the writer's lock for a second pass after each checkpoint kept the WAL smaller but cost 4-8 %
// of ingest in BenchmarkIngest.)
const (
	// ckFrames is how many WAL frames (pages) the checkpoint goroutine lets accumulate before
	// it checkpoints. SQLite's default is 1000; a larger interval writes pages that many
	// batches touch (the parts, the indexes' upper levels) once.
	ckFrames = 8192
	// ckIdle is how long committed frames wait for a checkpoint when fewer arrive.
	ckIdle = time.Second
	// ckWriterFrames is the WAL size at which the writer checkpoints itself (128 MiB of 4 KiB
	// pages).
	ckWriterFrames = 4 * ckFrames
)

// checkpointer is the state shared between the writer and the checkpoint goroutine.
type checkpointer struct {
	db *sql.DB
	// frames and idle are ckFrames and ckIdle unless a test sets them through Options.
	frames int64
	idle   time.Duration
	kick   chan struct{} // capacity 1: the writer committed
	done   chan struct{}
	// commits counts the writer's commits not yet followed by a checkpoint.
	commits atomic.Int64
	// runs counts the goroutine's checkpoints.
	runs atomic.Int64
}

// walCheckpoint runs a PASSIVE checkpoint on db: it copies what no reader still needs and
// never waits for readers or the writer. It returns the WAL's frames and those checkpointed.
func walCheckpoint(ctx context.Context, db *sql.DB) (log, done int64, err error) {
	var busy int64
	if err := db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &log, &done); err != nil {
		return 0, 0, fmt.Errorf("store: checkpoint: %w", err)
	}
	return log, done, nil
}

// committed is called by the writer after each commit: it wakes the checkpoint goroutine.
func (s *Store) committed() {
	if s.ck == nil {
		return // PostgreSQL: no WAL of ours to checkpoint
	}
	s.ck.commits.Add(1)
	select {
	case s.ck.kick <- struct{}{}:
	default:
	}
}

// checkpointLoop checkpoints once about c.frames frames have been committed since its last
// checkpoint, or c.idle after a commit when fewer arrive. It learns how many frames a commit
// brings from the checkpoints it runs.
func (s *Store) checkpointLoop() {
	c := s.ck
	defer close(c.done)
	t := time.NewTicker(c.idle)
	defer t.Stop()
	var (
		perCommit float64 // frames per commit, as last measured
		prevLog   int64
		last      = time.Now()
	)
	for {
		idle := false
		select {
		case <-s.stop:
			return
		case <-c.kick:
		case <-t.C:
			idle = true
		}
		n := c.commits.Load()
		if n == 0 {
			continue
		}
		if !idle && perCommit > 0 && float64(n)*perCommit < float64(c.frames) && time.Since(last) < c.idle {
			continue
		}
		log, _, err := walCheckpoint(context.Background(), c.db)
		last = time.Now()
		if err != nil {
			s.log.Warn("store checkpoint failed; the writer checkpoints once the WAL is large", "err", err)
			continue
		}
		c.commits.Add(-n)
		c.runs.Add(1)
		// A WAL that restarted since the last checkpoint holds only new frames.
		added := log - prevLog
		if log < prevLog {
			added = log
		}
		if added > 0 {
			perCommit = float64(added) / float64(n)
		}
		prevLog = log
	}
}
