package store

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/risk"
)

// Limits of the query API.
const (
	DefaultLimit = 50
	MaxLimit     = 1000
	// DefaultPartLimit and MaxPartLimit bound the requests one part answer holds.
	DefaultPartLimit = 1000
	MaxPartLimit     = 10000
	// maxStatValues bounds each statistic; the rest is summed into one "other" entry.
	maxStatValues = 100
	// probeParts is how many matching parts the list query collects through the filter
	// indexes before it decides the filter is broad and walks parts newest first instead.
	probeParts = 2000
)

// Status selects responses by exact code or by class.
type Status struct {
	// Code is the exact status (0 = the response never arrived) when Class is 0 and Set.
	Code int
	// Class is 1..5 for 1xx..5xx; 0 selects Code.
	Class int
	// Set is true when the filter applies.
	Set bool
}

// Filter selects requests; a part matches when at least one of its requests matches every
// condition set. Zero fields do not filter.
type Filter struct {
	// From and To bound the request time, both inclusive.
	From, To  time.Time
	User      string
	Role      string
	Flow      string
	IP        string
	RequestID string
	Method    string
	Status    Status
	Host      string
	// Path selects paths that begin with it; Route selects one route exactly.
	Path      string
	Route     string
	Malicious bool
	// UserAgent, JA3 and JA4 select requests whose record has exactly that value.
	UserAgent string
	JA3       string
	JA4       string
	// MinRisk keeps parts whose risk score is at least this (a condition on the part, not its
	// requests; lists only).
	MinRisk int
}

// requestConds reports whether any condition reads request rows.
func (f *Filter) requestConds() bool {
	return !f.From.IsZero() || !f.To.IsZero() || f.User != "" || f.Role != "" || f.Flow != "" ||
		f.IP != "" || f.RequestID != "" || f.Method != "" || f.Status.Set || f.Host != "" ||
		f.Path != "" || f.Route != "" || f.Malicious || f.UserAgent != "" || f.JA3 != "" || f.JA4 != ""
}

// recordFields are the filters answered from the request record itself, which has no column
// of its own for them: the record's field name and the value.
func (f *Filter) recordFields() [][2]string {
	var out [][2]string
	for _, c := range [...][2]string{{"user_agent", f.UserAgent}, {"ja3", f.JA3}, {"ja4", f.JA4}} {
		if c[1] != "" {
			out = append(out, c)
		}
	}
	return out
}

// recordField is the condition that the request record r has the top-level string field name
// equal to v. A record is stored as JSON in one canonical form (record.Request.AppendJSON, the
// bytes of json.Marshal), so the member is found as bytes: its name and encoded value, before
// the key member. Scalars alone come before key, and a quote inside a string is escaped, so
// the member found there is the record's own, not a parameter or header of the same name.
func recordField(d *dialect, name, v string) (cond string, args []any) {
	val, _ := json.Marshal(v)
	member := append([]byte(`,"`+name+`":`), val...)
	return d.instr("r.record", "?") + " BETWEEN 1 AND " + d.instr("r.record", "?"), []any{member, []byte(`,"key":{`)}
}

// where appends the conditions on requests (alias r) to w. With noIndex the columns are
// written +r.col, which keeps SQLite on the part's own index (part_id, time) instead of the
// request id index that would read other parts' rows.
func (f *Filter) where(w *sqlWhere, d *dialect, noIndex bool) {
	c := func(col string) string {
		if noIndex {
			return d.noIndex + "r." + col
		}
		return "r." + col
	}
	if !f.From.IsZero() {
		w.add("r.time >= ?", f.From.UnixMilli())
	}
	if !f.To.IsZero() {
		w.add("r.time <= ?", f.To.UnixMilli())
	}
	// The literal "<> ''" lets SQLite use the partial indexes, which leave out empty values.
	if f.User != "" {
		w.add(c(`"user"`)+" <> '' AND "+c(`"user"`)+" = ?", f.User)
	}
	if f.Role != "" {
		w.add(c("role")+" = ?", f.Role)
	}
	if f.RequestID != "" {
		w.add(c("request_id")+" <> '' AND "+c("request_id")+" = ?", f.RequestID)
	}
	if f.IP != "" {
		w.add(c("client_ip")+" = ?", f.IP)
	}
	if f.Method != "" {
		w.add(c("method")+" = ?", f.Method)
	}
	if f.Status.Set {
		if f.Status.Class > 0 {
			w.add(c("status")+" >= ? AND "+c("status")+" < ?", f.Status.Class*100, f.Status.Class*100+100)
		} else {
			w.add(c("status")+" = ?", f.Status.Code)
		}
	}
	if f.Host != "" {
		w.add(c("host")+" = ?", f.Host)
	}
	if f.Path != "" {
		if hi, ok := prefixEnd(f.Path); ok {
			w.add(c("path")+" >= ? AND "+c("path")+" < ?", f.Path, hi)
		} else {
			w.add(c("path")+" >= ?", f.Path)
		}
	}
	if f.Route != "" {
		w.add(c("route")+" = ?", f.Route)
	}
	if f.Malicious {
		w.add(c("malicious"))
	}
	if f.Flow != "" {
		// flows holds the request's flows joined by commas (flow names have none).
		w.add(d.flowCond, ","+f.Flow+",")
	}
	for _, c := range f.recordFields() {
		cond, args := recordField(d, c[0], c[1])
		w.add(cond, args...)
	}
}

