package store

import (
	"context"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/apisessions/apisessions/internal/testutil"
	"github.com/apisessions/apisessions/sessions/record"
)

// TestPostgresWritersConcurrently commits batches from three writers at once on one
// database, every batch touching parts the others touch too: no writer fails (a deadlock
// would fail one), and every part reads as one writer writing everything makes it.
func TestPostgresWritersConcurrently(t *testing.T) {
	t.Parallel()
	recs := mergeRequests(3000)
	now := func() time.Time { return base.Add(time.Hour) }
	one := freshOptions(t, DriverPostgres)
	one.Now = now
	want := openTestWith(t, one)
	write(t, want, recs...)
	wantPage, wantViews := storedParts(t, want)

	o := freshOptions(t, DriverPostgres)
	o.Now = now
	rng := rand.New(rand.NewPCG(5, 6))
	batches := splitBatches(recs, rng.Perm(len(recs)), rng)
	var wg sync.WaitGroup
	errs := make(chan error, len(batches))
	var stores []*Store
	for w := range 3 {
		s := openTestWith(t, o)
		stores = append(stores, s)
		wg.Go(func() {
			for i := w; i < len(batches); i += 3 {
				if err := s.Write(context.Background(), batches[i]); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("a writer failed: %v", err)
	}
	page, views := storedParts(t, stores[0])
	eq := cmp.Comparer(func(a, b record.Time) bool { return a.Equal(b.Time) })
	if diff := cmp.Diff(wantPage, page, eq); diff != "" {
		t.Errorf("list after concurrent writers differs from one writer's (-want +got):\n%s", diff)
	}
	for k, v := range views {
		v.Requests, wantViews[k].Requests = nil, nil
	}
	if diff := cmp.Diff(wantViews, views, eq); diff != "" {
		t.Errorf("parts after concurrent writers differ from one writer's (-want +got):\n%s", diff)
	}
}

// TestPostgresOpenConcurrently opens several stores on one new database at once, as replicas
// starting together do: each succeeds and each schema step is applied once.
func TestPostgresOpenConcurrently(t *testing.T) {
	t.Parallel()
	dsn := testutil.PostgresDB(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			s, err := Open(Options{Driver: DriverPostgres, DSN: dsn, NoRetentionJob: true})
			if err == nil {
				err = s.Close(context.Background())
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("store %d: %v", i, err)
		}
	}
	s := openTestWith(t, Options{Driver: DriverPostgres, DSN: dsn})
	var n, v int
	if err := s.rdb.QueryRow(`SELECT count(*), max(version) FROM schema_version`).Scan(&n, &v); err != nil {
		t.Fatal(err)
	}
	if n != len(pgMigrations) || v != len(pgMigrations) {
		t.Errorf("schema_version holds %d steps up to %d; want %d, each once", n, v, len(pgMigrations))
	}
}

// TestPostgresHostileText stores values PostgreSQL text could not hold (NUL, invalid UTF-8)
// and finds them again by filter.
func TestPostgresHostileText(t *testing.T) {
	t.Parallel()
	s := openTestWith(t, freshOptions(t, DriverPostgres))
	user := "nul\x00and\xffbad"
	write(t, s, req("s_\x00", "2026-11-22", 0, func(r *record.Request) { r.User, r.Path = user, "/a\x00b" }))
	p, err := s.List(context.Background(), ListQuery{Filter: Filter{User: user, Path: "/a\x00"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Sessions) != 1 || p.Sessions[0].User != user || !strings.HasPrefix(p.Sessions[0].Session, "s_") {
		t.Errorf("hostile values: %+v; want the one part, its user intact", p.Sessions)
	}
}

// TestRedactDSN keeps passwords out of messages.
func TestRedactDSN(t *testing.T) {
	t.Parallel()
	for _, dsn := range []string{
		"postgres://u:s3cret@h:5432/db?sslmode=require",
		"postgres://u@h/db?password=s3cret",
		"host=h user=u password=s3cret dbname=db",
		"postgres://u:s3cret@h:bad port/db",
	} {
		if got := RedactDSN(dsn); strings.Contains(got, "s3cret") {
			t.Errorf("RedactDSN(%q) = %q; the password shows", dsn, got)
		}
	}
	if _, err := Open(Options{Driver: DriverPostgres, DSN: "postgres://u:s3cret@127.0.0.1:1/db?connect_timeout=1"}); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("open of an unreachable server: %v; want an error without the password", err)
	}
}
