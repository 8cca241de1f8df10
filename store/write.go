package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/bits"
	"slices"
	"strings"
	"time"

	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sinks"
)

// writeStmts are the writer's prepared statements, prepared once on its one connection.
// Parts, their records, requests and part values go in multi-row statements: one statement
// executes per chunk of rows instead of one per row, which saves the driver's binding and
// stepping per row; a batch of parts never seen before (a flood of new session keys) costs a
// handful of statements instead of one per part.
type writeStmts struct {
	span *sql.Stmt
	// stored[i] reads the stored records of 1<<i parts; parts[i] upserts 1<<i parts; records[i]
	// sets the merged record of 1<<i parts; requests[i] inserts 1<<i request rows; values[i]
	// inserts 1<<i part_values rows. Any number of rows is a sum of these sizes, so a handful of
	// statements covers every batch.
	stored   [storedSizes]*sql.Stmt
	parts    [partSizes]*sql.Stmt
	records  [recordSizes]*sql.Stmt
	requests [requestSizes]*sql.Stmt
	values   [valueSizes]*sql.Stmt
}

const (
	storedSizes    = 7 // up to 64 parts a statement
	partUpsertCols = 11
	partSizes      = 7 // up to 64 parts a statement
	recordCols     = 4
	recordSizes    = 7 // up to 64 records a statement
	requestCols    = 15
	requestSizes   = 6 // up to 32 rows a statement
	valueSizes     = 7 // up to 64 rows a statement
)

// chunkLen is how many of the n rows left the next statement takes: the largest size at hand.
func chunkLen(n, sizes int) int {
	c := 1 << (sizes - 1)
	for c > n {
		c >>= 1
	}
	return c
}

// multiRow prepares head, 1<<i copies of row and tail for every i.
func (s *Store) multiRow(ctx context.Context, dst []*sql.Stmt, head, row, tail string) error {
	for i := range dst {
		var b strings.Builder
		b.WriteString(head)
		for j := range 1 << i {
			if j > 0 {
				b.WriteByte(',')
			}
			b.WriteString(row)
		}
		b.WriteString(tail)
		st, err := s.wdb.PrepareContext(ctx, b.String())
		if err != nil {
			return err
		}
		dst[i] = st
	}
	return nil
}

