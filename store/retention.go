package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
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
	rows, err := s.rdb.QueryContext(ctx, `SELECT id FROM parts WHERE last_seen < ? ORDER BY last_seen LIMIT ?`, cutoff, purgeParts)
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
	rows, err := tx.QueryContext(ctx, `SELECT id, flows FROM requests WHERE part_id = ? ORDER BY time LIMIT ?`, id, s.chunk)
	if err != nil {
		return false, fmt.Errorf("store: purge requests: %w", err)
	}
	type flowRow struct {
		id    int64
		flows string
	}
	var ids []int64
	var flowed []flowRow
	for rows.Next() {
		var r flowRow
		if err := rows.Scan(&r.id, &r.flows); err != nil {
			rows.Close()
			return false, fmt.Errorf("store: purge requests: %w", err)
		}
		ids = append(ids, r.id)
		if r.flows != "" {
			flowed = append(flowed, r)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return false, fmt.Errorf("store: purge requests: %w", err)
	}
	for _, r := range flowed {
		for f := range strings.SplitSeq(r.flows, ",") {
			if _, err := tx.ExecContext(ctx, `DELETE FROM request_flows WHERE flow = ? AND part_id = ? AND request = ?`, f, id, r.id); err != nil {
				return false, fmt.Errorf("store: purge flows: %w", err)
			}
		}
	}
	if len(ids) > 0 {
		list, _ := json.Marshal(ids)
		if _, err := tx.ExecContext(ctx, `DELETE FROM requests WHERE id IN (SELECT value FROM json_each(?))`, string(list)); err != nil {
			return false, fmt.Errorf("store: purge requests: %w", err)
		}
	}
	done := len(ids) < s.chunk
	if done {
		if _, err := tx.ExecContext(ctx, `DELETE FROM parts WHERE id = ?`, id); err != nil {
			return false, fmt.Errorf("store: purge part: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("store: purge: %w", err)
	}
	return done, nil
}
