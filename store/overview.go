package store

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Bounds of the overview.
const (
	// overviewTop bounds each list of the overview (routes, sessions).
	overviewTop = 10
	// overviewNew bounds the new users and new fingerprints listed; their totals are counted.
	overviewNew = 20
	// maxOverviewBuckets bounds the time buckets of an overview (the width grows with the period).
	maxOverviewBuckets = 100
)

// bucketWidths are the widths an overview's buckets may have, the narrowest that gives at most
// maxOverviewBuckets buckets being chosen; past a hundred days, whole days as many as needed.
var bucketWidths = []time.Duration{
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour,
}

// BucketWidth is the width of the buckets of an overview of the period [from, to).
func BucketWidth(from, to time.Time) time.Duration {
	span := to.Sub(from)
	for _, w := range bucketWidths {
		if span <= time.Duration(maxOverviewBuckets)*w {
			return w
		}
	}
	day := 24 * time.Hour
	days := (span + maxOverviewBuckets*day - 1) / (maxOverviewBuckets * day)
	return days * day
}

// SessionsBy orders the top sessions of an overview.
type SessionsBy string

// Orders of the top sessions.
const (
	// ByMalicious orders parts by their malicious requests in the period, then their errors.
	ByMalicious SessionsBy = "malicious"
	// ByRisk orders the parts with a request in the period by their risk score (as of their
	// latest request, the score the list's min_risk filter reads), riskiest first.
	ByRisk SessionsBy = "risk"
)

// OverviewQuery asks for the overview of the requests whose time is in [From, To).
type OverviewQuery struct {
	From, To time.Time
	// SessionsBy orders TopSessions; "" is ByMalicious.
	SessionsBy SessionsBy
}

// Overview summarises the requests of a period: their number over time, the routes with most
// malicious requests and server errors, the sessions with most malicious requests, and the
// users and client fingerprints first seen in it. Errors are responses 500 to 599: the server
// failed (4xx answers, common and mostly the client's doing, are not counted).
type Overview struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// BucketSeconds is the width of each bucket; buckets are aligned on multiples of it
	// (Unix time), so the first and last may cover part of the period only.
	BucketSeconds int64            `json:"bucket_seconds"`
	Totals        OverviewTotals   `json:"totals"`
	Buckets       []OverviewBucket `json:"buckets"`
	// RoutesByMalicious and RoutesByErrors are the overviewTop routes with most malicious
	// requests and most errors (routes with none are left out).
	RoutesByMalicious []RouteCount `json:"routes_by_malicious"`
	RoutesByErrors    []RouteCount `json:"routes_by_errors"`
	// SessionsBy names the order of TopSessions.
	SessionsBy  SessionsBy     `json:"sessions_by"`
	TopSessions []SessionCount `json:"top_sessions"`
	// NewUsers are users whose first stored request is in the period, latest first.
	NewUsers FirstSeenList `json:"new_users"`
	// NewFingerprints are client fingerprints first seen in the period, latest first.
	NewFingerprints FirstSeenList `json:"new_fingerprints"`
}

// OverviewTotals count the requests of the period.
type OverviewTotals struct {
	Requests  int `json:"requests"`
	Sessions  int `json:"sessions"`
	Malicious int `json:"malicious"`
	Errors    int `json:"errors"`
}

// OverviewBucket counts the requests of one bucket; Sessions is the session parts that sent
// at least one of them.
type OverviewBucket struct {
	Start     time.Time `json:"start"`
	Requests  int       `json:"requests"`
	Sessions  int       `json:"sessions"`
	Malicious int       `json:"malicious"`
	Errors    int       `json:"errors"`
}

// RouteCount is a route of a host with its malicious requests and errors in the period.
// Requests without a route are counted under their path (IsPath).
type RouteCount struct {
	Host      string `json:"host"`
	Route     string `json:"route"`
	IsPath    bool   `json:"is_path,omitempty"`
	Malicious int    `json:"malicious"`
	Errors    int    `json:"errors"`
}

