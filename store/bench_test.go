package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/apisessions/apisessions/sessions/record"
)

// benchBigEnv asks for the big benchmark database: 1 100 000 requests in 110 000 parts. It is
// built once and cached under os.TempDir by schema version; without it the query benchmarks use
// a small database so that -benchtime 1x runs stay quick.
const benchBigEnv = "APISESSIONS_BENCH_BIG"

// benchGen names the generator's version in the cached databases' names: change it whenever
// genRequest or genBatches write other records.
const benchGen = 2

var (
	users  = []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"}
	routes = []string{"/api/items", "/api/items/{id}", "/api/cart", "/api/checkout", "/api/login", "/api/orders/{id}", "/api/search", "/"}
	flows  = []string{"", "", "", "", "auth", "billing", "account_management"}
)

// genRequest builds the i-th request of part p: realistic sizes (a few params, a user agent),
// a spread of methods, statuses, routes, IPs and users, one part in 40 with the role admin,
// and 1 request in 500 malicious.
func genRequest(rng *rand.Rand, p, i int, at time.Time) *record.Request {
	route := routes[rng.IntN(len(routes))]
	status := 200
	switch n := rng.IntN(100); {
	case n < 3:
		status = 500
	case n < 10:
		status = 404
	case n < 14:
		status = 401
	}
	r := &record.Request{
		Kind:          record.KindRequest,
		Session:       fmt.Sprintf("s_%020x", p),
		Part:          at.Format("2006-01-02"),
		RequestID:     fmt.Sprintf("%08x-%04x-req", p, i),
		Time:          record.At(at),
		Method:        []string{"GET", "GET", "GET", "POST", "PUT", "DELETE"}[rng.IntN(6)],
		Scheme:        "https",
		Host:          []string{"shop.example.com", "api.example.com"}[p%2],
		Path:          route + "/" + strconv.Itoa(rng.IntN(1000)),
		Route:         route,
		Status:        status,
		DurationMS:    float64(rng.IntN(500)) / 3,
		RequestBytes:  int64(rng.IntN(2000)),
		ResponseBytes: int64(rng.IntN(20000)),
		ClientIP:      fmt.Sprintf("10.%d.%d.%d", p%200, (p/200)%250, p%97),
		UserAgent:     "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
		Key:           record.Key{Source: record.SourceBuiltin, Name: "cookie:sid"},
		User:          users[p%len(users)] + strconv.Itoa(p%5000),
		Role:          "customer",
		Params:        map[string]string{"sid": "hmac:00112233445566778899aabbccddeeff", "product_id": strconv.Itoa(rng.IntN(500))},
	}
	if p%40 == 0 {
		r.Role = "admin"
	}
	if f := flows[rng.IntN(len(flows))]; f != "" {
		r.Flows = []string{f}
	}
	if rng.IntN(500) == 0 {
		r.Malicious = true
		r.Attack = &record.Attack{Source: "header", Types: []string{"sqli"}}
	}
	return r
}

// genBatches yields batches of 500 (the sinks' default batch size) for parts parts of perPart
// requests each, interleaved as live traffic is: many parts active at once.
func genBatches(parts, perPart int, start time.Time, fn func([]record.Record) error) error {
	rng := rand.New(rand.NewPCG(1, 2))
	const active = 1000
	batch := make([]record.Record, 0, DefaultBatch)
	for base := 0; base < parts; base += active {
		n := min(active, parts-base)
		for i := range perPart {
			for p := base; p < base+n; p++ {
				at := start.Add(time.Duration(p)*3*time.Second + time.Duration(i)*time.Second)
				batch = append(batch, genRequest(rng, p, i, at))
				if len(batch) == DefaultBatch {
					if err := fn(batch); err != nil {
						return err
					}
					batch = batch[:0]
				}
			}
		}
	}
	if len(batch) > 0 {
		return fn(batch)
	}
	return nil
}

