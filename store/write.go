package store

import (
	"cmp"
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/risk"
	"github.com/apisessions/apisessions/sinks"
)

// writeStmts are the writer's prepared statements, prepared once on its connection. On SQLite
// parts, requests and part values go in multi-row statements: one statement executes per chunk
// of rows instead of one per row, which saves the driver's binding and stepping per row.
type writeStmts struct {
	span *sql.Stmt
	// parts[i] upserts 1<<i parts; requests[i] inserts 1<<i request rows; values[i] upserts
	// 1<<i counted part_values rows and marks[i] 1<<i others (dialect.sizes bounds i). Any
	// number of rows is a sum of these sizes, so a handful of statements covers every batch.
	// bulk holds PostgreSQL's one statement of a whole batch.
	parts    []*sql.Stmt
	requests []*sql.Stmt
	values   []*sql.Stmt
	marks    []*sql.Stmt
	bulk     bulkStmts
}

const (
	partUpsertCols = 28
	requestCols    = 16
	valueCols      = 5
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
		st, err := s.wdb.PrepareContext(ctx, s.d.rebind(b.String()))
		if err != nil {
			return err
		}
		dst[i] = st
	}
	return nil
}

func (w *writeStmts) close() {
	all := []*sql.Stmt{w.span, w.bulk.batch}
	all = append(all, w.parts[:]...)
	all = append(all, w.requests[:]...)
	all = append(all, w.values[:]...)
	all = append(all, w.marks[:]...)
	for _, st := range all {
		if st != nil {
			st.Close()
		}
	}
}

// partUpsert is the end of the parts upsert. Every column is a commutative, idempotent
// function of the part's requests, so batches give the same row in whatever order they come:
// sums, minimum and maximum, and for user, role and key the value of the request that is
// latest (user, role) or earliest (key) by (time, request id, value).
const partUpsert = ` ON CONFLICT (session, part) DO UPDATE SET
	first_seen = CASE WHEN excluded.first_seen < parts.first_seen THEN excluded.first_seen ELSE parts.first_seen END,
	last_seen = CASE WHEN excluded.last_seen > parts.last_seen THEN excluded.last_seen ELSE parts.last_seen END,
	rows = parts.rows + excluded.rows,
	rows_malicious = parts.rows_malicious + excluded.rows_malicious,
	rows_bytes_in = parts.rows_bytes_in + excluded.rows_bytes_in,
	rows_bytes_out = parts.rows_bytes_out + excluded.rows_bytes_out,
	rows_linked = parts.rows_linked + excluded.rows_linked,
	rows_last = CASE WHEN excluded.rows_last > parts.rows_last THEN excluded.rows_last ELSE parts.rows_last END,
	"user" = CASE WHEN ` + userWins + ` THEN excluded."user" ELSE parts."user" END,
	user_at = CASE WHEN ` + userWins + ` THEN excluded.user_at ELSE parts.user_at END,
	user_rid = CASE WHEN ` + userWins + ` THEN excluded.user_rid ELSE parts.user_rid END,
	role = CASE WHEN ` + roleWins + ` THEN excluded.role ELSE parts.role END,
	role_at = CASE WHEN ` + roleWins + ` THEN excluded.role_at ELSE parts.role_at END,
	role_rid = CASE WHEN ` + roleWins + ` THEN excluded.role_rid ELSE parts.role_rid END,
	key_source = CASE WHEN ` + keyWins + ` THEN excluded.key_source ELSE parts.key_source END,
	key_name = CASE WHEN ` + keyWins + ` THEN excluded.key_name ELSE parts.key_name END,
	key_at = CASE WHEN ` + keyWins + ` THEN excluded.key_at ELSE parts.key_at END,
	key_rid = CASE WHEN ` + keyWins + ` THEN excluded.key_rid ELSE parts.key_rid END,
	risk_malicious = parts.risk_malicious + excluded.risk_malicious,
	risk_protection = parts.risk_protection + excluded.risk_protection,
	risk_denied = parts.risk_denied + excluded.risk_denied,
	risk_not_found = parts.risk_not_found + excluded.risk_not_found,
	risk_failed_claim = parts.risk_failed_claim + excluded.risk_failed_claim,
	risk_ref = excluded.risk_ref,
	risk = ` + riskScore + `,
	mixed = parts.mixed | excluded.mixed |
		CASE WHEN excluded."user" <> '' AND parts."user" <> '' AND excluded."user" <> parts."user" THEN 1 ELSE 0 END |
		CASE WHEN excluded.role <> '' AND parts.role <> '' AND excluded.role <> parts.role THEN 2 ELSE 0 END
RETURNING id, session, part, last_seen - first_seen`

