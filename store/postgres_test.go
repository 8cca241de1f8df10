package store

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/apisessions/apisessions/internal/testutil"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sinks"
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

// TestPostgresMigrateContentKeys brings a version 1 PostgreSQL database, which holds a request
// stored twice (a retried batch), to the current version: every row gets its record's
// content key but the second copy, which stays (its part counts it), the longest part span
// is in meta, and the records written again are not stored a third time.
func TestPostgresMigrateContentKeys(t *testing.T) {
	t.Parallel()
	dsn := testutil.PostgresDB(t)
	db, err := openPG(dsn, true)
	if err != nil {
		t.Fatal(err)
	}
	r1, r2 := req("s_m", "2026-11-22", 0), req("s_m", "2026-11-22", time.Second)
	j1, _ := sinks.AppendRecord(nil, r1)
	j2, _ := sinks.AppendRecord(nil, r2)
	t1, t2 := ms(r1.Time), ms(r2.Time)
	day := t1 / dayMS
	for _, q := range []string{
		pgMigrations[0],
		`CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())`,
		`INSERT INTO schema_version (version) VALUES (1)`,
		fmt.Sprintf(`CREATE TABLE %s PARTITION OF requests FOR VALUES FROM (%d) TO (%d)`, partitionName(day), day*dayMS, (day+1)*dayMS),
		fmt.Sprintf(`INSERT INTO parts (id, session, part, first_seen, last_seen, rows, rows_last) VALUES (1, 's_m', '2026-11-22', %d, %d, 3, %d)`, t1, t2, t2),
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for _, row := range []struct {
		t int64
		j []byte
	}{{t1, j1}, {t2, j2}, {t2, j2}} {
		if _, err := db.Exec(`INSERT INTO requests (part_id, time, request_id, method, host, path, route, status, client_ip,
			"user", role, malicious, flows, attack_types, record) VALUES (1, $1, '', 'GET', '', '', '', 200, '', '', '', false, '', '', $2)`,
			row.t, row.j); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	s := openTestWith(t, Options{Driver: DriverPostgres, DSN: dsn})
	var keyed, unkeyed int
	if err := s.rdb.QueryRow(`SELECT count(rkey), count(*) - count(rkey) FROM requests`).Scan(&keyed, &unkeyed); err != nil {
		t.Fatal(err)
	}
	if keyed != 2 || unkeyed != 1 {
		t.Errorf("after migrating: %d rows with a content key, %d without; want 2 and the second copy", keyed, unkeyed)
	}
	var k []byte
	if err := s.rdb.QueryRow(`SELECT rkey FROM requests WHERE time = $1`, t1).Scan(&k); err != nil {
		t.Fatal(err)
	}
	if want := requestKey(j1); !bytes.Equal(k, want[:]) {
		t.Errorf("migrated content key %x; want %x, the key ingest computes", k, want)
	}
	var span int64
	if err := s.rdb.QueryRow(`SELECT value FROM meta WHERE key = 'max_span'`).Scan(&span); err != nil || span != t2-t1 {
		t.Errorf("max_span after migrating: %d (%v); want %d", span, err, t2-t1)
	}
	write(t, s, r1, r2)
	var n int
	if err := s.rdb.QueryRow(`SELECT count(*) FROM requests`).Scan(&n); err != nil || n != 3 {
		t.Errorf("after writing the stored records again: %d rows (%v); want the 3 already there", n, err)
	}
}
