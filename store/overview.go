package store

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"
)

// Bounds of the overview.
const (
	// overviewTop bounds each list of the overview (routes, sessions).
	overviewTop = 10
	// overviewNew bounds the new users and new fingerprints listed; their totals are counted.
	overviewNew = 20
	// maxBuckets bounds the time buckets of an overview (the width grows with the period).
	maxBuckets = 100
)

// bucketWidths are the widths an overview's buckets may have, the narrowest that gives at most
// maxBuckets buckets being chosen; past a hundred days, whole days as many as needed.
var bucketWidths = []time.Duration{
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour,
}

// BucketWidth is the width of the buckets of an overview of the period [from, to).
func BucketWidth(from, to time.Time) time.Duration {
	span := to.Sub(from)
	for _, w := range bucketWidths {
		if span <= time.Duration(maxBuckets)*w {
			return w
		}
	}
	day := 24 * time.Hour
	days := (span + maxBuckets*day - 1) / (maxBuckets * day)
	return days * day
}

// SessionsBy orders the top sessions of an overview.
type SessionsBy string

// Orders of the top sessions. Only malicious requests are stored today; an ordering by a
// risk score joins this list when parts carry one.
const (
	// ByMalicious orders parts by their malicious requests in the period.
	ByMalicious SessionsBy = "malicious"
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

// SessionCount is a session part with its malicious requests and errors in the period.
type SessionCount struct {
	Session   string    `json:"session"`
	Part      string    `json:"part"`
	User      string    `json:"user,omitempty"`
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
	if q.SessionsBy != ByMalicious {
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
	ov := overviewSQL{from: from, to: to, span: span}
	steps := []func(context.Context, *overviewSQL, *Overview, int64, int64) error{
		s.overviewCounts, s.overviewBad, s.overviewRoutes, s.overviewSessions, s.overviewUsers, s.overviewAgents,
	}
	for _, step := range steps {
		if err := step(ctx, &ov, o, origin, width); err != nil {
			return nil, fmt.Errorf("store: overview: %w", err)
		}
	}
	return o, nil
}

// overviewSQL builds the statements of an overview: the parts of the period and their rows.
type overviewSQL struct{ from, to, span int64 }

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
			OR (v.kind = ` + itoa(kindStatus) + ` AND v.value >= '500' AND v.value < '600')))`, args
}

const (
	sumMalicious = "sum(CASE WHEN r.malicious THEN 1 ELSE 0 END)"
	sumErrors    = "sum(CASE WHEN r.status >= 500 AND r.status < 600 THEN 1 ELSE 0 END)"
)

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
	c, pargs := q.parts("p")
	return s.queryRow(ctx, "SELECT count(*) FROM parts p WHERE "+c+
		" AND EXISTS (SELECT 1 FROM requests r WHERE r.part_id = p.id AND r.time >= ? AND r.time < ?)",
		append(pargs, q.from, q.to)...).Scan(&o.Totals.Sessions)
}

// overviewBad counts the malicious requests and errors per bucket.
func (s *Store) overviewBad(ctx context.Context, q *overviewSQL, o *Overview, origin, width int64) error {
	from, args := q.badRows()
	rows, err := s.query(ctx, "SELECT (r.time - ?) / ? AS b, "+sumMalicious+", "+sumErrors+" FROM "+from+
		" GROUP BY 1", slices.Concat([]any{origin, width}, args)...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var b, mal, errs int64
		if err := rows.Scan(&b, &mal, &errs); err != nil {
			return err
		}
		if bk := bucketOf(o, origin, width, origin+b*width); bk != nil {
			bk.Malicious, bk.Errors = int(mal), int(errs)
			o.Totals.Malicious += int(mal)
			o.Totals.Errors += int(errs)
		}
	}
	return rows.Err()
}

// overviewRoutes finds the routes with most malicious requests and most errors in one
// statement: each route's sums, ranked both ways.
func (s *Store) overviewRoutes(ctx context.Context, q *overviewSQL, o *Overview, _, _ int64) error {
	from, args := q.badRows()
	rows, err := s.query(ctx, `SELECT host, rt, is_path, m, e, nm, ne FROM (
		SELECT host, rt, is_path, m, e,
			row_number() OVER (ORDER BY m DESC, host, rt, is_path) AS nm,
			row_number() OVER (ORDER BY e DESC, host, rt, is_path) AS ne
		FROM (SELECT r.host AS host, CASE WHEN r.route <> '' THEN r.route ELSE r.path END AS rt,
				CASE WHEN r.route <> '' THEN 0 ELSE 1 END AS is_path,
				`+sumMalicious+` AS m, `+sumErrors+` AS e
			FROM `+from+`
			GROUP BY r.host, CASE WHEN r.route <> '' THEN r.route ELSE r.path END, CASE WHEN r.route <> '' THEN 0 ELSE 1 END) g
		) t WHERE (nm <= ? AND m > 0) OR (ne <= ? AND e > 0)`, append(args, overviewTop, overviewTop)...)
	if err != nil {
		return err
	}
	defer rows.Close()
	type ranked struct {
		rc     RouteCount
		nm, ne int64
	}
	var all []ranked
	for rows.Next() {
		var x ranked
		var isPath, m, e int64
		if err := rows.Scan(&x.rc.Host, &x.rc.Route, &isPath, &m, &e, &x.nm, &x.ne); err != nil {
			return err
		}
		x.rc.IsPath, x.rc.Malicious, x.rc.Errors = isPath == 1, int(m), int(e)
		all = append(all, x)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	slices.SortFunc(all, func(a, b ranked) int { return int(a.nm - b.nm) })
	for _, x := range all {
		if x.nm <= overviewTop && x.rc.Malicious > 0 {
			o.RoutesByMalicious = append(o.RoutesByMalicious, x.rc)
		}
	}
	slices.SortFunc(all, func(a, b ranked) int { return int(a.ne - b.ne) })
	for _, x := range all {
		if x.ne <= overviewTop && x.rc.Errors > 0 {
			o.RoutesByErrors = append(o.RoutesByErrors, x.rc)
		}
	}
	return nil
}

// overviewSessions finds the parts with most malicious requests in the period.
func (s *Store) overviewSessions(ctx context.Context, q *overviewSQL, o *Overview, _, _ int64) error {
	from, args := q.badRows()
	rows, err := s.query(ctx, `SELECT p.session, p.part, p."user", p.last_seen, m, e FROM (
		SELECT p.id AS id, `+sumMalicious+` AS m, `+sumErrors+` AS e FROM `+from+` GROUP BY p.id) t
		JOIN parts p ON p.id = t.id
		WHERE m > 0 ORDER BY m DESC, e DESC, p.session, p.part LIMIT ?`, append(args, overviewTop)...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var sc SessionCount
		var last, m, e int64
		if err := rows.Scan(&sc.Session, &sc.Part, &sc.User, &last, &m, &e); err != nil {
			return err
		}
		sc.LastSeen, sc.Malicious, sc.Errors = time.UnixMilli(last).UTC(), int(m), int(e)
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
		SELECT n.u AS u, min(r.time) AS f FROM
			(SELECT DISTINCT v.value AS u FROM parts p JOIN part_values v ON v.part_id = p.id AND v.kind = ` + itoa(kindUser) + `
				WHERE ` + c + `) n
			JOIN part_values v2 ON v2.kind = ` + itoa(kindUser) + ` AND v2.value = n.u
			JOIN parts p2 ON p2.id = v2.part_id AND ` + c2 + `
			JOIN requests r ON r.part_id = p2.id AND r.time >= ? AND r.time < ? AND r."user" = n.u
		WHERE NOT EXISTS (SELECT 1 FROM part_values o JOIN parts q ON q.id = o.part_id
			WHERE o.kind = ` + itoa(kindUser) + ` AND o.value = n.u AND q.first_seen < ?
				AND EXISTS (SELECT 1 FROM requests r3 WHERE r3.part_id = q.id AND r3.time < ? AND r3."user" = n.u))
		GROUP BY n.u) t
		ORDER BY f DESC, u LIMIT ?`
	return s.firstSeen(ctx, "user", &o.NewUsers, query,
		slices.Concat(cargs, c2args, []any{q.from, q.to, q.from, q.from, overviewNew})...)
}

// overviewAgents finds the user agents first seen in the period: part_values keeps for each
// part the time of its first request with a user agent, so the earliest of them over every
// part is the user agent's first request.
func (s *Store) overviewAgents(ctx context.Context, q *overviewSQL, o *Overview, _, _ int64) error {
	c, cargs := q.parts("p")
	query := `SELECT u, f, count(*) OVER () FROM (
		SELECT v.value AS u, min(v.first) AS f FROM parts p JOIN part_values v ON v.part_id = p.id AND v.kind = ` + itoa(kindUserAgent) + `
		WHERE ` + c + ` GROUP BY v.value) t
		WHERE f >= ? AND f < ? AND NOT EXISTS (SELECT 1 FROM part_values o
			WHERE o.kind = ` + itoa(kindUserAgent) + ` AND o.value = t.u AND o.first < ?)
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