// prefixEnd returns the smallest string greater than every string beginning with p (byte
// order, as SQLite compares TEXT), so a prefix becomes an index range.
func prefixEnd(p string) (string, bool) {
	b := []byte(p)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1]), true
		}
	}
	return "", false
}

type sqlWhere struct {
	conds []string
	args  []any
}

func (w *sqlWhere) add(cond string, args ...any) {
	w.conds = append(w.conds, cond)
	w.args = append(w.args, args...)
}

// and adds o's conditions to w.
func (w *sqlWhere) and(o *sqlWhere) {
	w.conds = append(w.conds, o.conds...)
	w.args = append(w.args, o.args...)
}

func (w *sqlWhere) String() string {
	if len(w.conds) == 0 {
		return "1=1"
	}
	return strings.Join(w.conds, " AND ")
}

// ListQuery asks for one page of session parts.
type ListQuery struct {
	Filter Filter
	// Limit is the page size: DefaultLimit when 0, at most MaxLimit.
	Limit int
	// Cursor is the Next of the previous page, "" for the first.
	Cursor string
}

// Page is one page of session parts, newest last_seen first.
type Page struct {
	Sessions []*record.Session
	// Next is the cursor of the following page, "" on the last page.
	Next string
}

// partCols are the columns scanPart reads, the last whether a later part of the session exists.
const partCols = `p.id, p.session, p.part, p.first_seen, p.last_seen, p.rows, p.rows_malicious,
	p.rows_bytes_in, p.rows_bytes_out, p."user", p.role, p.key_source, p.key_name, p.rows_linked,
	p.risk_malicious, p.risk_protection, p.risk_denied, p.risk_not_found, p.risk_failed_claim, p.risk_ref,
	EXISTS (SELECT 1 FROM parts q WHERE q.session = p.session AND q.last_seen > p.last_seen)`

const partOrder = ` ORDER BY p.last_seen DESC, p.session DESC, p.part DESC`

// List returns the session parts that have a request matching q.Filter, newest last_seen
// first (then session and part, descending), from q.Cursor on: PlanList, then Run.
func (s *Store) List(ctx context.Context, q ListQuery) (*Page, error) {
	p, err := s.PlanList(ctx, q)
	if err != nil {
		return nil, err
	}
	return p.Run(ctx)
}

// ListPlan is a list query whose filter indexes have been probed; Run reads its page.
type ListPlan struct {
	s *Store
	// lo and hi bound the parts of the list by their keys (last_seen, session, part): lo <= key
	// < hi, nil for no bound. Kept as one bound each, so that SQLite always walks parts_recent
	// between them rather than along another bound, testing these for each entry.
	lo, hi *listCursor
	// base holds the other conditions on a part's own row; conds those on its values and
	// requests.
	base, conds sqlWhere
	// cand lists the candidate parts when a probe listed them completely (nil otherwise).
	cand []int64
	// pin, when no probe listed the candidates, walks only the parts with a user or role.
	pin   *pinned
	limit int
	// empty is true when the probes showed that no part matches.
	empty bool
	scans bool
}