// SessionCount is a session part with its malicious requests and errors in the period, and
// its risk score as of its latest request.
type SessionCount struct {
	Session   string    `json:"session"`
	Part      string    `json:"part"`
	User      string    `json:"user,omitempty"`
	Risk      int       `json:"risk"`
	Malicious int       `json:"malicious"`
	Errors    int       `json:"errors"`
	LastSeen  time.Time `json:"last_seen"`
}

// FirstSeenList lists values first seen in a period, at most overviewNew of them; Total
// counts them all.
type FirstSeenList struct {
	Total int         `json:"total"`
	Items []FirstSeen `json:"items"`
}

// FirstSeen is a value and the time of its first stored request.
type FirstSeen struct {
	// Kind says what Value is: "user" for users; for fingerprints "user_agent" (the store
	// keeps no TLS fingerprint of its own).
	Kind  string    `json:"kind"`
	Value string    `json:"value"`
	First time.Time `json:"first"`
}

// Overview computes the overview of the requests in [q.From, q.To). It reads the request rows
// of the period through the index of each part (counting rows without reading them), and the
// rows that are malicious or errors only in the parts that have such requests, so its cost
// grows with the requests of the period. It runs until ctx ends: give it a deadline.
func (s *Store) Overview(ctx context.Context, q OverviewQuery) (*Overview, error) {
	if err := s.Ready(); err != nil {
		return nil, err
	}
	if q.SessionsBy == "" {
		q.SessionsBy = ByMalicious
	}
	if q.SessionsBy != ByMalicious && q.SessionsBy != ByRisk {
		return nil, fmt.Errorf("store: overview: unknown order %q", q.SessionsBy)
	}
	if !q.From.Before(q.To) {
		return nil, fmt.Errorf("store: overview: empty period %s to %s", q.From, q.To)
	}
	from, to := q.From.UnixMilli(), q.To.UnixMilli()
	width := BucketWidth(q.From, q.To).Milliseconds()
	origin := from - from%width
	o := &Overview{
		From: q.From.UTC(), To: q.To.UTC(), BucketSeconds: width / 1000, SessionsBy: q.SessionsBy,
		RoutesByMalicious: []RouteCount{}, RoutesByErrors: []RouteCount{}, TopSessions: []SessionCount{},
		NewUsers: FirstSeenList{Items: []FirstSeen{}}, NewFingerprints: FirstSeenList{Items: []FirstSeen{}},
	}
	n := int((to-1-origin)/width + 1)
	o.Buckets = make([]OverviewBucket, n)
	for i := range o.Buckets {
		o.Buckets[i].Start = time.UnixMilli(origin + int64(i)*width).UTC()
	}
	var span int64
	if err := s.queryRow(ctx, "SELECT coalesce((SELECT value FROM meta WHERE key = 'max_span'), 0)").Scan(&span); err != nil {
		return nil, fmt.Errorf("store: overview: %w", err)
	}
	ov := overviewSQL{from: from, to: to, span: span, perRow: s.d.perRow}
	steps := []func(context.Context, *overviewSQL, *Overview, int64, int64) error{
		s.overviewCounts, s.overviewBad, s.overviewUsers, s.overviewAgents,
	}
	for _, step := range steps {
		if err := step(ctx, &ov, o, origin, width); err != nil {
			return nil, fmt.Errorf("store: overview: %w", err)
		}
	}
	return o, nil
}

// overviewSQL builds the statements of an overview: the parts of the period and their rows.
type overviewSQL struct {
	from, to, span int64
	// perRow is the dialect's: it keeps PostgreSQL from turning a test of each part of the
	// period into a join over every part of the store that has the value.
	perRow string
}