const (
	userWins = `excluded."user" <> '' AND (parts."user" = '' OR
		(excluded.user_at, excluded.user_rid, excluded."user") > (parts.user_at, parts.user_rid, parts."user"))`
	roleWins = `excluded.role <> '' AND (parts.role = '' OR
		(excluded.role_at, excluded.role_rid, excluded.role) > (parts.role_at, parts.role_rid, parts.role))`
	keyWins = `excluded.rows > 0 AND (parts.rows = 0 OR
		(excluded.key_at, excluded.key_rid, excluded.key_source, excluded.key_name) <
		(parts.key_at, parts.key_rid, parts.key_source, parts.key_name))`
)

// Bits of parts.mixed (1 and 2 in partUpsert): the part's requests have more than one user,
// more than one role. While
// a bit is clear, the part's "user" (role) column is the one value its requests have, if any:
// the upsert sets the bit when the stored value and the batch's latest differ, and a batch
// sets it itself when its own requests differ, so the bit depends on the part's requests
// alone, whatever the order of the batches.
const (
	mixedUser = 1
	mixedRole = 2
)

// riskSumCols are the parts columns of the risk sums, in the order of risk.Sums.
var riskSumCols = [risk.N]string{"risk_malicious", "risk_protection", "risk_denied", "risk_not_found", "risk_failed_claim"}

// riskScore is the risk score of the merged sums at the merged latest request, as
// risk.Model.Score computes it: the sums scaled back from risk_ref by 2^-(Δt / half-life),
// rounded (half up on both engines: PostgreSQL's round of a float may round half to even), at
// most 100. {least} and {perMS} (ln 2 / half-life in ms) are filled in when the
// statement is prepared (riskSQL).
const riskScore = `CASE WHEN (parts.risk_malicious + excluded.risk_malicious + parts.risk_protection + excluded.risk_protection +
		parts.risk_denied + excluded.risk_denied + parts.risk_not_found + excluded.risk_not_found +
		parts.risk_failed_claim + excluded.risk_failed_claim) <= 0 THEN 0
	ELSE {least}(100, floor(0.5 + (parts.risk_malicious + excluded.risk_malicious + parts.risk_protection + excluded.risk_protection +
		parts.risk_denied + excluded.risk_denied + parts.risk_not_found + excluded.risk_not_found +
		parts.risk_failed_claim + excluded.risk_failed_claim) *
		exp(-(CASE WHEN excluded.last_seen > parts.last_seen THEN excluded.last_seen ELSE parts.last_seen END - excluded.risk_ref) * {perMS})))
	END`

// riskSQL fills in the dialect's minimum and the model's decay in q.
func (s *Store) riskSQL(q string) string {
	perMS := 0.0
	if h := s.risk.HalfLife(); h > 0 {
		perMS = math.Ln2 / float64(h.Milliseconds())
	}
	return strings.NewReplacer("{least}", s.d.least, "{perMS}", strconv.FormatFloat(perMS, 'g', -1, 64)).Replace(q)
}

// countConflict ends the upsert of counted part values: counts add up, the first time is the
// earliest.
const countConflict = ` ON CONFLICT (part_id, kind, value) DO UPDATE SET count = part_values.count + excluded.count,
	first = CASE WHEN excluded.first < part_values.first THEN excluded.first ELSE part_values.first END`

// markConflict ends the insert of uncounted part values: a mark (first 0) stays as it is, and
// a dated value keeps the earliest first time.
const markConflict = ` ON CONFLICT (part_id, kind, value) DO UPDATE SET first = excluded.first
	WHERE excluded.first < part_values.first`