// PlanList checks q and probes the filter indexes for it (each probe reads at most probeParts+1
// index entries), so that the caller learns whether the query scans before it runs.
func (s *Store) PlanList(ctx context.Context, q ListQuery) (*ListPlan, error) {
	if err := s.Ready(); err != nil {
		return nil, err
	}
	p := &ListPlan{s: s, limit: clampLimit(q.Limit, DefaultLimit, MaxLimit)}
	f := &q.Filter
	if !f.From.IsZero() {
		// Below every part that ends at from or later.
		p.lo = &listCursor{Last: f.From.UnixMilli()}
	}
	if !f.To.IsZero() {
		// No part spans longer than max_span, so a part that ends later than to+max_span began
		// after to: the bound keeps the walk of parts_recent inside the interval.
		var span int64
		err := s.queryRow(ctx, "SELECT coalesce((SELECT value FROM meta WHERE key = 'max_span'), 0)").Scan(&span)
		if err != nil {
			return nil, fmt.Errorf("store: list: %w", err)
		}
		p.hi = &listCursor{Last: f.To.UnixMilli() + span + 1}
		p.base.add("p.first_seen <= ?", f.To.UnixMilli())
	}
	if q.Cursor != "" {
		c, err := decodeListCursor(q.Cursor)
		if err != nil {
			return nil, err
		}
		if p.hi == nil || c.before(p.hi) {
			p.hi = &c
		}
	}
	if f.Malicious && s.d.postgres {
		// A part has a malicious request exactly when it counts one: PostgreSQL walks the
		// partial index of such parts (parts_malicious) instead of testing every part.
		p.base.add("p.rows_malicious > 0")
	}
	if f.MinRisk > 0 {
		// The literal risk > 0 lets both engines walk the index of risky parts (parts_risky).
		p.base.add("p.risk > 0 AND p.risk >= ?", f.MinRisk)
	}
	if f.requestConds() {
		c, checks, pin, err := s.listConds(ctx, f, &p.conds)
		if err != nil {
			return nil, err
		}
		p.pin = pin
		p.empty = c.none()
		p.scans = !c.complete || checks && len(c.ids) > checkParts
		if c.complete {
			p.cand = c.ids
		}
	}
	return p, nil
}

// where is the plan's conditions on a part's own row, with its key in [lo, hi).
func (p *ListPlan) where(lo, hi *listCursor) *sqlWhere {
	w := &sqlWhere{}
	if lo != nil {
		w.add("(p.last_seen, p.session, p.part) >= (?, ?, ?)", lo.Last, lo.Session, lo.Part)
	}
	if hi != nil {
		w.add("(p.last_seen, p.session, p.part) < (?, ?, ?)", hi.Last, hi.Session, hi.Part)
	}
	w.and(&p.base)
	return w
}

// Scans reports whether Run may test many parts one by one: when the filters' values are too
// common for the indexes to list the candidates, it tests parts newest first until its page is
// full, so that how long it takes depends on how rare the combination is and nothing but ctx
// bounds it; and more than checkParts candidates may each need a check of their request rows.
// Callers give a scan a deadline and limit how many run at once. A list without request
// filters, or with one selective value (a user, an IP, a request id, a value few parts have),
// does not scan.
func (p *ListPlan) Scans() bool { return p.scans }

// Run reads the page. Every statement it runs is bounded, by the page size, candidateChunk
// candidates or scanMost parts; ctx is checked between them, and Run returns its error once it
// has ended.
func (p *ListPlan) Run(ctx context.Context) (*Page, error) {
	if err := p.s.Ready(); err != nil {
		return nil, err
	}
	if p.empty {
		return &Page{Sessions: []*record.Session{}}, nil
	}
	var parts []*partRow
	var err error
	switch {
	case p.cand != nil:
		parts, err = p.candidateParts(ctx)
	case p.pin != nil:
		parts, err = p.pinnedParts(ctx)
	case p.scans:
		parts, err = p.scanParts(ctx)
	default:
		// No request filter: the newest parts.
		parts, err = p.s.listParts(ctx, p.where(p.lo, p.hi), p.limit+1)
	}
	if err == nil {
		err = p.s.fillParts(ctx, parts[:min(len(parts), p.limit)])
	}
	if err != nil {
		return nil, fmt.Errorf("store: list: %w", err)
	}
	page := &Page{Sessions: make([]*record.Session, 0, min(len(parts), p.limit))}
	for _, pr := range parts[:min(len(parts), p.limit)] {
		page.Sessions = append(page.Sessions, pr.rec)
	}
	if len(parts) > p.limit {
		last := page.Sessions[p.limit-1]
		page.Next = encodeCursor(listCursor{Last: ms(last.LastSeen), Session: last.Session, Part: last.Part})
	}
	return page, nil
}