// DefaultBatch is the batch size of the benchmarks: the sinks' default.
const DefaultBatch = 500

var benchStart = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

// genSession is the snapshot the engine emits for part p after its i-th request.
func genSession(p, i int, at time.Time) *record.Session {
	return &record.Session{
		Kind:       record.KindSession,
		Session:    fmt.Sprintf("s_%020x", p),
		Part:       at.Format("2006-01-02"),
		FirstSeen:  record.At(at.Add(-time.Duration(i) * time.Second)),
		LastSeen:   record.At(at),
		Requests:   i + 1,
		Key:        record.Key{Source: record.SourceBuiltin, Name: "cookie:sid"},
		User:       users[p%len(users)] + strconv.Itoa(p%5000),
		IPs:        []string{fmt.Sprintf("10.%d.%d.%d", p%200, (p/200)%250, p%97)},
		UserAgents: []string{"Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0"},
		Methods:    map[string]int{"GET": (i + 1) / 2, "POST": (i + 1) - (i+1)/2},
		Statuses:   map[string]int{"200": i + 1},
	}
}

// BenchmarkIngest measures Write of 500-record batches (the sinks' default) in three shapes:
//
//   - known_parts: as the engine emits them for live traffic: 50 parts each send 9 requests and
//     one session snapshot (a part making 9 requests between two snapshot intervals); parts
//     come back every 40 batches, so most of their values are already stored.
//   - new_parts: 500 parts never seen before, one request each (the big database build).
//   - flood: a flood of distinct session keys: 250 new parts with one request each, and the
//     final session records (end reason evicted) of 250 parts whose requests came 40 batches
//     before, as the engine evicts them from its full part table.
func BenchmarkIngest(b *testing.B) {
	b.Run("known_parts", benchIngestKnown)
	b.Run("new_parts", func(b *testing.B) { benchIngestNew(b, false) })
	b.Run("flood", func(b *testing.B) { benchIngestNew(b, true) })
}

