package store

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/apisessions/apisessions/internal/testutil"
	"github.com/apisessions/apisessions/sessions/record"
)

// base is the time every generated record is relative to.
var base = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func openTest(t testing.TB, now func() time.Time) *Store {
	t.Helper()
	return openTestWith(t, Options{Now: now})
}

// openTestWith opens a store with o, in a new directory unless o names one, without the
// retention job.
func openTestWith(t testing.TB, o Options) *Store {
	t.Helper()
	if o.Dir == "" && o.Driver != DriverPostgres {
		o.Dir = t.TempDir()
	}
	o.NoRetentionJob, o.Readers = true, 2
	s, err := Open(o)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// req builds a request record; opts adjust it.
func req(session, part string, at time.Duration, opts ...func(*record.Request)) *record.Request {
	r := &record.Request{
		Kind:      record.KindRequest,
		Session:   session,
		Part:      part,
		RequestID: session + "-" + at.String(),
		Time:      record.At(base.Add(at)),
		Method:    "GET",
		Scheme:    "https",
		Host:      "shop.example.com",
		Path:      "/api/items",
		Route:     "/api/items",
		Status:    200,
		ClientIP:  "203.0.113.7",
		UserAgent: "test/1.0",
		Key:       record.Key{Source: record.SourceBuiltin, Name: "cookie:sid"},
		Params:    map[string]string{"sid": "hmac:0011"},
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

func write(t testing.TB, s *Store, recs ...record.Record) {
	t.Helper()
	if err := s.Write(context.Background(), recs); err != nil {
		t.Fatalf("write: %v", err)
	}
}

func sessionIDs(p *Page) []string {
	out := make([]string, 0, len(p.Sessions))
	for _, r := range p.Sessions {
		out = append(out, r.Session+"/"+r.Part)
	}
	return out
}

func decodeReqs(t *testing.T, raw []json.RawMessage) []*record.Request {
	t.Helper()
	out := make([]*record.Request, 0, len(raw))
	for _, b := range raw {
		var r record.Request
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("decode stored request: %v", err)
		}
		out = append(out, &r)
	}
	return out
}

// drivers are the engines the store tests run on.
var drivers = []string{DriverSQLite, DriverPostgres}

// freshOptions names a new, empty database of the driver: a directory, or a PostgreSQL
// database of the test's own (skipped without a server, failed with CI=true).
func freshOptions(t testing.TB, driver string) Options {
	t.Helper()
	if driver == DriverPostgres {
		return Options{Driver: driver, DSN: testutil.PostgresDB(t)}
	}
	return Options{Driver: driver, Dir: t.TempDir()}
}

// forEachDriver runs body as a parallel subtest per driver, with a store open on a new
// database of it.
func forEachDriver(t *testing.T, body func(t *testing.T, s *Store)) {
	for _, d := range drivers {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			body(t, openTestWith(t, freshOptions(t, d)))
		})
	}
}