// parts is the condition on the parts (alias a) that may have requests in the period: no part
// spans longer than max_span, so the walk of parts_recent stops at to+max_span.
func (q *overviewSQL) parts(a string) (string, []any) {
	return a + ".last_seen >= ? AND " + a + ".last_seen <= ? AND " + a + ".first_seen < ?",
		[]any{q.from, q.to + q.span, q.to}
}

// rows is the join of the period's parts (p) with their requests (r) in the period.
func (q *overviewSQL) rows() (string, []any) {
	c, args := q.parts("p")
	return "parts p JOIN requests r ON r.part_id = p.id AND r.time >= ? AND r.time < ? WHERE " + c,
		append([]any{q.from, q.to}, args...)
}

// badRows is rows restricted to the malicious or error requests, read only in the parts whose
// values say they have some (a lookup of the part's own part_values rows).
func (q *overviewSQL) badRows() (string, []any) {
	from, args := q.rows()
	return from + ` AND (r.malicious OR (r.status >= 500 AND r.status < 600))
		AND EXISTS (SELECT 1 FROM part_values v WHERE v.part_id = p.id AND (v.kind = ` + itoa(kindMalicious) + `
			OR (v.kind = ` + itoa(kindStatus) + ` AND v.value >= '500' AND v.value < '600'))` + q.perRow + `)`, args
}

func itoa(n int) string { return strconv.Itoa(n) }

// bucketOf returns the bucket of t (Unix ms), or nil outside the overview.
func bucketOf(o *Overview, origin, width, t int64) *OverviewBucket {
	i := (t - origin) / width
	if t < origin || i >= int64(len(o.Buckets)) {
		return nil
	}
	return &o.Buckets[i]
}