func benchIngestKnown(b *testing.B) {
	s, err := Open(Options{Dir: b.TempDir(), NoRetentionJob: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close(context.Background())
	rng := rand.New(rand.NewPCG(3, 4))
	// Pre-build batches so the benchmark measures the store, not the generator.
	const (
		nb      = 40
		parts   = 50
		perPart = DefaultBatch/parts - 1
	)
	batches := make([][]record.Record, nb)
	requests := 0
	for i := range batches {
		for j := range parts * perPart {
			p := i*parts + j%parts
			batches[i] = append(batches[i], genRequest(rng, p, j/parts, benchStart.Add(time.Duration(i*DefaultBatch+j)*time.Millisecond)))
			requests++
		}
		for p := i * parts; p < (i+1)*parts; p++ {
			batches[i] = append(batches[i], genSession(p, perPart-1, benchStart.Add(time.Duration(i*DefaultBatch+DefaultBatch)*time.Millisecond)))
		}
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for b.Loop() {
		batch := batches[n%nb]
		if n >= nb {
			b.StopTimer()
			batch = laterRound(batch, n/nb, nb)
			b.StartTimer()
		}
		if err := s.Write(ctx, batch); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64(n*DefaultBatch)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(n*requests/nb)/b.Elapsed().Seconds(), "requests/s")
}

// laterRound is batch as it comes again in round r of a benchmark that cycles through nb
// batches: the same parts and values, each request nb batches' worth of milliseconds later, so
// that the store takes them as new requests (it stores each request record once).
func laterRound(batch []record.Record, r, nb int) []record.Record {
	out := make([]record.Record, len(batch))
	shift := time.Duration(r*nb*DefaultBatch) * time.Millisecond
	for i, rec := range batch {
		if q, ok := rec.(*record.Request); ok {
			c := *q
			c.Time = record.At(q.Time.Add(shift))
			rec = &c
		}
		out[i] = rec
	}
	return out
}

// floodLag is how many batches before its final record a flood part's request came.
const floodLag = 40

// benchIngestNew writes batches of parts never seen before; with flood, half of each batch is
// the final session records of earlier parts. The batches are built while the timer is
// stopped.
func benchIngestNew(b *testing.B, flood bool) {
	s, err := Open(Options{Dir: b.TempDir(), NoRetentionJob: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close(context.Background())
	rng := rand.New(rand.NewPCG(7, 8))
	perBatch := DefaultBatch
	if flood {
		perBatch = DefaultBatch / 2
	}
	ctx := context.Background()
	batch := make([]record.Record, 0, DefaultBatch)
	n, requests, records := 0, 0, 0
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		batch = batch[:0]
		for j := range perBatch {
			p := n*perBatch + j
			at := benchStart.Add(time.Duration(p) * time.Millisecond)
			batch = append(batch, genRequest(rng, p, 0, at))
			if flood && n >= floodLag {
				q := p - floodLag*perBatch
				f := genSession(q, 0, benchStart.Add(time.Duration(q)*time.Millisecond))
				f.Final, f.EndReason = true, record.EndEvicted
				batch = append(batch, f)
			}
		}
		requests += perBatch
		records += len(batch)
		b.StartTimer()
		if err := s.Write(ctx, batch); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(requests)/b.Elapsed().Seconds(), "requests/s")
}

var (
	benchDBOnce sync.Map // size -> *sync.Once
	benchDBErr  sync.Map
)

// benchDB returns the directory of a database with parts parts of perPart requests, built once
// per schema version, generator and size and kept under os.TempDir.
func benchDB(b *testing.B, parts, perPart int) string {
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("apisessions-bench-v%d-g%d-%dx%d", SchemaVersion, benchGen, parts, perPart))
	key := dir
	once, _ := benchDBOnce.LoadOrStore(key, &sync.Once{})
	once.(*sync.Once).Do(func() {
		if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
			return
		}
		os.RemoveAll(dir)
		start := time.Now()
		s, err := Open(Options{Dir: dir, NoRetentionJob: true})
		if err == nil {
			err = genBatches(parts, perPart, benchStart, func(batch []record.Record) error {
				return s.Write(context.Background(), batch)
			})
			if err == nil {
				_, err = s.wdb.Exec("ANALYZE")
			}
			err = errorsJoin(err, s.Close(context.Background()))
		}
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, ".complete"), nil, 0o600)
		}
		if err != nil {
			benchDBErr.Store(key, err)
			return
		}
		b.Logf("built %d requests in %d parts in %s (%.0f records/s)", parts*perPart, parts,
			time.Since(start).Round(time.Second), float64(parts*perPart)/time.Since(start).Seconds())
	})
	if err, ok := benchDBErr.Load(key); ok {
		b.Fatal(err)
	}
	return dir
}

func errorsJoin(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// scanBound is the deadline the explore API gives a list that scans (explore's default
// ScanTimeout); the benchmarks give it too, so that they measure what the API answers.
const scanBound = 100 * time.Millisecond

// openQueryDB opens the query benchmarks' database: 110 000 parts of 10 requests over about
// four days with APISESSIONS_BENCH_BIG, else 2000 parts.
//
// With APISESSIONS_BENCH_PG set to the DSN of an existing PostgreSQL database, that database is
// used instead; it is filled once (meta notes it) and kept.
func openQueryDB(b *testing.B) (s *Store, parts int) {
	parts = 2000
	if os.Getenv(benchBigEnv) != "" {
		parts = 110_000
	}
	if dsn := os.Getenv(benchPGEnv); dsn != "" {
		return openQueryPG(b, dsn, parts), parts
	}
	s, err := Open(Options{Dir: benchDB(b, parts, 10), NoRetentionJob: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close(context.Background()) })
	return s, parts
}

// listTimed runs q as the explore API does: planned, then run, under scanBound when it scans.
// An interrupted scan returns context.DeadlineExceeded.
func listTimed(s *Store, q ListQuery) (d time.Duration, scans bool, err error) {
	t0 := time.Now()
	p, err := s.PlanList(context.Background(), q)
	if err != nil {
		return 0, false, err
	}
	ctx := context.Background()
	if p.Scans() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, scanBound)
		defer cancel()
	}
	_, err = p.Run(ctx)
	return time.Since(t0), p.Scans(), err
}