// A scan tests at most scanFirst parts with its first statement and twice as many with each
// next one, up to scanMost: a common combination costs one short statement, and a rare one a
// statement per scanMost parts (about ten milliseconds), between which the deadline is
// checked.
const (
	scanFirst = 256
	scanMost  = 512
)

// scanParts walks the parts in list order, testing each against the filter's conditions,
// until it has found one more than a page. Each statement walks a chunk of parts, whose end is
// looked up first on parts_recent, and stops at the end or once it has found what is missing.
func (p *ListPlan) scanParts(ctx context.Context) ([]*partRow, error) {
	var out []*partRow
	hi := p.hi
	for n := scanFirst; len(out) <= p.limit; n = min(2*n, scanMost) {
		end, err := p.s.chunkEnd(ctx, p.where(p.lo, hi), n)
		if err != nil {
			return nil, err
		}
		lo := p.lo
		if end != nil {
			lo = end
		}
		w := p.where(lo, hi)
		w.and(&p.conds)
		parts, err := p.s.listParts(ctx, w, p.limit+1-len(out))
		if err != nil {
			return nil, err
		}
		out = append(out, parts...)
		if end == nil {
			break // the chunk ran to the last part
		}
		hi = end
	}
	return out, nil
}

// pinnedParts walks, as scanParts does, the parts whose latest user or role is the pinned value
// and the parts with several whose latest is another, each through its own index, and merges
// the two in list order: the two sets are apart and together hold every part with the value.
func (p *ListPlan) pinnedParts(ctx context.Context) ([]*partRow, error) {
	var out []*partRow
	for _, cond := range [...]func(*sqlWhere){p.pin.latest, p.pin.others} {
		q := *p
		q.base = sqlWhere{conds: slices.Clone(p.base.conds), args: slices.Clone(p.base.args)}
		cond(&q.base)
		parts, err := q.scanParts(ctx)
		if err != nil {
			return nil, err
		}
		out = append(out, parts...)
	}
	slices.SortFunc(out, func(a, b *partRow) int {
		return cmp.Or(cmp.Compare(b.last, a.last), strings.Compare(b.rec.Session, a.rec.Session), strings.Compare(b.rec.Part, a.rec.Part))
	})
	return out[:min(len(out), p.limit+1)], nil
}

// chunkEnd returns the n-th part in list order among those that meet w (conditions on the
// parts row, which parts_recent answers alone), or nil when fewer remain.
func (s *Store) chunkEnd(ctx context.Context, w *sqlWhere, n int) (*listCursor, error) {
	rows, err := s.readBounded(ctx, "SELECT p.last_seen, p.session, p.part FROM parts p WHERE "+w.String()+partOrder+
		" LIMIT 1 OFFSET ?", slices.Concat(w.args, []any{n - 1})...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	if !rows.Next() {
		return nil, rows.Err()
	}
	var c listCursor
	if err := rows.Scan(&c.Last, &c.Session, &c.Part); err != nil {
		return nil, err
	}
	return &c, rows.Err()
}

// candidateChunk is how many candidates candidateParts tests with one statement.
const candidateChunk = 64

// candidateParts reads the page from the candidates: puts them in list order first (a lookup
// of each and a sort, at most probeParts of them), then tests them chunk by chunk, so that a
// page of common matches costs the tests of its first chunks only, and rare ones at most a
// test of every candidate.
func (p *ListPlan) candidateParts(ctx context.Context) ([]*partRow, error) {
	w := p.where(p.lo, p.hi)
	p.s.d.idIn(w, "p.id", p.cand)
	ids, err := p.s.queryIDs(ctx, "SELECT p.id FROM parts p WHERE "+w.String()+partOrder, w.args...)
	if err != nil {
		return nil, err
	}
	var out []*partRow
	for start := 0; start < len(ids) && len(out) <= p.limit; start += candidateChunk {
		chunk := ids[start:min(start+candidateChunk, len(ids))]
		cw := &sqlWhere{}
		p.s.d.idIn(cw, "p.id", chunk)
		cw.and(&p.conds)
		parts, err := p.s.listParts(ctx, cw, p.limit+1-len(out))
		if err != nil {
			return nil, err
		}
		out = append(out, parts...)
	}
	return out, nil
}

// listParts reads up to limit parts that meet w, in list order: a statement that w must bound.
func (s *Store) listParts(ctx context.Context, w *sqlWhere, limit int) ([]*partRow, error) {
	query := "SELECT " + partCols + " FROM parts p WHERE " + w.String() + partOrder + " LIMIT ?"
	rows, err := s.readBounded(ctx, query, slices.Concat(w.args, []any{limit})...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*partRow
	for rows.Next() {
		pr, err := s.scanPart(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, pr)
	}
	return out, rows.Err()
}

// readBounded runs a query whose work is bounded, once ctx is checked, without handing ctx to
// the driver: modernc.org/sqlite discards a connection whose statement ctx interrupted, and
// closing it (freeing its page cache) and opening the next cost more than the statement.
// The list queries run bounded statements only and check ctx between them.
func (s *Store) readBounded(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s.query(context.WithoutCancel(ctx), q, args...)
}

// query runs a read in the engine's dialect: its placeholders, its form of text values.
func (s *Store) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return s.rdb.QueryContext(ctx, s.d.rebind(q), s.d.args(args)...)
}

// queryRow is query for one row.
func (s *Store) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	return s.rdb.QueryRowContext(ctx, s.d.rebind(q), s.d.args(args)...)
}