func (s *Store) prepare(ctx context.Context) error {
	var err error
	if s.d.postgres {
		// One statement writes a whole batch (bulk.go).
		if err := s.prepareBulk(ctx); err != nil {
			s.stmt.close()
			return fmt.Errorf("store: prepare: %w", err)
		}
		return nil
	}
	prep := func(q string) *sql.Stmt {
		if err != nil {
			return nil
		}
		var st *sql.Stmt
		st, err = s.wdb.PrepareContext(ctx, s.d.rebind(q))
		return st
	}
	s.stmt.span = prep(`INSERT INTO meta (key, value) VALUES ('max_span', ?)
		ON CONFLICT (key) DO UPDATE SET value = CASE WHEN excluded.value > meta.value THEN excluded.value ELSE meta.value END`)
	s.stmt.parts = make([]*sql.Stmt, s.d.sizes.parts)
	s.stmt.requests = make([]*sql.Stmt, s.d.sizes.requests)
	s.stmt.values = make([]*sql.Stmt, s.d.sizes.values)
	s.stmt.marks = make([]*sql.Stmt, s.d.sizes.values)
	if err == nil {
		err = s.multiRow(ctx, s.stmt.parts[:], s.d.insert+` INTO parts (session, part, first_seen, last_seen, rows,
			rows_malicious, rows_bytes_in, rows_bytes_out, rows_last, "user", user_at, user_rid, role, role_at, role_rid,
			key_source, key_name, key_at, key_rid, rows_linked, risk_malicious, risk_protection, risk_denied,
			risk_not_found, risk_failed_claim, risk_ref, risk, mixed) VALUES `,
			"(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", s.riskSQL(partUpsert))
	}
	if err == nil {
		err = s.multiRow(ctx, s.stmt.requests[:], s.d.insert+` INTO requests (part_id, time, request_id, method, host,
			path, route, status, client_ip, "user", role, malicious, flows, attack_types, record, rkey) VALUES `,
			"(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", requestConflict)
	}
	if err == nil {
		err = s.multiRow(ctx, s.stmt.values[:], s.d.insert+` INTO part_values (part_id, kind, value, count, first) VALUES `,
			"(?,?,?,?,?)", countConflict)
	}
	if err == nil {
		err = s.multiRow(ctx, s.stmt.marks, s.d.insert+` INTO part_values (part_id, kind, value, first) VALUES `, "(?,?,?,?)",
			markConflict)
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

// pick is a value chosen among requests by (at, rid, value): the latest for user and role,
// the earliest for the key.
type pick struct {
	value, rid string
	at         int64
}

// after reports whether (at, rid, value) of p comes after q's, in the order SQL compares them.
func (p pick) after(q pick) bool {
	if p.at != q.at {
		return p.at > q.at
	}
	if p.rid != q.rid {
		return p.rid > q.rid
	}
	return p.value > q.value
}

// keyPick is a part's key as the earliest request by (time, request id, source, name) has it.
type keyPick struct {
	at           int64
	rid, src, nm string
}

func (k keyPick) before(o keyPick) bool {
	if k.at != o.at {
		return k.at < o.at
	}
	if k.rid != o.rid {
		return k.rid < o.rid
	}
	if k.src != o.src {
		return k.src < o.src
	}
	return k.nm < o.nm
}

// partAgg is what one batch adds to one part: the same functions the upsert applies, applied
// to the batch's requests first.
type partAgg struct {
	first, last       int64
	rows, malicious   int64
	bytesIn, bytesOut int64
	linked            int64
	user, role        pick
	key               keyPick
	id                int64
	// ord is the part's place in the batch's sorted parts, from 1 (PostgreSQL's rows name
	// their part by it).
	ord    int64
	values map[kindValue]valueAgg
	// risk is the batch's risk points per signal, scaled to ref (Unix ms; risk.Ref).
	risk risk.Sums
	ref  int64
	// mixed holds the bits of parts.mixed the batch's own requests set; firstUser and
	// firstRole are the first user and role met, to tell.
	mixed                int64
	firstUser, firstRole string
}

type kindValue struct {
	kind  int
	value string
}

// valueAgg is how many of a batch's requests of a part have a value, and the first's time.
type valueAgg struct{ count, first int64 }

func (a *partAgg) add(r *record.Request, t int64, m *risk.Model, scratch []partValue) []partValue {
	if p := m.Points(r); p != (risk.Points{}) {
		m.Add(&a.risk, time.UnixMilli(a.ref), time.UnixMilli(t), &p)
	}
	if a.rows == 0 {
		a.first, a.last = t, t
	}
	a.first, a.last = min(a.first, t), max(a.last, t)
	a.rows++
	if r.Malicious {
		a.malicious++
	}
	a.bytesIn += r.RequestBytes
	a.bytesOut += r.ResponseBytes
	a.linked += int64(max(0, r.Linked))
	if r.User != "" {
		if a.firstUser == "" {
			a.firstUser = r.User
		} else if r.User != a.firstUser {
			a.mixed |= mixedUser
		}
	}
	if r.Role != "" {
		if a.firstRole == "" {
			a.firstRole = r.Role
		} else if r.Role != a.firstRole {
			a.mixed |= mixedRole
		}
	}
	if u := (pick{r.User, r.RequestID, t}); r.User != "" && (a.user.value == "" || u.after(a.user)) {
		a.user = u
	}
	if o := (pick{r.Role, r.RequestID, t}); r.Role != "" && (a.role.value == "" || o.after(a.role)) {
		a.role = o
	}
	if k := (keyPick{t, r.RequestID, r.Key.Source, r.Key.Name}); a.rows == 1 || k.before(a.key) {
		a.key = k
	}
	scratch = recordValues(scratch[:0], 0, r)
	for _, v := range scratch {
		kv := kindValue{v.kind, v.value}
		if c, ok := a.values[kv]; ok {
			a.values[kv] = valueAgg{c.count + 1, min(c.first, t)}
		} else {
			a.values[kv] = valueAgg{1, t}
		}
	}
	return scratch
}

// encodedRequest is a request record ready for its row.
type encodedRequest struct {
	r    *record.Request
	t    int64
	json []byte
	// key identifies the record by its content: the first 16 bytes of the SHA-256 of json
	// (see requestKey).
	key [keyLen]byte
}

// keyLen is the length of a request row's content key (rkey).
const keyLen = 16

// requestKey is the content key of a request record encoded as json: the first 16 bytes of
// its SHA-256. The JSON is the whole record in one canonical form (sinks.AppendRecord, the
// form the spool keeps and the row stores), so a record written again — retried, replayed
// from the spool or after a restart, in another batch — has the same key, and two records
// that differ in any field (a request id shared by redirect hops, a time, a status) have
// different ones.
func requestKey(json []byte) [keyLen]byte {
	sum := sha256.Sum256(json)
	return [keyLen]byte(sum[:keyLen])
}

// Write stores a batch in one transaction. When it returns nil every request record of the
// batch is committed and survives a crash of the process. Session records are accepted and
// left out: a part is built from its request records alone. A record that cannot be encoded is
// left out and reported as a permanent partial failure; anything else fails the whole batch,
// which the pipeline may retry. Each request is stored once by its content (requestKey): a
// record the store already holds — a batch whose commit succeeded but was not acknowledged,
// replayed from the spool, after a restart, or in other batches — is left out, and the parts
// count only the requests actually stored.
func (s *Store) Write(ctx context.Context, batch []record.Record) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	select {
	case <-s.closed:
		return sinks.ErrClosed
	default:
	}
	reqs := make([]encodedRequest, 0, len(batch))
	var bad int
	var badErr error
	for _, rec := range batch {
		switch r := rec.(type) {
		case *record.Request:
			if err := checkRequest(r); err != nil {
				bad, badErr = bad+1, err
				continue
			}
			reqs = append(reqs, encodedRequest{r: r, t: ms(r.Time)})
		case *record.Session:
			if r == nil || r.Session == "" || r.Part == "" {
				bad, badErr = bad+1, errors.New("session record without session or part")
			}
		default:
			bad, badErr = bad+1, fmt.Errorf("unknown record type %T", rec)
		}
	}
	if len(reqs) > 0 {
		if err := s.commit(ctx, reqs); err != nil {
			return err
		}
	}
	if bad > 0 {
		return &sinks.PartialError{Failed: bad, Err: sinks.Permanent(badErr)}
	}
	return nil
}

// aggregate sums what reqs add to each part; order lists the parts as first met.
func aggregate(reqs []encodedRequest, m *risk.Model) (aggs map[partKey]*partAgg, order []partKey) {
	aggs = map[partKey]*partAgg{}
	var scratch []partValue
	for i := range reqs {
		r := reqs[i].r
		k := partKey{r.Session, r.Part}
		a := aggs[k]
		if a == nil {
			a = &partAgg{values: map[kindValue]valueAgg{}, ref: risk.Ref(r.Part).UnixMilli()}
			aggs[k] = a
			order = append(order, k)
		}
		scratch = a.add(r, reqs[i].t, m, scratch)
	}
	return aggs, order
}

// checkRequest reports a request record the store cannot keep.
func checkRequest(r *record.Request) error {
	if r == nil || r.Session == "" || r.Part == "" {
		return errors.New("request record without session or part")
	}
	// The only value of a request record JSON cannot encode is a float that is not a number;
	// checking it here lets the encoding run beside the first statements.
	if math.IsNaN(r.DurationMS) || math.IsInf(r.DurationMS, 0) {
		return errors.New("encode request record: duration_ms is not a finite number")
	}
	return nil
}

// errStored ends a try of a batch that met request rows already stored: the batch is written
// again without them.
var errStored = errors.New("store: the batch holds requests already stored")

// maxTries bounds the tries of one batch. A second try finds every stored request; a third
// covers another writer storing some of them meanwhile.
const maxTries = 3

// commit writes the request records reqs, each once: when a try finds some of them stored (or
// twice in the batch), it is rolled back and the batch written again without them, so that the
// parts count only the request rows the store keeps.
func (s *Store) commit(ctx context.Context, reqs []encodedRequest) error {
	for try := 1; ; try++ {
		aggs, order := aggregate(reqs, s.risk)
		err := s.commitOnce(ctx, reqs, aggs, order)
		if !errors.Is(err, errStored) {
			return err
		}
		if try == maxTries {
			return fmt.Errorf("store: %d tries of a batch met request rows already stored", try)
		}
		if reqs, err = s.unstored(ctx, reqs); err != nil {
			return err
		}
		if len(reqs) == 0 {
			s.log.Info("batch already stored, skipped")
			return nil
		}
	}
}

// unstored returns the requests of reqs (encoded) that the store does not hold, each once.
func (s *Store) unstored(ctx context.Context, reqs []encodedRequest) ([]encodedRequest, error) {
	st, err := s.wdb.PrepareContext(ctx, s.d.rebind(`SELECT 1 FROM requests r JOIN parts p ON p.id = r.part_id
		WHERE p.session = ? AND p.part = ? AND r.time = ? AND r.rkey = ?`))
	if err != nil {
		return nil, fmt.Errorf("store: find stored requests: %w", err)
	}
	defer st.Close()
	seen := make(map[[keyLen]byte]struct{}, len(reqs))
	var out []encodedRequest
	for _, e := range reqs {
		if _, dup := seen[e.key]; dup {
			continue
		}
		seen[e.key] = struct{}{}
		var one int
		err := st.QueryRowContext(ctx, s.d.text(e.r.Session), s.d.text(e.r.Part), e.t, e.key[:]).Scan(&one)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			out = append(out, e)
		case err != nil:
			return nil, fmt.Errorf("store: find stored requests: %w", err)
		}
	}
	return out, nil
}

