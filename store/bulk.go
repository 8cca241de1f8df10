package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/apisessions/apisessions/sessions/risk"
)

// PostgreSQL takes a batch in one statement: every column as an array, unnested into rows.
// The parts upsert returns each part's id, which the request rows and part values of the
// batch join by the part's place in the batch; the longest part span grows in meta only when
// the batch makes it longer (an UPDATE that neither locks nor writes the row otherwise). One
// statement is one round trip and its own transaction: it commits, with every row, or fails
// with none. Request rows are inserted without ON CONFLICT, so a row already stored (the same
// part, time and content key) fails the statement with a unique violation, and the writer
// writes the batch again without it (see commit).
//
// Writers that share the database lock part rows in one order (the batch's parts come
// sorted, and the upsert takes them in that order); a part's values are written only by the
// writer that holds its part row, so they need no order of their own.
const pgBatch = `WITH pin AS (
	SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[],
		$8::bigint[], $9::bytea[], $10::bigint[], $11::bytea[], $12::bytea[], $13::bigint[], $14::bytea[], $15::bytea[],
		$16::bytea[], $17::bigint[], $18::bytea[], $19::bigint[], $45::float8[], $46::float8[], $47::float8[],
		$48::float8[], $49::float8[], $50::bigint[], $51::bigint[], $52::integer[]) WITH ORDINALITY
		AS u(session, part, first_seen, last_seen, rows, rows_malicious, rows_bytes_in, rows_bytes_out, "user", user_at,
		user_rid, role, role_at, role_rid, key_source, key_name, key_at, key_rid, rows_linked, risk_malicious,
		risk_protection, risk_denied, risk_not_found, risk_failed_claim, risk_ref, risk, mixed, ord)
), p AS (
	INSERT INTO parts AS parts (session, part, first_seen, last_seen, rows, rows_malicious, rows_bytes_in, rows_bytes_out,
		rows_last, "user", user_at, user_rid, role, role_at, role_rid, key_source, key_name, key_at, key_rid, rows_linked,
		risk_malicious, risk_protection, risk_denied, risk_not_found, risk_failed_claim, risk_ref, risk, mixed)
	SELECT session, part, first_seen, last_seen, rows, rows_malicious, rows_bytes_in, rows_bytes_out, last_seen, "user",
		user_at, user_rid, role, role_at, role_rid, key_source, key_name, key_at, key_rid, rows_linked, risk_malicious,
		risk_protection, risk_denied, risk_not_found, risk_failed_claim, risk_ref, risk, mixed FROM pin ORDER BY ord
	` + partUpsert + ` AS span
), ids AS (
	SELECT pin.ord, p.id, p.span FROM p JOIN pin ON pin.session = p.session AND pin.part = p.part
), r AS (
	INSERT INTO requests (part_id, time, request_id, method, host, path, route, status, client_ip, "user", role,
		malicious, flows, attack_types, record, rkey)
	SELECT ids.id, u.time, u.request_id, u.method, u.host, u.path, u.route, u.status, u.client_ip, u."user", u.role,
		u.malicious, u.flows, u.attack_types, u.record, u.rkey
	FROM unnest($20::bigint[], $21::bigint[], $22::bytea[], $23::bytea[], $24::bytea[], $25::bytea[], $26::bytea[],
		$27::integer[], $28::bytea[], $29::bytea[], $30::bytea[], $31::boolean[], $32::bytea[], $33::bytea[], $34::bytea[],
		$35::bytea[]) AS u(pord, time, request_id, method, host, path, route, status, client_ip, "user", role, malicious,
		flows, attack_types, record, rkey)
	JOIN ids ON ids.ord = u.pord
), c AS (
	INSERT INTO part_values AS part_values (part_id, kind, value, count, first)
	SELECT ids.id, u.kind, u.value, u.count, u.first
	FROM unnest($36::bigint[], $37::integer[], $38::bytea[], $39::bigint[], $40::bigint[]) AS u(pord, kind, value, count, first)
	JOIN ids ON ids.ord = u.pord
	` + countConflict + `
), m AS (
	INSERT INTO part_values AS part_values (part_id, kind, value, first)
	SELECT ids.id, u.kind, u.value, u.first
	FROM unnest($41::bigint[], $42::integer[], $43::bytea[], $44::bigint[]) AS u(pord, kind, value, first)
	JOIN ids ON ids.ord = u.pord
	` + markConflict + `
), sp AS (
	UPDATE meta SET value = x.span FROM (SELECT max(span) AS span FROM ids) x
	WHERE meta.key = 'max_span' AND meta.value < x.span
)
SELECT coalesce(max(span), 0) FROM ids`

