package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// PostgreSQL takes a batch's request rows and part values in one statement each: every
// column as an array, unnested into rows. A multi-row VALUES list costs the server a parse and
// plan per row and a round trip per chunk; arrays cost one of each per batch.

const pgRequestsBulk = `INSERT INTO requests (part_id, time, request_id, method, host, path, route, status, client_ip,
	"user", role, malicious, flows, attack_types, record, rkey)
	SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[], $4::bytea[], $5::bytea[], $6::bytea[], $7::bytea[],
		$8::integer[], $9::bytea[], $10::bytea[], $11::bytea[], $12::boolean[], $13::bytea[], $14::bytea[], $15::bytea[],
		$16::bytea[])` + requestConflict

const pgValuesBulk = `INSERT INTO part_values (part_id, kind, value, count, first)
	SELECT * FROM unnest($1::bigint[], $2::integer[], $3::bytea[], $4::bigint[], $5::bigint[])
	ON CONFLICT (part_id, kind, value) DO UPDATE SET count = part_values.count + excluded.count,
		first = CASE WHEN excluded.first < part_values.first THEN excluded.first ELSE part_values.first END`

const pgMarksBulk = `INSERT INTO part_values (part_id, kind, value)
	SELECT * FROM unnest($1::bigint[], $2::integer[], $3::bytea[]) ON CONFLICT (part_id, kind, value) DO NOTHING`

// bulkStmts are the statements of the array path (PostgreSQL only).
type bulkStmts struct{ requests, values, marks *sql.Stmt }

func (s *Store) prepareBulk(ctx context.Context) error {
	var err error
	if s.stmt.bulk.requests, err = s.wdb.PrepareContext(ctx, pgRequestsBulk); err != nil {
		return err
	}
	if s.stmt.bulk.values, err = s.wdb.PrepareContext(ctx, pgValuesBulk); err != nil {
		return err
	}
	s.stmt.bulk.marks, err = s.wdb.PrepareContext(ctx, pgMarksBulk)
	return err
}

// bulkRequests inserts the request rows with one statement and returns how many went in.
func (s *Store) bulkRequests(ctx context.Context, tx *sql.Tx, reqs []encodedRequest, aggs map[partKey]*partAgg) (int64, error) {
	n := len(reqs)
	parts, times := make([]int64, n), make([]int64, n)
	statuses := make([]int32, n)
	malicious := make([]bool, n)
	var text [12][][]byte
	for i := range text {
		text[i] = make([][]byte, n)
	}
	for i := range reqs {
		e := &reqs[i]
		r := e.r
		parts[i], times[i], statuses[i], malicious[i] = aggs[partKey{r.Session, r.Part}].id, e.t, int32(r.Status), r.Malicious
		var types string
		if r.Attack != nil {
			types = strings.Join(r.Attack.Types, ",")
		}
		for j, v := range [...]string{r.RequestID, r.Method, r.Host, r.Path, r.Route, r.ClientIP, r.User, r.Role,
			strings.Join(r.Flows, ","), types} {
			text[j][i] = []byte(v)
		}
		text[10][i] = e.json
		text[11][i] = e.key[:]
	}
	res, err := tx.StmtContext(ctx, s.stmt.bulk.requests).ExecContext(ctx, parts, times, text[0], text[1], text[2],
		text[3], text[4], statuses, text[5], text[6], text[7], malicious, text[8], text[9], text[10], text[11])
	if err != nil {
		return 0, fmt.Errorf("store: insert requests: %w", err)
	}
	inserted, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("store: insert requests: %w", err)
	}
	return inserted, nil
}

// bulkValues writes the batch's part values with a statement for the counted ones and one
// for the others.
func (s *Store) bulkValues(ctx context.Context, tx *sql.Tx, counts, marks []valueRow) error {
	if err := s.bulkValueRows(ctx, tx, s.stmt.bulk.values, counts, true); err != nil {
		return err
	}
	return s.bulkValueRows(ctx, tx, s.stmt.bulk.marks, marks, false)
}

func (s *Store) bulkValueRows(ctx context.Context, tx *sql.Tx, st *sql.Stmt, rows []valueRow, withCounts bool) error {
	if len(rows) == 0 {
		return nil
	}
	parts, kinds, values := make([]int64, len(rows)), make([]int32, len(rows)), make([][]byte, len(rows))
	counts, firsts := make([]int64, len(rows)), make([]int64, len(rows))
	for i, v := range rows {
		parts[i], kinds[i], values[i], counts[i], firsts[i] = v.part, int32(v.kind), []byte(v.value), v.count, v.first
	}
	args := []any{parts, kinds, values}
	if withCounts {
		args = append(args, counts, firsts)
	}
	if _, err := tx.StmtContext(ctx, st).ExecContext(ctx, args...); err != nil {
		return fmt.Errorf("store: update part values: %w", err)
	}
	return nil
}
