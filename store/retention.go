package store

import (
	"context"
	"fmt"
	"time"
)

// retentionLoop purges expired parts once a minute until Close.
func (s *Store) retentionLoop() {
	defer close(s.done)
	tk := time.NewTicker(retentionEvery)
	defer tk.Stop()
	for {
		n, err := s.Purge(context.Background())
		if err != nil {
			s.log.Warn("retention: purge failed", "error", err.Error())
		} else if n > 0 {
			s.log.Info("retention: parts deleted", "parts", n, "retention", s.retention.String())
		}
		select {
		case <-s.stop:
			return
		case <-tk.C:
		}
	}
}

// Purge deletes every part whose last request is older than the retention, with its
// requests, and returns how many parts it deleted. It works in small transactions (at most
// purgeRows request rows each) so ingest waits milliseconds at most between them; a crash
// half-way leaves parts that the next run finishes. It stops early when the store closes.
func (s *Store) Purge(ctx context.Context) (int, error) {
	if s.retention < 0 {
		return 0, nil
	}
	cutoff := s.now().Add(-s.retention).UnixMilli()
	if s.d.postgres {
		if err := s.dropPartitions(ctx, cutoff); err != nil {
			return 0, err
		}
	}
	total := 0
	for {
		ids, err := s.expired(ctx, cutoff)
		if err != nil || len(ids) == 0 {
			return total, err
		}
		for _, id := range ids {
			if err := s.deletePart(ctx, id); err != nil {
				return total, err
			}
			total++
		}
	}
}

func (s *Store) expired(ctx context.Context, cutoff int64) ([]int64, error) {
	if err := s.Ready(); err != nil {
		return nil, err
	}
	rows, err := s.query(ctx, `SELECT id FROM parts WHERE last_seen < ? ORDER BY last_seen LIMIT ?`, cutoff, purgeParts)
	if err != nil {
		return nil, fmt.Errorf("store: find expired parts: %w", err)
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("store: find expired parts: %w", err)
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// deletePart deletes one part's rows in chunks, then the part itself. The part row goes last,
// so an interrupted purge is found and finished by the next one.
func (s *Store) deletePart(ctx context.Context, id int64) error {
	for {
		done, err := s.deleteChunk(ctx, id)
		if err != nil || done {
			return err
		}
	}
}

func (s *Store) deleteChunk(ctx context.Context, id int64) (bool, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	select {
	case <-s.closed:
		return false, ErrClosed
	default:
	}
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("store: purge: %w", err)
	}
	defer tx.Rollback()
	// The part's index (part_id, time) finds its rows; deleting by rowid then touches only them.
	res, err := tx.ExecContext(ctx, s.d.rebind(`DELETE FROM requests WHERE id IN
		(SELECT id FROM requests WHERE part_id = ? ORDER BY time LIMIT ?)`), id, s.chunk)
	if err != nil {
		return false, fmt.Errorf("store: purge requests: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store: purge requests: %w", err)
	}
	done := n < int64(s.chunk)
	if done {
		if _, err := tx.ExecContext(ctx, s.d.rebind(`DELETE FROM part_values WHERE part_id = ?`), id); err != nil {
			return false, fmt.Errorf("store: purge part values: %w", err)
		}
		if _, err := tx.ExecContext(ctx, s.d.rebind(`DELETE FROM parts WHERE id = ?`), id); err != nil {
			return false, fmt.Errorf("store: purge part: %w", err)
		}
		// The part's values are gone: the writer must not skip them should the part come back.
		s.values.reset()
		// SQLite may give a deleted part's id to the next new part; what the writer remembers
		// about the old one must not stand for the new one.
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("store: purge: %w", err)
	}
	s.committed()
	return done, nil
}