// BenchmarkQuery measures the list and part queries and reports their latency percentiles,
// and for a list that scans (scans = 1) how many runs were interrupted at scanBound.
func BenchmarkQuery(b *testing.B) {
	s, parts := openQueryDB(b)
	ctx := context.Background()
	mid := benchStart.Add(time.Duration(parts/2) * 3 * time.Second)
	lists := []struct {
		name string
		f    Filter
	}{
		{"list/none", Filter{}},
		{"list/user", Filter{User: "carol2"}},
		{"list/user_rare", Filter{User: "nobody"}},
		{"list/role_admin", Filter{Role: "admin"}},
		{"list/ip", Filter{IP: "10.7.0.7"}},
		{"list/method", Filter{Method: "DELETE"}},
		{"list/status_5xx", Filter{Status: Status{Class: 5, Set: true}}},
		{"list/route", Filter{Route: "/api/checkout"}},
		{"list/path_prefix", Filter{Path: "/api/orders/"}},
		{"list/flow", Filter{Flow: "billing"}},
		{"list/malicious", Filter{Malicious: true}},
		{"list/request_id", Filter{RequestID: fmt.Sprintf("%08x-%04x-req", parts/3, 2)}},
		{"list/host", Filter{Host: "api.example.com"}},
		{"list/interval_1h", Filter{From: mid, To: mid.Add(time.Hour)}},
		{"list/interval_user_status", Filter{From: mid, To: mid.Add(24 * time.Hour), User: "alice0", Status: Status{Class: 4, Set: true}}},
		{"list/method_status_route", Filter{Method: "POST", Status: Status{Code: 500, Set: true}, Route: "/api/cart"}},
		{"list/method_status_class_route", Filter{Method: "POST", Status: Status{Class: 5, Set: true}, Route: "/api/cart"}},
		{"list/status_route", Filter{Status: Status{Code: 401, Set: true}, Route: "/api/search"}},
		{"list/path_absent", Filter{Path: "/admin/"}},
		{"list/status_2xx_path_past_directory", Filter{Status: Status{Class: 2, Set: true}, Path: "/api/items/x"}},
		{"list/interval_24h", Filter{From: mid, To: mid.Add(24 * time.Hour)}},
		{"list/interval_1h_method", Filter{From: mid, To: mid.Add(time.Hour), Method: "DELETE"}},
	}
	for _, tc := range lists {
		b.Run(tc.name, func(b *testing.B) {
			var lat []time.Duration
			interrupted, scans := 0, false
			for b.Loop() {
				d, sc, err := listTimed(s, ListQuery{Filter: tc.f})
				switch {
				case sc && errors.Is(err, context.DeadlineExceeded):
					interrupted++
				case err != nil:
					b.Fatal(err)
				}
				lat, scans = append(lat, d), sc
			}
			reportLatency(b, lat)
			reportScans(b, scans, interrupted)
		})
	}
	b.Run("list/next_page", func(b *testing.B) {
		first, err := s.List(ctx, ListQuery{Filter: Filter{Method: "POST"}})
		if err != nil {
			b.Fatal(err)
		}
		var lat []time.Duration
		for b.Loop() {
			d, _, err := listTimed(s, ListQuery{Filter: Filter{Method: "POST"}, Cursor: first.Next})
			if err != nil {
				b.Fatal(err)
			}
			lat = append(lat, d)
		}
		reportLatency(b, lat)
	})
	rng := rand.New(rand.NewPCG(5, 6))
	for _, tc := range []struct {
		name string
		f    Filter
	}{
		{"detail/all", Filter{}},
		{"detail/status", Filter{Status: Status{Class: 2, Set: true}}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var lat []time.Duration
			for b.Loop() {
				p := rng.IntN(parts)
				t0 := time.Now()
				if _, err := s.Part(ctx, fmt.Sprintf("s_%020x", p), benchStart.Add(time.Duration(p)*3*time.Second).Format("2006-01-02"), PartQuery{Filter: tc.f}); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			reportLatency(b, lat)
		})
	}
}