func idArgs(ids []int64) []any {
	out := make([]any, len(ids))
	for i, id := range ids {
		out[i] = id
	}
	return out
}

type partRow struct {
	id  int64
	rec *record.Session
	// later is true when a later part of the same session is stored.
	later bool
	// first and last bound the times of the part's requests (Unix ms).
	first, last int64
}

type scanner interface{ Scan(dest ...any) error }

// scanPart reads a part's own row (partCols); fillParts adds its values and whether it ended.
func (s *Store) scanPart(sc scanner) (*partRow, error) {
	var (
		id                                        int64
		first, last, rows, mal, bin, bout, linked int64
		sums                                      risk.Sums
		ref                                       int64
		later                                     bool
	)
	r := &record.Session{Kind: record.KindSession}
	if err := sc.Scan(&id, &r.Session, &r.Part, &first, &last, &rows, &mal, &bin, &bout, &r.User, &r.Role,
		&r.Key.Source, &r.Key.Name, &linked, &sums[0], &sums[1], &sums[2], &sums[3], &sums[4], &ref, &later); err != nil {
		return nil, err
	}
	r.Risk, r.RiskReasons = s.risk.Score(&sums, time.UnixMilli(ref), time.UnixMilli(last))
	r.FirstSeen = record.At(time.UnixMilli(first).UTC())
	r.LastSeen = record.At(time.UnixMilli(last).UTC())
	r.Requests, r.Malicious, r.BytesIn, r.BytesOut, r.Linked = int(rows), int(mal), bin, bout, int(linked)
	return &partRow{id: id, rec: r, later: later, first: first, last: last}, nil
}

// shownValues bounds the values of each kind a part's record lists: its ips and user agents
// (the earliest), methods and statuses (the most frequent, the rest summed as "other").
const shownValues = record.MaxDistinct