// commitOnce writes one batch in one transaction: the parts it touches, then the request rows
// and part values, then the longest part span. It returns errStored, having written nothing,
// when a request row of the batch is already stored.
func (s *Store) commitOnce(ctx context.Context, reqs []encodedRequest, aggs map[partKey]*partAgg, order []partKey) error {
	// The request records are encoded on another core while this one updates the parts; the
	// request rows need them only after that.
	wait := encodeRequests(reqs)
	defer wait()
	// Parts are upserted in key order, so that writers that share a database lock part rows in
	// one order and never wait on each other in a cycle.
	sortParts(order)
	for i, k := range order {
		aggs[k].ord = int64(i + 1)
	}
	if s.d.postgres {
		if err := s.ensurePartitions(ctx, reqs); err != nil {
			return err
		}
		counts, marks, keys := s.batchValues(aggs, order)
		if err := wait(); err != nil {
			return err
		}
		span, err := s.commitPG(ctx, reqs, aggs, order, counts, marks)
		if err != nil {
			return err
		}
		s.afterWrite(keys, span)
		return nil
	}
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	defer tx.Rollback()
	span, err := s.upsertParts(ctx, tx, aggs, order)
	if err != nil {
		return err
	}
	if err := wait(); err != nil {
		return err
	}
	if err := s.insertRequests(ctx, tx, reqs, aggs); err != nil {
		return err
	}
	newKeys, err := s.upsertValues(ctx, tx, aggs, order)
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
	s.afterWrite(newKeys, span)
	return nil
}