// reportScans reports whether the list scans (1) or an index lists its candidates (0), and
// for a scan how many runs were interrupted at scanBound.
func reportScans(b *testing.B, scans bool, interrupted int) {
	if !scans {
		b.ReportMetric(0, "scans")
		return
	}
	b.ReportMetric(1, "scans")
	b.ReportMetric(float64(interrupted), "interrupted")
}

// filterDims are the filters of the session list (docs/api.md), each absent or set to the
// values listed; a combination takes one entry of each.
func filterDims(parts int) [][]namedFilter {
	mid := benchStart.Add(time.Duration(parts/2) * 3 * time.Second)
	absent := namedFilter{}
	return [][]namedFilter{
		{absent, {"interval", func(f *Filter) { f.From, f.To = mid, mid.Add(time.Hour) }}},
		{absent, {"user", func(f *Filter) { f.User = "carol2" }}},
		{absent, {"role", func(f *Filter) { f.Role = "admin" }}},
		{absent, {"flow", func(f *Filter) { f.Flow = "billing" }}},
		{absent, {"ip", func(f *Filter) { f.IP = "10.7.0.7" }}},
		{absent, {"request_id", func(f *Filter) { f.RequestID = fmt.Sprintf("%08x-%04x-req", parts/3, 2) }}},
		{absent, {"method", func(f *Filter) { f.Method = "DELETE" }}},
		{absent, {"2xx", func(f *Filter) { f.Status = Status{Class: 2, Set: true} }},
			{"401", func(f *Filter) { f.Status = Status{Code: 401, Set: true} }}},
		{absent, {"host", func(f *Filter) { f.Host = "api.example.com" }}},
		{absent, {"path", func(f *Filter) { f.Path = "/api/orders/" }},
			{"path_past_directory", func(f *Filter) { f.Path = "/api/items/x" }},
			{"route", func(f *Filter) { f.Route = "/api/checkout" }}},
		{absent, {"malicious", func(f *Filter) { f.Malicious = true }}},
	}
}

// namedFilter sets one filter of a combination; the zero value leaves it absent.
type namedFilter struct {
	name string
	set  func(*Filter)
}

// filterCombinations lists every combination of dims, named by the filters set.
func filterCombinations(dims [][]namedFilter) (names []string, filters []Filter) {
	names, filters = []string{""}, []Filter{{}}
	for _, dim := range dims {
		var nn []string
		var ff []Filter
		for i, f := range filters {
			for _, v := range dim {
				g, name := f, names[i]
				if v.set != nil {
					v.set(&g)
					name += "+" + v.name
				}
				nn, ff = append(nn, name), append(ff, g)
			}
		}
		names, filters = nn, ff
	}
	return names, filters
}