// fillParts completes the records of parts from part_values, in one statement, and decides
// whether each has ended.
func (s *Store) fillParts(ctx context.Context, parts []*partRow) error {
	if len(parts) == 0 {
		return nil
	}
	byID := make(map[int64]*partRow, len(parts))
	ids := make([]any, 0, len(parts)+1)
	for _, pr := range parts {
		byID[pr.id] = pr
		ids = append(ids, pr.id)
	}
	// Each kind's values in the order the record lists them; one more than shown tells
	// whether others exist. Flows are few (the configuration names them): all of them.
	q := `SELECT part_id, kind, value, count FROM (SELECT part_id, kind, value, count,
		row_number() OVER (PARTITION BY part_id, kind ORDER BY
			CASE WHEN kind IN (` + kindList(kindIP, kindUserAgent) + `) THEN first ELSE -count END, value) AS n
		FROM part_values WHERE part_id IN (` + placeholders(len(ids)) + `)
			AND kind IN (` + kindList(kindIP, kindUserAgent, kindMethod, kindStatus, kindFlow) + `)
			AND NOT (kind = ` + strconv.Itoa(kindIP) + ` AND value = '')) AS v
		WHERE n <= ` + strconv.Itoa(shownValues+1) + ` OR kind = ` + strconv.Itoa(kindFlow) + `
		ORDER BY part_id, kind, n`
	rows, err := s.readBounded(ctx, q, ids...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id, n int64
		var kind int
		var v string
		if err := rows.Scan(&id, &kind, &v, &n); err != nil {
			return err
		}
		if pr := byID[id]; pr != nil {
			addValue(pr.rec, kind, v, int(n))
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	now := s.now()
	for _, pr := range parts {
		r := pr.rec
		r.Methods = capCounts(r.Methods, r.Requests)
		r.Statuses = capCounts(r.Statuses, r.Requests)
		r.EndReason = s.parts.ended(r.Part, r.LastSeen.Time, pr.later, now)
		r.Final = r.EndReason != ""
	}
	return nil
}

// addValue adds one part_values row to a part's record.
func addValue(r *record.Session, kind int, v string, n int) {
	switch kind {
	case kindIP:
		if len(r.IPs) < shownValues {
			r.IPs = append(r.IPs, v)
		}
	case kindUserAgent:
		if len(r.UserAgents) < shownValues {
			r.UserAgents = append(r.UserAgents, v)
		}
	case kindMethod:
		r.Methods = addCount(r.Methods, v, n)
	case kindStatus:
		r.Statuses = addCount(r.Statuses, statusKey(v), n)
	case kindFlow:
		r.Flows = addCount(r.Flows, v, n)
	}
}

func addCount(m map[string]int, k string, n int) map[string]int {
	if m == nil {
		m = map[string]int{}
	}
	m[k] += n
	return m
}

// capCounts keeps the shownValues most frequent values of a kind each request has exactly
// once (method, status) and sums the requests of the others as "other". m holds at most one
// value more than shown, read in order of frequency.
func capCounts(m map[string]int, requests int) map[string]int {
	if len(m) <= shownValues {
		return m
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return cmp.Or(cmp.Compare(m[b], m[a]), strings.Compare(a, b)) })
	out := make(map[string]int, shownValues+1)
	shown := 0
	for _, k := range keys[:shownValues] {
		out[k] = m[k]
		shown += m[k]
	}
	out[otherValue] += max(requests-shown, 0)
	return out
}

// otherValue sums the values beyond the shown ones, as the engine's records do.
const otherValue = "other"

// partRules are the engine's rules for ending a part, as far as the store needs them.
type partRules struct {
	idle time.Duration
	zone *time.Location
}

// ended says whether a part has ended at now, and why: its day is over, it has been idle for
// longer than the idle timeout, or a later part of its session exists. "" while it may go on.
func (r partRules) ended(name string, last time.Time, later bool, now time.Time) string {
	if len(name) >= len(time.DateOnly) {
		if d, err := time.ParseInLocation(time.DateOnly, name[:len(time.DateOnly)], r.zone); err == nil &&
			!now.Before(d.AddDate(0, 0, 1)) {
			return record.EndDay
		}
	}
	if r.idle > 0 && now.Sub(last) > r.idle || later {
		return record.EndIdle
	}
	return ""
}

func kindList(kinds ...int) string {
	s := make([]string, len(kinds))
	for i, k := range kinds {
		s[i] = strconv.Itoa(k)
	}
	return strings.Join(s, ",")
}

// placeholders is n ? placeholders separated by commas.
func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}

func clampLimit(n, def, most int) int {
	if n <= 0 {
		return def
	}
	return min(n, most)
}

type listCursor struct {
	Last    int64  `json:"l"`
	Session string `json:"s"`
	Part    string `json:"p"`
}

// before reports whether c comes before d in key order (after it in list order).
func (c *listCursor) before(d *listCursor) bool {
	return cmp.Or(cmp.Compare(c.Last, d.Last), strings.Compare(c.Session, d.Session), strings.Compare(c.Part, d.Part)) < 0
}

type partCursor struct {
	Time int64 `json:"t"`
	ID   int64 `json:"i"`
}

func encodeCursor(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string, v any) error {
	if len(s) > 1024 {
		return ErrBadCursor
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return ErrBadCursor
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return ErrBadCursor
	}
	return nil
}

func decodeListCursor(s string) (listCursor, error) {
	var c listCursor
	if err := decodeCursor(s, &c); err != nil || c.Session == "" || c.Part == "" {
		return c, ErrBadCursor
	}
	return c, nil
}

// Count is one value of a statistic and the requests that have it.
type Count struct {
	Value string `json:"value"`
	Count int    `json:"count"`
	// Share is Count over the part's requests (flows only).
	Share float64 `json:"share,omitempty"`
	// Other marks the entry that sums the values beyond the first maxStatValues.
	Other bool `json:"other,omitempty"`
}

// Stats describe all requests stored for one part, whatever the filters.
type Stats struct {
	Requests    int     `json:"requests"`
	Malicious   int     `json:"malicious"`
	Methods     []Count `json:"methods"`
	Statuses    []Count `json:"statuses"`
	ClientIPs   []Count `json:"client_ips"`
	Flows       []Count `json:"flows"`
	Routes      []Count `json:"routes"`
	AttackTypes []Count `json:"attack_types"`
}