// afterWrite notes a committed batch: its part values and the longest part span. Only what is
// committed may be remembered: a rolled back batch comes again.
func (s *Store) afterWrite(keys []cachedValue, span int64) {
	if s.afterCommit != nil {
		s.afterCommit()
	}
	s.committed()
	s.values.add(keys)
	if span > s.maxSpanW {
		s.maxSpanW = span
	}
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
			if reqs[i].json != nil {
				continue // encoded by an earlier try of the batch
			}
			start := len(buf)
			b, err := sinks.AppendRecord(buf, reqs[i].r)
			if err != nil {
				encoded <- err
				return
			}
			buf = b
			reqs[i].json = buf[start:len(buf):len(buf)]
			reqs[i].key = requestKey(reqs[i].json)
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

// upsertParts adds what the batch brings to every part it touches, in order. It fills each
// partAgg's id and returns the longest part span seen, at least the one known before.
func (s *Store) upsertParts(ctx context.Context, tx *sql.Tx, aggs map[partKey]*partAgg, order []partKey) (int64, error) {
	span := s.maxSpanW
	args := make([]any, 0, (1<<(len(s.stmt.parts)-1))*partUpsertCols)
	for start := 0; start < len(order); {
		n := chunkLen(len(order)-start, len(s.stmt.parts))
		args = args[:0]
		for _, k := range order[start : start+n] {
			a := aggs[k]
			args = append(args, s.d.text(k.session), s.d.text(k.part), a.first, a.last, a.rows, a.malicious, a.bytesIn,
				a.bytesOut, a.last, s.d.text(a.user.value), a.user.at, s.d.text(a.user.rid), s.d.text(a.role.value),
				a.role.at, s.d.text(a.role.rid), s.d.text(a.key.src), s.d.text(a.key.nm), a.key.at, s.d.text(a.key.rid),
				a.linked, a.risk[0], a.risk[1], a.risk[2], a.risk[3], a.risk[4], a.ref, s.aggScore(a), a.mixed)
		}
		start += n
		sp, err := s.upsertChunk(ctx, tx, s.stmt.parts[bits.TrailingZeros(uint(n))], args, aggs)
		if err != nil {
			return 0, err
		}
		span = max(span, sp)
	}
	return span, nil
}

// aggScore is the risk score of what a batch brings to a part, at the batch's latest request
// of it: the score of a part the batch inserts.
func (s *Store) aggScore(a *partAgg) int64 {
	score, _ := s.risk.Score(&a.risk, time.UnixMilli(a.ref), time.UnixMilli(a.last))
	return int64(score)
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
			return 0, fmt.Errorf("store: update parts: a part returned that is not in the batch")
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

// requestConflict ends the insert of request rows: a row already stored (the same part, time
// and content key) is left as it is, and the writer sees fewer rows inserted than it sent.
const requestConflict = ` ON CONFLICT (part_id, time, rkey) DO NOTHING`

// insertRequests writes the request rows. It returns errStored when fewer rows went in than
// reqs holds: some were already stored, or came twice in the batch.
func (s *Store) insertRequests(ctx context.Context, tx *sql.Tx, reqs []encodedRequest, aggs map[partKey]*partAgg) error {
	n, err := s.chunkRequests(ctx, tx, reqs, aggs)
	if err != nil {
		return err
	}
	if n != int64(len(reqs)) {
		return errStored
	}
	return nil
}

// chunkRequests writes the request rows with multi-row statements and returns how many it
// inserted.
func (s *Store) chunkRequests(ctx context.Context, tx *sql.Tx, reqs []encodedRequest, aggs map[partKey]*partAgg) (int64, error) {
	var inserted int64
	args := make([]any, 0, (1<<(len(s.stmt.requests)-1))*requestCols)
	for start := 0; start < len(reqs); {
		n := chunkLen(len(reqs)-start, len(s.stmt.requests))
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
			d := s.d
			args = append(args, id, e.t, d.text(r.RequestID), d.text(r.Method), d.text(r.Host), d.text(r.Path),
				d.text(r.Route), r.Status, d.text(r.ClientIP), d.text(r.User), d.text(r.Role), r.Malicious,
				d.text(strings.Join(r.Flows, ",")), d.text(types), e.json, e.key[:])
		}
		st := s.stmt.requests[bits.TrailingZeros(uint(n))]
		res, err := tx.StmtContext(ctx, st).ExecContext(ctx, args...)
		if err != nil {
			return 0, fmt.Errorf("store: insert requests: %w", err)
		}
		k, err := res.RowsAffected()
		if err != nil {
			return 0, fmt.Errorf("store: insert requests: %w", err)
		}
		inserted += k
	}
	return inserted, nil
}

// valueRow is one part_values row a batch writes.
type valueRow struct {
	part, ord    int64
	kind         int
	value        string
	count, first int64
}

// batchValues lists the part_values rows of the batch: counted ones to add to, and the others
// (marks, and the first times of dated kinds) the writer does not know to be stored as they
// are, with their cache keys and first times. Parts come in order and a part's values sorted,
// so that writers sharing a database take row locks in one order.
func (s *Store) batchValues(aggs map[partKey]*partAgg, order []partKey) (counts, marks []valueRow, keys []cachedValue) {
	for _, k := range order {
		a := aggs[k]
		for _, kv := range sortedValues(a.values) {
			v := a.values[kv]
			if counted(kv.kind) {
				counts = append(counts, valueRow{part: a.id, ord: a.ord, kind: kv.kind, value: kv.value, count: v.count, first: v.first})
				continue
			}
			first := int64(0)
			if dated(kv.kind) {
				first = v.first
			}
			key := s.values.key(k.session, k.part, kv.kind, kv.value)
			// A stored first time only ever moves earlier, so one at or before this batch's
			// needs no statement.
			if stored, ok := s.values.first(key); !ok || stored > first {
				marks = append(marks, valueRow{part: a.id, ord: a.ord, kind: kv.kind, value: kv.value, first: first})
				keys = append(keys, cachedValue{key, first})
			}
		}
	}
	return counts, marks, keys
}

// upsertValues writes the batch's part values and returns the cache entries of the marks and
// dated values, to remember once the batch is committed.
func (s *Store) upsertValues(ctx context.Context, tx *sql.Tx, aggs map[partKey]*partAgg, order []partKey) ([]cachedValue, error) {
	counts, marks, keys := s.batchValues(aggs, order)
	if err := s.execValues(ctx, tx, s.stmt.values, counts, true); err != nil {
		return nil, err
	}
	return keys, s.execValues(ctx, tx, s.stmt.marks, marks, false)
}

// execValues writes rows with the multi-row statements sts, with their counts and first
// times or with their first times only.
func (s *Store) execValues(ctx context.Context, tx *sql.Tx, sts []*sql.Stmt, rows []valueRow, withCounts bool) error {
	cols := 4
	if withCounts {
		cols = valueCols
	}
	args := make([]any, 0, (1<<(len(sts)-1))*cols)
	for start := 0; start < len(rows); {
		n := chunkLen(len(rows)-start, len(sts))
		args = args[:0]
		for _, v := range rows[start : start+n] {
			args = append(args, v.part, v.kind, s.d.text(v.value))
			if withCounts {
				args = append(args, v.count)
			}
			args = append(args, v.first)
		}
		start += n
		if _, err := tx.StmtContext(ctx, sts[bits.TrailingZeros(uint(n))]).ExecContext(ctx, args...); err != nil {
			return fmt.Errorf("store: update part values: %w", err)
		}
	}
	return nil
}

// requestJSONSize is about the size of a request record's JSON, to size the buffer a batch
// is encoded into; a larger record only makes the buffer grow.
const requestJSONSize = 768

func ms(t record.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// sortParts puts part keys in byte order.
func sortParts(order []partKey) {
	slices.SortFunc(order, func(a, b partKey) int {
		return cmp.Or(strings.Compare(a.session, b.session), strings.Compare(a.part, b.part))
	})
}

// sortedValues returns the keys of m by kind, then value.
func sortedValues(m map[kindValue]valueAgg) []kindValue {
	out := make([]kindValue, 0, len(m))
	for kv := range m {
		out = append(out, kv)
	}
	slices.SortFunc(out, func(a, b kindValue) int {
		return cmp.Or(cmp.Compare(a.kind, b.kind), strings.Compare(a.value, b.value))
	})
	return out
}