// bulkStmts are the statements of the array path (PostgreSQL only).
type bulkStmts struct{ batch *sql.Stmt }

func (s *Store) prepareBulk(ctx context.Context) error {
	var err error
	s.stmt.bulk.batch, err = s.wdb.PrepareContext(ctx, s.riskSQL(pgBatch))
	return err
}

// commitPG writes a batch with one statement (pgBatch) and returns the longest span of its
// parts. A request row already stored fails it with errStored, having written nothing.
func (s *Store) commitPG(ctx context.Context, reqs []encodedRequest, aggs map[partKey]*partAgg, order []partKey,
	counts, marks []valueRow) (int64, error) {
	args := make([]any, 0, 52)
	// Parts, in order: their place in it is their ordinal (from 1).
	np := len(order)
	sess, names := make([][]byte, np), make([][]byte, np)
	var nums [10][]int64
	for i := range nums {
		nums[i] = make([]int64, np)
	}
	var text [7][][]byte
	for i := range text {
		text[i] = make([][]byte, np)
	}
	for i, k := range order {
		a := aggs[k]
		a.ord = int64(i + 1)
		sess[i], names[i] = []byte(k.session), []byte(k.part)
		for j, v := range [...]int64{a.first, a.last, a.rows, a.malicious, a.bytesIn, a.bytesOut, a.user.at, a.role.at, a.key.at, a.linked} {
			nums[j][i] = v
		}
		for j, v := range [...]string{a.user.value, a.user.rid, a.role.value, a.role.rid, a.key.src, a.key.nm, a.key.rid} {
			text[j][i] = []byte(v)
		}
	}
	args = append(args, sess, names, nums[0], nums[1], nums[2], nums[3], nums[4], nums[5], text[0], nums[6], text[1],
		text[2], nums[7], text[3], text[4], text[5], nums[8], text[6], nums[9])
	args = append(args, requestArgs(reqs, aggs)...)
	args = append(args, valueArgs(counts, true)...)
	args = append(args, valueArgs(marks, false)...)
	var sums [risk.N][]float64
	for j := range sums {
		sums[j] = make([]float64, np)
	}
	refs, scores := make([]int64, np), make([]int64, np)
	mixed := make([]int32, np)
	for i, k := range order {
		a := aggs[k]
		for j := range sums {
			sums[j][i] = a.risk[j]
		}
		refs[i], scores[i], mixed[i] = a.ref, s.aggScore(a), int32(a.mixed)
	}
	for j := range sums {
		args = append(args, sums[j])
	}
	args = append(args, refs, scores, mixed)
	var span int64
	if err := s.stmt.bulk.batch.QueryRowContext(ctx, args...).Scan(&span); err != nil {
		if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) && pgErr.Code == pgUniqueViolation {
			return 0, errStored
		}
		return 0, fmt.Errorf("store: write batch: %w", err)
	}
	return span, nil
}

// pgUniqueViolation is PostgreSQL's SQLSTATE for a unique index that refused a row.
const pgUniqueViolation = "23505"

// requestArgs are the columns of the request rows, each an array; rows name their part by its
// ordinal in the batch.
func requestArgs(reqs []encodedRequest, aggs map[partKey]*partAgg) []any {
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
		parts[i], times[i], statuses[i], malicious[i] = aggs[partKey{r.Session, r.Part}].ord, e.t, int32(r.Status), r.Malicious
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
	return []any{parts, times, text[0], text[1], text[2], text[3], text[4], statuses, text[5], text[6], text[7], malicious,
		text[8], text[9], text[10], text[11]}
}

// valueArgs are the columns of part_values rows, each an array, with their counts or without;
// rows name their part by its ordinal in the batch.
func valueArgs(rows []valueRow, withCounts bool) []any {
	parts, kinds, values := make([]int64, len(rows)), make([]int32, len(rows)), make([][]byte, len(rows))
	counts, firsts := make([]int64, len(rows)), make([]int64, len(rows))
	for i, v := range rows {
		parts[i], kinds[i], values[i], counts[i], firsts[i] = v.ord, int32(v.kind), []byte(v.value), v.count, v.first
	}
	if withCounts {
		return []any{parts, kinds, values, counts, firsts}
	}
	return []any{parts, kinds, values, firsts}
}
