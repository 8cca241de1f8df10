package store

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/apisessions/apisessions/sessions/record"
)

// batchOf returns n request records of one part, each with its own request id.
func batchOf(tag string, n int) []record.Record {
	out := make([]record.Record, n)
	for i := range out {
		out[i] = req("s-"+tag, "2026-11-22", time.Duration(i)*time.Millisecond, func(r *record.Request) {
			r.RequestID = fmt.Sprintf("%s-%04d", tag, i)
		})
	}
	return out
}

// walCounts runs a PASSIVE checkpoint on a reader connection and returns the WAL's frames and
// how many of them are checkpointed.
func walCounts(t *testing.T, s *Store) (log, done int64) {
	t.Helper()
	log, done, err := walCheckpoint(context.Background(), s.rdb)
	if err != nil {
		t.Fatal(err)
	}
	return log, done
}

// The checkpoint goroutine folds what the writer commits into the database file; the writer's
// own automatic checkpoint waits for a WAL of ckWriterFrames.
func TestCheckpointBesideTheWriter(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir(), NoRetentionJob: true, Readers: 2, ckIdle: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	var ac int
	if err := s.wdb.QueryRow("PRAGMA wal_autocheckpoint").Scan(&ac); err != nil || ac != ckWriterFrames {
		t.Fatalf("writer's wal_autocheckpoint = %d (%v); want %d", ac, err, ckWriterFrames)
	}
	for i := range 5 {
		write(t, s, batchOf(fmt.Sprint(i), 50)...)
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.ck.runs.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint within 10s of the writes")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Once the writer is quiet the WAL is checkpointed to its end.
	for {
		log, done := walCounts(t, s)
		if log > 0 && done == log {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("WAL has %d frames, %d checkpointed, 10s after the writes", log, done)
		}
		time.Sleep(5 * time.Millisecond)
	}
	p, err := s.List(context.Background(), ListQuery{})
	if err != nil || len(p.Sessions) != 5 {
		t.Fatalf("list after checkpoints: %v, %d parts; want 5", err, len(p.Sessions))
	}
}

// Under writes without a pause the WAL could grow without bound beside a checkpointer that
// never catches up; past ckWriterFrames the writer checkpoints after its commit, and the WAL
// starts again from its beginning.
func TestCheckpointWriterBoundsTheWAL(t *testing.T) {
	// The goroutine never checkpoints here (an hour idle, a huge interval once it has
	// measured a commit), so only the writer's checkpoints keep the WAL small.
	s, err := Open(Options{Dir: t.TempDir(), NoRetentionJob: true, Readers: 2,
		ckFrames: 1 << 40, ckWriterFrames: 100, ckIdle: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	write(t, s, batchOf("first", 50)...)
	st, err := os.Stat(s.path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	one := st.Size()
	for i := range 40 {
		write(t, s, batchOf(fmt.Sprint(i), 50)...)
	}
	st, err = os.Stat(s.path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	// Without the writer's checkpoints the WAL would hold all 41 batches. A restart can be
	// put off by a checkpoint that finds the WAL in use (a busy machine), so half of that is
	// the bound: still far below what a WAL that was never restarted holds.
	if st.Size() > 20*one {
		t.Errorf("WAL is %d bytes after 41 batches; the first made it %d: it was never restarted", st.Size(), one)
	}
	p, err := s.List(context.Background(), ListQuery{Limit: 100})
	if err != nil || len(p.Sessions) != 41 {
		t.Fatalf("list: %v, %d parts; want 41", err, len(p.Sessions))
	}
}