func (w *writeStmts) close() {
	all := []*sql.Stmt{w.span}
	all = append(all, w.stored[:]...)
	all = append(all, w.parts[:]...)
	all = append(all, w.records[:]...)
	all = append(all, w.requests[:]...)
	all = append(all, w.values[:]...)
	for _, st := range all {
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
	s.stmt.span = prep(`INSERT INTO meta (key, value) VALUES ('max_span', ?)
		ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)`)
	if err == nil {
		err = s.multiRow(ctx, s.stmt.stored[:], `SELECT session, part, record FROM parts
			WHERE record IS NOT NULL AND (session, part) IN (VALUES `, "(?,?)", ")")
	}
	// A part's request-derived columns add up what each batch brings; user and role follow the
	// newest request that carried one. RETURNING gives its rows in no set order, hence the key.
	if err == nil {
		err = s.multiRow(ctx, s.stmt.parts[:], `INSERT OR FAIL INTO parts (session, part, first_seen, last_seen, rows,
			rows_malicious, rows_bytes_in, rows_bytes_out, rows_last, user, role) VALUES `,
			"(?,?,?,?,?,?,?,?,?,?,?)",
			` ON CONFLICT (session, part) DO UPDATE SET
			first_seen = min(first_seen, excluded.first_seen),
			last_seen = max(last_seen, excluded.last_seen),
			rows = rows + excluded.rows,
			rows_malicious = rows_malicious + excluded.rows_malicious,
			rows_bytes_in = rows_bytes_in + excluded.rows_bytes_in,
			rows_bytes_out = rows_bytes_out + excluded.rows_bytes_out,
			rows_last = max(rows_last, excluded.rows_last),
			user = CASE WHEN excluded.user <> '' AND excluded.rows_last >= rows_last THEN excluded.user ELSE user END,
			role = CASE WHEN excluded.role <> '' AND excluded.rows_last >= rows_last THEN excluded.role ELSE role END
		RETURNING id, session, part, last_seen - first_seen`)
	}
	// A batch that brings session records of a part then sets its merged record; the record's
	// user and role, when set, win over the requests' (it is the engine's own view).
	if err == nil {
		err = s.multiRow(ctx, s.stmt.records[:], `UPDATE parts SET record = v.column2,
			user = CASE WHEN v.column3 <> '' THEN v.column3 ELSE parts.user END,
			role = CASE WHEN v.column4 <> '' THEN v.column4 ELSE parts.role END
		FROM (VALUES `, "(?,?,?,?)", `) AS v WHERE parts.id = v.column1`)
	}
	if err == nil {
		err = s.multiRow(ctx, s.stmt.requests[:], `INSERT OR FAIL INTO requests (part_id, time, request_id, method, host,
			path, route, status, client_ip, user, role, malicious, flows, attack_types, record) VALUES `,
			"(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", "")
	}
	if err == nil {
		err = s.multiRow(ctx, s.stmt.values[:], `INSERT OR IGNORE INTO part_values (part_id, kind, value) VALUES `, "(?,?,?)", "")
	}
	if err == nil {
		err = s.wdb.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'max_span'`).Scan(&s.maxSpanW)
		if errors.Is(err, sql.ErrNoRows) {
			err = nil
		}
	}
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
			// The only value of a request record JSON cannot encode is a float that is not a
			// number; checking it here lets the encoding run beside the first statements.
			if math.IsNaN(r.DurationMS) || math.IsInf(r.DurationMS, 0) {
				bad++
				badErr = errors.New("encode request record: duration_ms is not a finite number")
				continue
			}
			t := ms(r.Time)
			reqs = append(reqs, encodedRequest{r: r, t: t})
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

// commit writes one batch in one transaction: the merged session records and request counts
// of every part it touches, then the request rows, then the longest part span.
func (s *Store) commit(ctx context.Context, reqs []encodedRequest, sess []*record.Session, aggs map[partKey]*partAgg, order []partKey) error {
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	defer tx.Rollback()
	// The request records are encoded on another core while this one merges the session
	// records and updates the parts; the request rows need them only after that.
	wait := encodeRequests(reqs)
	defer wait()
	// The session records of a part are merged in memory first, so each part of the batch
	// costs one upsert whatever it brings: request counts, a merged record, or both.
	merged, err := s.mergeSessions(ctx, tx, sess)
	if err != nil {
		return err
	}
	for _, r := range sess {
		k := partKey{r.Session, r.Part}
		if aggs[k] == nil {
			aggs[k] = &partAgg{}
			order = append(order, k)
		}
	}
	span, err := s.upsertParts(ctx, tx, aggs, order, merged)
	if err != nil {
		return err
	}
	if err := wait(); err != nil {
		return err
	}
	newKeys, err := s.insertRequests(ctx, tx, reqs, aggs)
	if err != nil {
		return err
	}
	if span > s.maxSpanW {
		if _, err := tx.StmtContext(ctx, s.stmt.span).ExecContext(ctx, span); err != nil {
			return fmt.Errorf("store: update part span: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	s.committed()
	// Only what is committed may be remembered: a rolled back batch comes again.
	s.values.add(newKeys)
	for k, m := range merged {
		s.records.put(k, asStored(m.rec))
	}
	if span > s.maxSpanW {
		s.maxSpanW = span
	}
	return nil
}

// encodeRequests encodes the request records into their json fields on another goroutine. The
// returned wait reports how that went; it may be called more than once (later calls return nil)
// and must be called before reqs' json is read or the batch is dropped.
func encodeRequests(reqs []encodedRequest) (wait func() error) {
	encoded := make(chan error, 1)
	go func() {
		// All the records go into one buffer that belongs to this commit alone; each keeps a
		// slice of it capped at its end, so a later append never writes into it.
		buf := make([]byte, 0, len(reqs)*requestJSONSize)
		for i := range reqs {
			start := len(buf)
			b, err := sinks.AppendRecord(buf, reqs[i].r)
			if err != nil {
				encoded <- err
				return
			}
			buf = b
			reqs[i].json = buf[start:len(buf):len(buf)]
		}
		encoded <- nil
	}()
	waited := false
	return func() error {
		if waited {
			return nil
		}
		waited = true
		if err := <-encoded; err != nil {
			return sinks.Permanent(fmt.Errorf("store: encode request record: %w", err))
		}
		return nil
	}
}

// upsertParts brings every part of the batch up to date, in order: its request counts and, when
// the batch holds one, its merged session record. It fills each partAgg's id and returns the
// longest part span seen, at least the one known before.
func (s *Store) upsertParts(ctx context.Context, tx *sql.Tx, aggs map[partKey]*partAgg, order []partKey, merged map[partKey]*mergedRecord) (int64, error) {
	span := s.maxSpanW
	args := make([]any, 0, (1<<(partSizes-1))*partUpsertCols)
	for start := 0; start < len(order); {
		n := chunkLen(len(order)-start, partSizes)
		args = args[:0]
		for _, k := range order[start : start+n] {
			a := aggs[k]
			first, last := a.first, a.last
			if m := merged[k]; m != nil {
				// A part the batch brings no request of takes its times from the record.
				rf, rl := ms(m.rec.FirstSeen), ms(m.rec.LastSeen)
				if a.rows > 0 {
					rf, rl = min(rf, first), max(rl, last)
				}
				first, last = rf, rl
			}
			args = append(args, k.session, k.part, first, last, a.rows, a.malicious, a.bytesIn, a.bytesOn, a.last, a.user, a.role)
		}
		start += n
		sp, err := s.upsertChunk(ctx, tx, s.stmt.parts[bits.TrailingZeros(uint(n))], args, aggs)
		if err != nil {
			return 0, err
		}
		span = max(span, sp)
	}
	if err := s.setRecords(ctx, tx, aggs, order, merged); err != nil {
		return 0, err
	}
	return span, nil
}

// upsertChunk runs one multi-row upsert of parts and notes the id of each; it returns the
// longest span among them.
func (s *Store) upsertChunk(ctx context.Context, tx *sql.Tx, st *sql.Stmt, args []any, aggs map[partKey]*partAgg) (int64, error) {
	rows, err := tx.StmtContext(ctx, st).QueryContext(ctx, args...)
	if err != nil {
		return 0, fmt.Errorf("store: update parts: %w", err)
	}
	defer rows.Close()
	var span int64
	want := len(args) / partUpsertCols
	got := 0
	for rows.Next() {
		var k partKey
		var id, sp int64
		if err := rows.Scan(&id, &k.session, &k.part, &sp); err != nil {
			return 0, fmt.Errorf("store: update parts: %w", err)
		}
		a := aggs[k]
		if a == nil {
			return 0, fmt.Errorf("store: update parts: part %s/%s returned, not in the batch", k.session, k.part)
		}
		a.id = id
		span = max(span, sp)
		got++
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("store: update parts: %w", err)
	}
	if got != want {
		return 0, fmt.Errorf("store: update parts: %d parts written, %d returned", want, got)
	}
	return span, nil
}

// setRecords stores the merged session record of the parts that have one, in batch order.
func (s *Store) setRecords(ctx context.Context, tx *sql.Tx, aggs map[partKey]*partAgg, order []partKey, merged map[partKey]*mergedRecord) error {
	if len(merged) == 0 {
		return nil
	}
	args := make([]any, 0, (1<<(recordSizes-1))*recordCols)
	flush := func() error {
		n := len(args) / recordCols
		if n == 0 {
			return nil
		}
		for n > 0 {
			c := chunkLen(n, recordSizes)
			st := s.stmt.records[bits.TrailingZeros(uint(c))]
			if _, err := tx.StmtContext(ctx, st).ExecContext(ctx, args[:c*recordCols]...); err != nil {
				return fmt.Errorf("store: update part records: %w", err)
			}
			args = append(args[:0], args[c*recordCols:]...)
			n -= c
		}
		return nil
	}
	for _, k := range order {
		m := merged[k]
		if m == nil {
			continue
		}
		args = append(args, aggs[k].id, string(m.json), m.rec.User, m.rec.Role)
		if len(args) == cap(args) {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// insertRequests writes the request rows and the part values they bring that are not known
// yet, and returns the cache keys of those values.
func (s *Store) insertRequests(ctx context.Context, tx *sql.Tx, reqs []encodedRequest, aggs map[partKey]*partAgg) ([]uint64, error) {
	args := make([]any, 0, (1<<(requestSizes-1))*requestCols)
	var vals []partValue
	var keys []uint64
	inBatch := map[uint64]struct{}{}
	var scratch []partValue
	for start := 0; start < len(reqs); {
		n := chunkLen(len(reqs)-start, requestSizes)
		chunk := reqs[start : start+n]
		start += n
		args = args[:0]
		for i := range chunk {
			e := &chunk[i]
			r := e.r
			id := aggs[partKey{r.Session, r.Part}].id
			var types string
			if r.Attack != nil {
				types = strings.Join(r.Attack.Types, ",")
			}
			args = append(args, id, e.t, r.RequestID, r.Method, r.Host, r.Path, r.Route, r.Status,
				r.ClientIP, r.User, r.Role, r.Malicious, strings.Join(r.Flows, ","), types, e.json)
			scratch = requestValues(scratch[:0], id, r.Method, r.Host, r.Path, r.Route, r.Status, r.ClientIP,
				r.User, r.Role, r.Malicious, r.Flows)
			for _, v := range scratch {
				k := s.values.key(v)
				if _, ok := inBatch[k]; ok || s.values.has(k) {
					continue
				}
				inBatch[k] = struct{}{}
				keys = append(keys, k)
				vals = append(vals, v)
			}
		}
		st := s.stmt.requests[bits.TrailingZeros(uint(n))]
		if _, err := tx.StmtContext(ctx, st).ExecContext(ctx, args...); err != nil {
			return nil, fmt.Errorf("store: insert requests: %w", err)
		}
	}
	for start := 0; start < len(vals); {
		n := chunkLen(len(vals)-start, valueSizes)
		chunk := vals[start : start+n]
		start += n
		args = args[:0]
		for _, v := range chunk {
			args = append(args, v.part, v.kind, v.value)
		}
		st := s.stmt.values[bits.TrailingZeros(uint(n))]
		if _, err := tx.StmtContext(ctx, st).ExecContext(ctx, args...); err != nil {
			return nil, fmt.Errorf("store: insert part values: %w", err)
		}
	}
	return keys, nil
}

// mergedRecord is a part's session record after the batch, and its JSON.
type mergedRecord struct {
	rec  *record.Session
	json []byte
}

// mergeSessions merges each session record into its part's stored record (remembered, or
// read from the part row), in batch order.
func (s *Store) mergeSessions(ctx context.Context, tx *sql.Tx, sess []*record.Session) (map[partKey]*mergedRecord, error) {
	if len(sess) == 0 {
		return nil, nil
	}
	stored, err := s.storedRecords(ctx, tx, sess)
	if err != nil {
		return nil, err
	}
	out := make(map[partKey]*mergedRecord, len(sess))
	for _, r := range sess {
		k := partKey{r.Session, r.Part}
		var prev *record.Session
		if m := out[k]; m != nil {
			prev = m.rec
		} else if c, ok := s.records.get(k); ok {
			prev = c
		} else {
			prev = stored[k]
		}
		m := cloneSession(r)
		if prev != nil {
			m = mergeSession(prev, r)
		}
		out[k] = &mergedRecord{rec: m}
	}
	// One buffer for the batch's records, each a slice capped at its end (see commit).
	var buf []byte
	for _, m := range out {
		start := len(buf)
		buf = m.rec.AppendJSON(buf)
		m.json = buf[start:len(buf):len(buf)]
	}
	return out, nil
}

// storedRecords reads the stored record of the parts of sess the writer does not remember, a
// chunk of parts per statement: a flood of new session keys brings hundreds of final records a
// batch, of parts whose requests came long before. A part without a stored record (or with one
// that does not decode) is absent from the result.
func (s *Store) storedRecords(ctx context.Context, tx *sql.Tx, sess []*record.Session) (map[partKey]*record.Session, error) {
	var keys []any
	asked := make(map[partKey]bool)
	for _, r := range sess {
		k := partKey{r.Session, r.Part}
		if asked[k] {
			continue
		}
		asked[k] = true
		if _, ok := s.records.get(k); !ok {
			keys = append(keys, k.session, k.part)
		}
	}
	stored := make(map[partKey]*record.Session)
	for len(keys) > 0 {
		n := chunkLen(len(keys)/2, storedSizes)
		st := s.stmt.stored[bits.TrailingZeros(uint(n))]
		rows, err := tx.StmtContext(ctx, st).QueryContext(ctx, keys[:2*n]...)
		if err != nil {
			return nil, fmt.Errorf("store: read parts: %w", err)
		}
		for rows.Next() {
			var k partKey
			var old []byte
			if err := rows.Scan(&k.session, &k.part, &old); err != nil {
				rows.Close()
				return nil, fmt.Errorf("store: read parts: %w", err)
			}
			var p record.Session
			if json.Unmarshal(old, &p) == nil {
				stored[k] = &p
			}
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("store: read parts: %w", err)
		}
		keys = keys[2*n:]
	}
	return stored, nil
}

// recordCache remembers the stored session record of recent parts, so a snapshot is merged
// without reading and decoding the part row. Bounded: when full it starts again empty. The
// records in it are never modified (mergeSession builds new ones). Writer only, under wmu.
type recordCache struct {
	m   map[partKey]*record.Session
	max int
}

// recordCacheSize bounds the cache: a record is about 1 KB.
const recordCacheSize = 8192

func newRecordCache(n int) *recordCache {
	return &recordCache{m: make(map[partKey]*record.Session), max: n}
}

func (c *recordCache) get(k partKey) (*record.Session, bool) {
	r, ok := c.m[k]
	return r, ok
}

func (c *recordCache) put(k partKey, r *record.Session) {
	if _, ok := c.m[k]; !ok && len(c.m) >= c.max {
		clear(c.m)
	}
	c.m[k] = r
}

func (c *recordCache) reset() { clear(c.m) }

// asStored returns r as it reads back from its JSON: times in UTC to the millisecond, so a
// merge with a remembered record decides exactly as one with the stored record would.
func asStored(r *record.Session) *record.Session {
	c := *r
	c.FirstSeen = record.At(r.FirstSeen.Truncate(time.Millisecond).UTC())
	c.LastSeen = record.At(r.LastSeen.Truncate(time.Millisecond).UTC())
	return &c
}

// requestJSONSize is about the size of a request record's JSON, to size the buffer a batch
// is encoded into; a larger record only makes the buffer grow.
const requestJSONSize = 768

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