// BenchmarkQueryCombinations runs every combination of the session list's filters (2^9 x 3 x 4
// = 6144) as the explore API does, once per iteration, and reports: for the lists an index
// answers, the 99th percentile and the maximum of their runs (served-p99-ms, served-max-ms);
// for those that scan, how many there are, the 99th percentile and the maximum of the runs
// that answered and how many of those took longer than 100 ms, the runs interrupted at
// scanBound and the latest interruption (interrupted-max-ms, the plan's probes included).
// The slowest lists an index answers are logged.
func BenchmarkQueryCombinations(b *testing.B) {
	s, parts := openQueryDB(b)
	names, filters := filterCombinations(filterDims(parts))
	worst := make([]time.Duration, len(filters))
	var served, answered []time.Duration
	var interruptedMax time.Duration
	scanning, interrupted := map[int]bool{}, 0
	for b.Loop() {
		for i, f := range filters {
			d, scans, err := listTimed(s, ListQuery{Filter: f})
			switch {
			case scans && errors.Is(err, context.DeadlineExceeded):
				interrupted++
				interruptedMax = max(interruptedMax, d)
			case err != nil:
				b.Fatalf("%s: %v", names[i], err)
			case scans:
				answered = append(answered, d)
			default:
				served = append(served, d)
				worst[i] = max(worst[i], d)
			}
			if scans {
				scanning[i] = true
			}
		}
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	for _, runs := range []struct {
		unit string
		lat  []time.Duration
	}{{"served", served}, {"scan-answered", answered}} {
		if len(runs.lat) > 0 {
			slices.Sort(runs.lat)
			b.ReportMetric(ms(runs.lat[len(runs.lat)*99/100]), runs.unit+"-p99-ms")
			b.ReportMetric(ms(runs.lat[len(runs.lat)-1]), runs.unit+"-max-ms")
		}
	}
	slow, _ := slices.BinarySearch(answered, 100*time.Millisecond)
	b.ReportMetric(float64(len(answered)-slow), "scan-answered-over-100ms")
	b.ReportMetric(float64(len(scanning)), "scanning-combinations")
	b.ReportMetric(float64(interrupted), "interrupted")
	b.ReportMetric(ms(interruptedMax), "interrupted-max-ms")
	order := make([]int, len(filters))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(x, y int) int { return cmp.Compare(worst[y], worst[x]) })
	for _, i := range order[:min(10, len(order))] {
		b.Logf("served in at most %6.1f ms: %s", ms(worst[i]), names[i])
	}
}

// reportLatency reports the 50th, 95th and 99th percentiles of the runs (run with e.g.
// -benchtime 200x for the upper ones to mean something).
func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	for _, q := range []struct {
		unit string
		p    int
	}{{"p50-ms", 50}, {"p95-ms", 95}, {"p99-ms", 99}} {
		b.ReportMetric(float64(lat[(len(lat)*q.p)/100].Microseconds())/1000, q.unit)
	}
}

// benchPGEnv names the PostgreSQL database of the query benchmarks (see openQueryDB).
const benchPGEnv = "APISESSIONS_BENCH_PG"

func openQueryPG(b *testing.B, dsn string, parts int) *Store {
	s, err := Open(Options{Driver: DriverPostgres, DSN: dsn, NoRetentionJob: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close(context.Background()) })
	mark := fmt.Sprintf("bench_g%d_%dx10", benchGen, parts)
	var done int
	if err := s.wdb.QueryRow(`SELECT count(*) FROM meta WHERE key = $1`, mark).Scan(&done); err != nil {
		b.Fatal(err)
	}
	if done == 0 {
		start := time.Now()
		err := genBatches(parts, 10, benchStart, func(batch []record.Record) error {
			return s.Write(context.Background(), batch)
		})
		if err == nil {
			// As autovacuum leaves a store once the writes move on to newer parts: planner
			// statistics, and pages marked all-visible, which index-only probes rely on.
			_, err = s.wdb.Exec("VACUUM ANALYZE")
		}
		if err == nil {
			_, err = s.wdb.Exec(`INSERT INTO meta (key, value) VALUES ($1, 1)`, mark)
		}
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("built %d requests in %d parts in %s (%.0f records/s)", parts*10, parts,
			time.Since(start).Round(time.Second), float64(parts*10)/time.Since(start).Seconds())
	}
	return s
}