// PartQuery filters the requests of one part.
type PartQuery struct {
	Filter Filter
	// Limit bounds the requests: DefaultPartLimit when 0, at most MaxPartLimit.
	Limit  int
	Cursor string
}

// PartView is one session part: its record, statistics over all its requests, and the
// requests that match the filter, in time order.
type PartView struct {
	Session  *record.Session   `json:"session"`
	Stats    Stats             `json:"stats"`
	Requests []json.RawMessage `json:"requests"`
	// Next is the cursor of the following requests, "" when none follow.
	Next string `json:"next,omitempty"`
	// Timeline and Transitions describe all of the part's requests too: when they came, and
	// which route followed which.
	Timeline    *Timeline    `json:"timeline"`
	Transitions *Transitions `json:"transitions"`
}

func (s *Store) part(ctx context.Context, session, part string) (*partRow, error) {
	row := s.queryRow(ctx, "SELECT "+partCols+" FROM parts p WHERE p.session = ? AND p.part = ?", session, part)
	pr, err := s.scanPart(row)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err == nil {
		err = s.fillParts(ctx, []*partRow{pr})
	}
	if err != nil {
		return nil, fmt.Errorf("store: read part: %w", err)
	}
	return pr, nil
}

// Part returns one session part with its statistics and the requests that match q, or
// ErrNotFound.
func (s *Store) Part(ctx context.Context, session, part string, q PartQuery) (*PartView, error) {
	if err := s.Ready(); err != nil {
		return nil, err
	}
	var after *partCursor
	if q.Cursor != "" {
		after = &partCursor{}
		if err := decodeCursor(q.Cursor, after); err != nil {
			return nil, err
		}
	}
	pr, err := s.part(ctx, session, part)
	if err != nil {
		return nil, err
	}
	v := &PartView{Session: pr.rec}
	tb := newTimeline(pr.first, pr.last, pr.rec.Requests)
	if err := s.stats(ctx, pr, &v.Stats, tb); err != nil {
		return nil, err
	}
	v.Timeline, v.Transitions = tb.done()
	reqs, last, more, err := s.requestPage(ctx, pr, &q.Filter, after, clampLimit(q.Limit, DefaultPartLimit, MaxPartLimit))
	if err != nil {
		return nil, err
	}
	v.Requests = reqs
	if more {
		v.Next = encodeCursor(last)
	}
	return v, nil
}

// requestPage reads up to limit requests of the part that match f, in time order, after the
// request at after (nil: from the first). last is the position of the last one read; more is
// true when further matching requests follow.
func (s *Store) requestPage(ctx context.Context, pr *partRow, f *Filter, after *partCursor, limit int) (
	reqs []json.RawMessage, last partCursor, more bool, err error) {
	w := &sqlWhere{}
	w.add("r.part_id = ?", pr.id)
	w.add("r.time >= ? AND r.time <= ?", pr.first, pr.last)
	if after != nil {
		w.add("(r.time, r.id) > (?, ?)", after.Time, after.ID)
	}
	f.where(w, s.d, true)
	rows, err := s.query(ctx, "SELECT r.id, r.time, r.record FROM requests r WHERE "+w.String()+
		" ORDER BY r.time, r.id LIMIT ?", append(w.args, limit+1)...)
	if err != nil {
		return nil, last, false, fmt.Errorf("store: read requests: %w", err)
	}
	defer rows.Close()
	reqs = make([]json.RawMessage, 0, min(limit, 64))
	for rows.Next() {
		if len(reqs) == limit {
			more = true
			break
		}
		var b []byte
		if err := rows.Scan(&last.ID, &last.Time, &b); err != nil {
			return nil, last, false, fmt.Errorf("store: read requests: %w", err)
		}
		reqs = append(reqs, b)
	}
	if err := rows.Err(); err != nil {
		return nil, last, false, fmt.Errorf("store: read requests: %w", err)
	}
	return reqs, last, more, nil
}

