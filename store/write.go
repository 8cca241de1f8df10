package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sinks"
)

// writeStmts are the writer's prepared statements, prepared once on its one connection.
type writeStmts struct {
	partRows   *sql.Stmt
	partGet    *sql.Stmt
	partRecord *sql.Stmt
	request    *sql.Stmt
	flow       *sql.Stmt
}

func (w *writeStmts) close() {
	for _, st := range []*sql.Stmt{w.partRows, w.partGet, w.partRecord, w.request, w.flow} {
		if st != nil {
			st.Close()
		}
	}
}

func (s *Store) prepare(ctx context.Context) error {
	var err error
	prep := func(q string) *sql.Stmt {
		if err != nil {
			return nil
		}
		var st *sql.Stmt
		st, err = s.wdb.PrepareContext(ctx, q)
		return st
	}
	// A part's request-derived columns add up what each batch brings; user and role follow the
	// newest request that carried one.
	s.stmt.partRows = prep(`INSERT INTO parts (session, part, first_seen, last_seen, rows, rows_malicious,
			rows_bytes_in, rows_bytes_out, rows_last, user, role)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (session, part) DO UPDATE SET
			first_seen = min(first_seen, excluded.first_seen),
			last_seen = max(last_seen, excluded.last_seen),
			rows = rows + excluded.rows,
			rows_malicious = rows_malicious + excluded.rows_malicious,
			rows_bytes_in = rows_bytes_in + excluded.rows_bytes_in,
			rows_bytes_out = rows_bytes_out + excluded.rows_bytes_out,
			rows_last = max(rows_last, excluded.rows_last),
			user = CASE WHEN excluded.user <> '' AND excluded.rows_last >= rows_last THEN excluded.user ELSE user END,
			role = CASE WHEN excluded.role <> '' AND excluded.rows_last >= rows_last THEN excluded.role ELSE role END
		RETURNING id`)
	s.stmt.partGet = prep(`SELECT record FROM parts WHERE session = ? AND part = ?`)
	s.stmt.partRecord = prep(`INSERT INTO parts (session, part, first_seen, last_seen, user, role, record)
		VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (session, part) DO UPDATE SET
			first_seen = min(first_seen, excluded.first_seen),
			last_seen = max(last_seen, excluded.last_seen),
			user = CASE WHEN excluded.user <> '' THEN excluded.user ELSE user END,
			role = CASE WHEN excluded.role <> '' THEN excluded.role ELSE role END,
			record = excluded.record`)
	s.stmt.request = prep(`INSERT INTO requests (part_id, time, request_id, method, host, path, route, status,
			client_ip, user, role, malicious, flows, attack_types, record)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	s.stmt.flow = prep(`INSERT OR IGNORE INTO request_flows (flow, part_id, request) VALUES (?, ?, ?)`)
	if err != nil {
		s.stmt.close()
		return fmt.Errorf("store: prepare: %w", err)
	}
	return nil
}

type partKey struct{ session, part string }

// partAgg sums what one batch adds to one part.
type partAgg struct {
	first, last      int64
	rows, malicious  int64
	bytesIn, bytesOn int64
	user, role       string
	userAt, roleAt   int64
	id               int64
}

// encodedRequest is a request record ready for its row.
type encodedRequest struct {
	r    *record.Request
	t    int64
	json []byte
}

// Write stores a batch in one transaction. When it returns nil every record of the batch is
// committed and survives a crash of the process. A record that cannot be encoded is left out
// and reported as a permanent partial failure; anything else fails the whole batch, which the
// pipeline may retry.
func (s *Store) Write(ctx context.Context, batch []record.Record) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	select {
	case <-s.closed:
		return sinks.ErrClosed
	default:
	}
	reqs := make([]encodedRequest, 0, len(batch))
	var sess []*record.Session
	aggs := map[partKey]*partAgg{}
	var order []partKey
	var bad int
	var badErr error
	for _, rec := range batch {
		switch r := rec.(type) {
		case *record.Request:
			if r == nil || r.Session == "" || r.Part == "" {
				bad++
				badErr = errors.New("request record without session or part")
				continue
			}
			b, err := encodeRequest(r)
			if err != nil {
				bad++
				badErr = fmt.Errorf("encode request record: %w", err)
				continue
			}
			t := ms(r.Time)
			reqs = append(reqs, encodedRequest{r: r, t: t, json: b})
			k := partKey{r.Session, r.Part}
			a := aggs[k]
			if a == nil {
				a = &partAgg{first: t, last: t}
				aggs[k] = a
				order = append(order, k)
			}
			a.first, a.last = min(a.first, t), max(a.last, t)
			a.rows++
			if r.Malicious {
				a.malicious++
			}
			a.bytesIn += r.RequestBytes
			a.bytesOn += r.ResponseBytes
			if r.User != "" && t >= a.userAt {
				a.user, a.userAt = r.User, t
			}
			if r.Role != "" && t >= a.roleAt {
				a.role, a.roleAt = r.Role, t
			}
		case *record.Session:
			if r == nil || r.Session == "" || r.Part == "" {
				bad++
				badErr = errors.New("session record without session or part")
				continue
			}
			sess = append(sess, r)
		default:
			bad++
			badErr = fmt.Errorf("unknown record type %T", rec)
		}
	}
	if len(reqs) > 0 || len(sess) > 0 {
		if err := s.commit(ctx, reqs, sess, aggs, order); err != nil {
			return err
		}
	}
	if bad > 0 {
		return &sinks.PartialError{Failed: bad, Err: sinks.Permanent(badErr)}
	}
	return nil
}

func (s *Store) commit(ctx context.Context, reqs []encodedRequest, sess []*record.Session, aggs map[partKey]*partAgg, order []partKey) error {
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	defer tx.Rollback()
	partRows := tx.StmtContext(ctx, s.stmt.partRows)
	for _, k := range order {
		a := aggs[k]
		if err := partRows.QueryRowContext(ctx, k.session, k.part, a.first, a.last, a.rows, a.malicious,
			a.bytesIn, a.bytesOn, a.last, a.user, a.role).Scan(&a.id); err != nil {
			return fmt.Errorf("store: update part: %w", err)
		}
	}
	ins := tx.StmtContext(ctx, s.stmt.request)
	flow := tx.StmtContext(ctx, s.stmt.flow)
	for i := range reqs {
		e := &reqs[i]
		r := e.r
		id := aggs[partKey{r.Session, r.Part}].id
		var types string
		if r.Attack != nil {
			types = strings.Join(r.Attack.Types, ",")
		}
		res, err := ins.ExecContext(ctx, id, e.t, r.RequestID, r.Method, r.Host, r.Path, r.Route, r.Status,
			r.ClientIP, r.User, r.Role, r.Malicious, strings.Join(r.Flows, ","), types, e.json)
		if err != nil {
			return fmt.Errorf("store: insert request: %w", err)
		}
		if len(r.Flows) > 0 {
			rid, err := res.LastInsertId()
			if err != nil {
				return fmt.Errorf("store: insert request: %w", err)
			}
			for _, f := range r.Flows {
				if _, err := flow.ExecContext(ctx, f, id, rid); err != nil {
					return fmt.Errorf("store: insert flow: %w", err)
				}
			}
		}
	}
	if len(sess) > 0 {
		if err := s.writeSessions(ctx, tx, sess); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}

// writeSessions merges each session record into its part's stored record.
func (s *Store) writeSessions(ctx context.Context, tx *sql.Tx, sess []*record.Session) error {
	get := tx.StmtContext(ctx, s.stmt.partGet)
	put := tx.StmtContext(ctx, s.stmt.partRecord)
	for _, r := range sess {
		var old sql.NullString
		err := get.QueryRowContext(ctx, r.Session, r.Part).Scan(&old)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("store: read part: %w", err)
		}
		merged := cloneSession(r)
		if old.Valid {
			var prev record.Session
			if json.Unmarshal([]byte(old.String), &prev) == nil {
				merged = mergeSession(&prev, r)
			}
		}
		b, err := json.Marshal(merged)
		if err != nil {
			return sinks.Permanent(fmt.Errorf("store: encode session record: %w", err))
		}
		if _, err := put.ExecContext(ctx, r.Session, r.Part, ms(merged.FirstSeen), ms(merged.LastSeen),
			merged.User, merged.Role, string(b)); err != nil {
			return fmt.Errorf("store: update part record: %w", err)
		}
	}
	return nil
}

func encodeRequest(r *record.Request) ([]byte, error) {
	if r.Kind != record.KindRequest {
		c := *r
		c.Kind = record.KindRequest
		r = &c
	}
	return json.Marshal(r)
}

func cloneSession(r *record.Session) *record.Session {
	c := *r
	c.Kind = record.KindSession
	c.IPs = slices.Clone(r.IPs)
	c.UserAgents = slices.Clone(r.UserAgents)
	c.Methods = maps.Clone(r.Methods)
	c.Statuses = maps.Clone(r.Statuses)
	c.Flows = maps.Clone(r.Flows)
	return &c
}

// mergeSession combines the stored state of a part with a newer record of it. Records of one
// part arrive as snapshots, usually each a superset of the last; but a part resumed after a
// restart (or an eviction) starts its counts again under the same name, so counts take the
// larger value per key, distinct lists are united (capped as records cap them), and the newest
// record (by last_seen, then requests) decides user, role and whether the part has ended.
func mergeSession(old, r *record.Session) *record.Session {
	newer := r.LastSeen.After(old.LastSeen.Time) ||
		r.LastSeen.Equal(old.LastSeen.Time) && r.Requests >= old.Requests
	m := cloneSession(old)
	if newer {
		m = cloneSession(r)
		if old.Key.Source != "" {
			m.Key = old.Key
		}
		if m.User == "" {
			m.User = old.User
		}
		if m.Role == "" {
			m.Role = old.Role
		}
	}
	if !old.FirstSeen.IsZero() && (r.FirstSeen.IsZero() || old.FirstSeen.Before(r.FirstSeen.Time)) {
		m.FirstSeen = old.FirstSeen
	} else {
		m.FirstSeen = r.FirstSeen
	}
	if old.LastSeen.After(r.LastSeen.Time) {
		m.LastSeen = old.LastSeen
	} else {
		m.LastSeen = r.LastSeen
	}
	m.Requests = max(old.Requests, r.Requests)
	m.Malicious = max(old.Malicious, r.Malicious)
	m.BytesIn = max(old.BytesIn, r.BytesIn)
	m.BytesOut = max(old.BytesOut, r.BytesOut)
	m.IPs = union(old.IPs, r.IPs)
	m.UserAgents = union(old.UserAgents, r.UserAgents)
	m.Methods = maxCounts(old.Methods, r.Methods)
	m.Statuses = maxCounts(old.Statuses, r.Statuses)
	m.Flows = maxCounts(old.Flows, r.Flows)
	return m
}

func union(a, b []string) []string {
	out := slices.Clone(a)
	for _, v := range b {
		if len(out) >= record.MaxDistinct {
			break
		}
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

func maxCounts(a, b map[string]int) map[string]int {
	if len(a) == 0 && len(b) == 0 {
		return nil
	}
	out := make(map[string]int, max(len(a), len(b)))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = max(out[k], v)
	}
	return out
}

func ms(t record.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}