// overviewCounts counts requests and parts per bucket, and the parts of the whole period,
// from the index of each part's requests alone.
func (s *Store) overviewCounts(ctx context.Context, q *overviewSQL, o *Overview, origin, width int64) error {
	from, args := q.rows()
	rows, err := s.query(ctx, "SELECT (r.time - ?) / ? AS b, count(*), count(DISTINCT r.part_id) FROM "+from+
		" GROUP BY 1", slices.Concat([]any{origin, width}, args)...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var b, n, parts int64
		if err := rows.Scan(&b, &n, &parts); err != nil {
			return err
		}
		if bk := bucketOf(o, origin, width, origin+b*width); bk != nil {
			bk.Requests, bk.Sessions = int(n), int(parts)
			o.Totals.Requests += int(n)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	// A part's first and last seen are times of its requests: one that lies inside the period
	// has a request in it; only the parts across its edges need a look at their rows.
	c, pargs := q.parts("p")
	return s.queryRow(ctx, "SELECT count(*) FROM parts p WHERE "+c+
		" AND (p.first_seen >= ? AND p.last_seen < ? OR EXISTS (SELECT 1 FROM requests r WHERE r.part_id = p.id"+
		" AND r.time >= ? AND r.time < ?"+q.perRow+"))",
		append(pargs, q.from, q.to, q.from, q.to)...).Scan(&o.Totals.Sessions)
}

// maxRouteKeys bounds the distinct routes (host, route or path) an overview ranks; rows of
// further routes (past this many, or past maxRouteBytes) still count in the buckets and sessions. Routes are bounded per host by the
// engine, paths (requests without a route) are not.
const maxRouteKeys = 100_000

// maxRouteBytes bounds the bytes of the hosts and routes those keys hold: paths are written by
// clients, up to 2 KiB each, and 100,000 of them would hold some 200 MiB per overview.
const maxRouteBytes = 8 << 20

// routeTable is the routes an overview counts, bounded in keys and in bytes.
type routeTable struct {
	m     map[routeKey]*RouteCount
	bytes int
}

// count is k's count, added when there is room; nil when there is none.
func (t *routeTable) count(k routeKey) *RouteCount {
	if rc := t.m[k]; rc != nil {
		return rc
	}
	n := len(k.host) + len(k.route)
	if len(t.m) >= maxRouteKeys || t.bytes+n > maxRouteBytes {
		return nil
	}
	rc := &RouteCount{Host: k.host, Route: k.route, IsPath: k.isPath}
	t.m[k] = rc
	t.bytes += n
	return rc
}

// maxOverviewParts bounds the parts whose malicious requests and errors an overview counts to
// rank them: a client that changes its session on every request makes a part per request.
// Rows of further parts still count in the buckets, the totals and the routes; the parts are
// those met first in the rows' order. About 110 bytes a part: some 20 MiB at the bound.
const maxOverviewParts = 200_000

// partCounts is the malicious requests and errors an overview counts per part, bounded by
// maxOverviewParts.
type partCounts map[int64]*SessionCount

// count is id's count, added when there is room; nil when there is none.
func (p partCounts) count(id int64) *SessionCount {
	if sc := p[id]; sc != nil {
		return sc
	}
	if len(p) >= maxOverviewParts {
		return nil
	}
	sc := &SessionCount{}
	p[id] = sc
	return sc
}

// maxSessionCandidates bounds the parts whose session and part names an overview reads to
// order the top sessions: those with most malicious requests, then errors, ties included up
// to this many (further ties are left out by their row order).
const maxSessionCandidates = 1000

type routeKey struct {
	host, route string
	isPath      bool
}

// overviewBad reads the malicious requests and errors of the period once and counts them per
// bucket, per route and per part; then ranks the routes and the parts.
func (s *Store) overviewBad(ctx context.Context, q *overviewSQL, o *Overview, origin, width int64) error {
	from, args := q.badRows()
	rows, err := s.query(ctx, `SELECT r.part_id, r.time, r.host, CASE WHEN r.route <> '' THEN r.route ELSE r.path END,
		CASE WHEN r.route <> '' THEN 0 ELSE 1 END, CASE WHEN r.malicious THEN 1 ELSE 0 END,
		CASE WHEN r.status >= 500 AND r.status < 600 THEN 1 ELSE 0 END FROM `+from, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	routes := routeTable{m: map[routeKey]*RouteCount{}}
	parts := partCounts{}
	for rows.Next() {
		var id, t, isPath, mal, errs int64
		var k routeKey
		if err := rows.Scan(&id, &t, &k.host, &k.route, &isPath, &mal, &errs); err != nil {
			return err
		}
		k.isPath = isPath == 1
		if bk := bucketOf(o, origin, width, t); bk != nil {
			bk.Malicious += int(mal)
			bk.Errors += int(errs)
		}
		o.Totals.Malicious += int(mal)
		o.Totals.Errors += int(errs)
		if rc := routes.count(k); rc != nil {
			rc.Malicious += int(mal)
			rc.Errors += int(errs)
		}
		if sc := parts.count(id); sc != nil {
			sc.Malicious += int(mal)
			sc.Errors += int(errs)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	all := make([]RouteCount, 0, len(routes.m))
	for _, rc := range routes.m {
		all = append(all, *rc)
	}
	byName := func(a, b RouteCount) int {
		return cmp.Or(strings.Compare(a.Host, b.Host), strings.Compare(a.Route, b.Route), boolCmp(a.IsPath, b.IsPath))
	}
	o.RoutesByMalicious = topRoutes(all, func(rc RouteCount) int { return rc.Malicious }, byName)
	o.RoutesByErrors = topRoutes(all, func(rc RouteCount) int { return rc.Errors }, byName)
	if o.SessionsBy == ByRisk {
		return s.riskiestSessions(ctx, q, parts, o)
	}
	return s.topSessions(ctx, parts, o)
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	}
	return 1
}

// topRoutes returns the overviewTop routes with the highest n (more than 0), ties by name.
func topRoutes(all []RouteCount, n func(RouteCount) int, byName func(a, b RouteCount) int) []RouteCount {
	out := make([]RouteCount, 0, overviewTop)
	for _, rc := range all {
		if n(rc) > 0 {
			out = append(out, rc)
		}
	}
	slices.SortFunc(out, func(a, b RouteCount) int { return cmp.Or(cmp.Compare(n(b), n(a)), byName(a, b)) })
	return out[:min(len(out), overviewTop)]
}

// topSessions orders the parts with malicious requests by them, then by errors, then by
// session and part, and keeps overviewTop of them with their names, user and last request.
func (s *Store) topSessions(ctx context.Context, parts partCounts, o *Overview) error {
	type cand struct {
		id int64
		sc *SessionCount
	}
	var cands []cand
	for id, sc := range parts {
		if sc.Malicious > 0 {
			cands = append(cands, cand{id, sc})
		}
	}
	if len(cands) == 0 {
		return nil
	}
	rank := func(a, b cand) int {
		return cmp.Or(cmp.Compare(b.sc.Malicious, a.sc.Malicious), cmp.Compare(b.sc.Errors, a.sc.Errors))
	}
	slices.SortFunc(cands, func(a, b cand) int { return cmp.Or(rank(a, b), cmp.Compare(a.id, b.id)) })
	// Every part that ties with the last one kept may come first by name.
	n := min(len(cands), overviewTop)
	for n < len(cands) && n < maxSessionCandidates && rank(cands[n], cands[overviewTop-1]) == 0 {
		n++
	}
	ids := make([]int64, n)
	for i, c := range cands[:n] {
		ids[i] = c.id
	}
	w := &sqlWhere{}
	s.d.idIn(w, "p.id", ids)
	rows, err := s.query(ctx, `SELECT p.id, p.session, p.part, p."user", p.last_seen, p.risk FROM parts p WHERE `+w.String(), w.args...)
	if err != nil {
		return err
	}
	if err := topSessions(rows, parts, false, o); err != nil {
		return err
	}
	slices.SortFunc(o.TopSessions, func(a, b SessionCount) int {
		return cmp.Or(cmp.Compare(b.Malicious, a.Malicious), cmp.Compare(b.Errors, a.Errors),
			strings.Compare(a.Session, b.Session), strings.Compare(a.Part, b.Part))
	})
	o.TopSessions = o.TopSessions[:min(len(o.TopSessions), overviewTop)]
	return nil
}

// riskiestSessions keeps the overviewTop parts with a request in the period and a risk score
// above 0, highest score first, then latest request, then session and part; with their
// malicious requests and errors in the period (parts, from overviewBad). The literal risk > 0
// lets both engines walk the index of risky parts (parts_risky) over the period's parts.
func (s *Store) riskiestSessions(ctx context.Context, q *overviewSQL, parts partCounts, o *Overview) error {
	c, args := q.parts("p")
	rows, err := s.query(ctx, `SELECT p.id, p.session, p.part, p."user", p.last_seen, p.risk FROM parts p
		WHERE p.risk > 0 AND `+c+` AND (p.first_seen >= ? AND p.last_seen < ? OR EXISTS (SELECT 1 FROM requests r
			WHERE r.part_id = p.id AND r.time >= ? AND r.time < ?`+q.perRow+`))
		ORDER BY p.risk DESC, p.last_seen DESC, p.session, p.part LIMIT ?`,
		append(args, q.from, q.to, q.from, q.to, overviewTop)...)
	if err != nil {
		return err
	}
	return topSessions(rows, parts, true, o)
}

// topSessions appends the parts rows holds (id, session, part, user, last_seen, risk) to
// o.TopSessions, with the malicious requests and errors parts counted for each; a part that
// parts does not hold is kept with none when all is true, else left out. It closes rows.
func topSessions(rows *sql.Rows, parts partCounts, all bool, o *Overview) error {
	defer rows.Close()
	for rows.Next() {
		var id, last, risk int64
		var sc SessionCount
		if err := rows.Scan(&id, &sc.Session, &sc.Part, &sc.User, &last, &risk); err != nil {
			return err
		}
		c := parts[id]
		if c == nil && !all {
			continue
		}
		sc.LastSeen, sc.Risk = time.UnixMilli(last).UTC(), int(risk)
		if c != nil {
			sc.Malicious, sc.Errors = c.Malicious, c.Errors
		}
		o.TopSessions = append(o.TopSessions, sc)
	}
	return rows.Err()
}

// overviewUsers finds the users whose first stored request is in the period: users of the
// period's parts that no earlier request of any part has (part_values names the parts of a
// user; their rows before the period are read only for parts that began before it). The time
// of each one's first request is read from the rows of its parts in the period.
func (s *Store) overviewUsers(ctx context.Context, q *overviewSQL, o *Overview, _, _ int64) error {
	c, cargs := q.parts("p")
	c2, c2args := q.parts("p2")
	query := `SELECT u, f, count(*) OVER () FROM (
		SELECT n.u AS u, min((SELECT r.time FROM requests r WHERE r.part_id = p2.id AND r.time >= ? AND r.time < ?
				AND r."user" = n.u ORDER BY r.time LIMIT 1)) AS f FROM
			(SELECT DISTINCT v.value AS u FROM parts p CROSS JOIN part_values v
				WHERE ` + c + ` AND v.part_id = p.id AND v.kind = ` + itoa(kindUser) + `) n
			CROSS JOIN part_values v2 CROSS JOIN parts p2
		WHERE v2.kind = ` + itoa(kindUser) + ` AND v2.value = n.u AND p2.id = v2.part_id AND ` + c2 + `
			AND NOT EXISTS (SELECT 1 FROM part_values o JOIN parts q ON q.id = o.part_id
			WHERE o.kind = ` + itoa(kindUser) + ` AND o.value = n.u AND q.first_seen < ?
				AND EXISTS (SELECT 1 FROM requests r3 WHERE r3.part_id = q.id AND r3.time < ? AND r3."user" = n.u)` + s.d.perRow + `)
		GROUP BY n.u) t
		WHERE f IS NOT NULL ORDER BY f DESC, u LIMIT ?`
	return s.firstSeen(ctx, "user", &o.NewUsers, query,
		slices.Concat([]any{q.from, q.to}, cargs, c2args, []any{q.from, q.from, overviewNew})...)
}

// overviewAgents finds the user agents first seen in the period: part_values keeps for each
// part the time of its first request with a user agent, so the earliest of them over every
// part is the user agent's first request.
func (s *Store) overviewAgents(ctx context.Context, q *overviewSQL, o *Overview, _, _ int64) error {
	c, cargs := q.parts("p")
	query := `SELECT u, f, count(*) OVER () FROM (
		SELECT v.value AS u, min(v.first) AS f FROM parts p CROSS JOIN part_values v
		WHERE ` + c + ` AND v.part_id = p.id AND v.kind = ` + itoa(kindUserAgent) + ` GROUP BY v.value) t
		WHERE f >= ? AND f < ? AND NOT EXISTS (SELECT 1 FROM part_values o
			WHERE o.kind = ` + itoa(kindUserAgent) + ` AND o.value = t.u AND o.first < ?` + s.d.perRow + `)
		ORDER BY f DESC, u LIMIT ?`
	return s.firstSeen(ctx, "user_agent", &o.NewFingerprints, query,
		slices.Concat(cargs, []any{q.from, q.to, q.from, overviewNew})...)
}

// firstSeen reads (value, first time, total) rows into l.
func (s *Store) firstSeen(ctx context.Context, kind string, l *FirstSeenList, query string, args ...any) error {
	rows, err := s.query(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var fs FirstSeen
		var first, total int64
		if err := rows.Scan(&fs.Value, &first, &total); err != nil {
			return err
		}
		fs.Kind, fs.First, l.Total = kind, time.UnixMilli(first).UTC(), int(total)
		l.Items = append(l.Items, fs)
	}
	return rows.Err()
}