// stats counts the part's requests by method, status, client IP, flow, route and attack type,
// and adds them to the timeline tb, in one pass over its rows in time order.
func (s *Store) stats(ctx context.Context, pr *partRow, st *Stats, tb *timelineBuilder) error {
	rows, err := s.query(ctx, `SELECT time, method, status, client_ip, route, flows, attack_types, malicious
		FROM requests WHERE part_id = ? AND time >= ? AND time <= ? ORDER BY time, rkey NULLS FIRST`, pr.id, pr.first, pr.last)
	if err != nil {
		return fmt.Errorf("store: stats: %w", err)
	}
	defer rows.Close()
	methods, statuses, ips := map[string]int{}, map[string]int{}, map[string]int{}
	flows, routes, attacks := map[string]int{}, map[string]int{}, map[string]int{}
	for rows.Next() {
		var method, ip, route, fl, types string
		var t int64
		var status int
		var mal bool
		if err := rows.Scan(&t, &method, &status, &ip, &route, &fl, &types, &mal); err != nil {
			return fmt.Errorf("store: stats: %w", err)
		}
		tb.add(t, status, mal, route)
		st.Requests++
		if mal {
			st.Malicious++
		}
		methods[method]++
		statuses[strconv.Itoa(status)]++
		ips[ip]++
		routes[route]++
		if fl != "" {
			for f := range strings.SplitSeq(fl, ",") {
				flows[f]++
			}
		}
		if types != "" {
			for t := range strings.SplitSeq(types, ",") {
				attacks[t]++
			}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: stats: %w", err)
	}
	st.Methods = topCounts(methods, 0)
	st.Statuses = topCounts(statuses, 0)
	st.ClientIPs = topCounts(ips, 0)
	st.Flows = topCounts(flows, st.Requests)
	st.Routes = topCounts(routes, 0)
	st.AttackTypes = topCounts(attacks, 0)
	return nil
}

// topCounts sorts by count (descending, then value) and keeps maxStatValues entries, summing
// the rest into one entry marked Other. With total > 0 each entry carries its share.
func topCounts(m map[string]int, total int) []Count {
	out := make([]Count, 0, min(len(m), maxStatValues+1))
	for k, v := range m {
		out = append(out, Count{Value: k, Count: v})
	}
	slices.SortFunc(out, func(a, b Count) int {
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		return strings.Compare(a.Value, b.Value)
	})
	if len(out) > maxStatValues {
		rest := 0
		for _, c := range out[maxStatValues:] {
			rest += c.Count
		}
		out = append(out[:maxStatValues], Count{Value: "other", Count: rest, Other: true})
	}
	if total > 0 {
		for i := range out {
			out[i].Share = float64(out[i].Count) / float64(total)
		}
	}
	return out
}

// eachPage is how many requests EachRequest reads at a time.
const eachPage = 256

// EachRequest calls fn with every request of the part that matches f, in time order, until fn
// fails. It returns ErrNotFound, before any call, for an unknown part. Requests are read a page
// at a time and fn is called between reads, so a slow fn (a client reading an export slowly)
// never holds a database connection.
func (s *Store) EachRequest(ctx context.Context, session, part string, f Filter, fn func(*record.Request) error) error {
	if err := s.Ready(); err != nil {
		return err
	}
	pr, err := s.part(ctx, session, part)
	if err != nil {
		return err
	}
	var after *partCursor
	for {
		reqs, last, more, err := s.requestPage(ctx, pr, &f, after, eachPage)
		if err != nil {
			return err
		}
		for _, b := range reqs {
			var r record.Request
			if err := json.Unmarshal(b, &r); err != nil {
				return fmt.Errorf("store: decode request: %w", err)
			}
			if err := fn(&r); err != nil {
				return err
			}
		}
		if !more {
			return nil
		}
		after = &last
	}
}

// Readers is how many queries can read at once: the read connections.
func (s *Store) Readers() int { return s.rdb.Stats().MaxOpenConnections }

// Found is a request found by its id, with the part it belongs to.
type Found struct {
	Session string          `json:"session"`
	Part    string          `json:"part"`
	Request json.RawMessage `json:"request"`
}

// Request returns the newest request stored with the request id, or ErrNotFound.
func (s *Store) Request(ctx context.Context, requestID string) (*Found, error) {
	if err := s.Ready(); err != nil {
		return nil, err
	}
	if requestID == "" {
		return nil, ErrNotFound
	}
	var fd Found
	var b []byte
	err := s.queryRow(ctx, `SELECT p.session, p.part, r.record FROM requests r JOIN parts p ON p.id = r.part_id
		WHERE r.request_id <> '' AND r.request_id = ? ORDER BY r.time DESC, r.id DESC LIMIT 1`, requestID).Scan(&fd.Session, &fd.Part, &b)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: find request: %w", err)
	}
	fd.Request = b
	return &fd, nil
}
