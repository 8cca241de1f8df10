package store

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// postgresDialect is a PostgreSQL database shared by replicas. Text from traffic goes in
// bytea columns: they hold any bytes (text refuses NUL and invalid UTF-8) and compare byte by
// byte as SQLite compares text, so filters and ranges answer the same on both engines.
func postgresDialect() *dialect {
	return &dialect{
		name:     DriverPostgres,
		insert:   "INSERT",
		rebind:   rebindDollar,
		text:     func(s string) any { return []byte(s) },
		noIndex:  "",
		perRow:   " OFFSET 0",
		flowCond: "position(? in ','::bytea || r.flows || ','::bytea) > 0",
		instr:    func(h, n string) string { return "position(" + n + " in " + h + ")" },
		postgres: true,
		least:    "LEAST",
		sizes:    stmtSizes{}, // a batch is one statement of arrays (bulk.go)
	}
}

// rebindDollar numbers the ? placeholders of q as $1, $2, …; the store's queries hold no ?
// inside quotes.
func rebindDollar(q string) string {
	if !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// pgMigrations bring a PostgreSQL schema from version i to i+1 (table schema_version).
// Append only. The schema is SQLite's at version 3, with requests partitioned by day of time.
var pgMigrations = []string{
	`CREATE TABLE parts (
		id             BIGSERIAL PRIMARY KEY,
		session        BYTEA  NOT NULL,
		part           BYTEA  NOT NULL,
		first_seen     BIGINT NOT NULL,
		last_seen      BIGINT NOT NULL,
		rows           BIGINT NOT NULL DEFAULT 0,
		rows_malicious BIGINT NOT NULL DEFAULT 0,
		rows_bytes_in  BIGINT NOT NULL DEFAULT 0,
		rows_bytes_out BIGINT NOT NULL DEFAULT 0,
		rows_last      BIGINT NOT NULL DEFAULT 0,
		"user"         BYTEA  NOT NULL DEFAULT '',
		user_at        BIGINT NOT NULL DEFAULT 0,
		user_rid       BYTEA  NOT NULL DEFAULT '',
		role           BYTEA  NOT NULL DEFAULT '',
		role_at        BIGINT NOT NULL DEFAULT 0,
		role_rid       BYTEA  NOT NULL DEFAULT '',
		key_source     BYTEA  NOT NULL DEFAULT '',
		key_name       BYTEA  NOT NULL DEFAULT '',
		key_at         BIGINT NOT NULL DEFAULT 0,
		key_rid        BYTEA  NOT NULL DEFAULT '',
		UNIQUE (session, part)
	);
	CREATE INDEX parts_recent ON parts (last_seen, session, part, first_seen);

	CREATE TABLE requests (
		id           BIGSERIAL,
		part_id      BIGINT  NOT NULL,
		time         BIGINT  NOT NULL,
		request_id   BYTEA   NOT NULL,
		method       BYTEA   NOT NULL,
		host         BYTEA   NOT NULL,
		path         BYTEA   NOT NULL,
		route        BYTEA   NOT NULL,
		status       INTEGER NOT NULL,
		client_ip    BYTEA   NOT NULL,
		"user"       BYTEA   NOT NULL,
		role         BYTEA   NOT NULL,
		malicious    BOOLEAN NOT NULL,
		flows        BYTEA   NOT NULL,
		attack_types BYTEA   NOT NULL,
		record       BYTEA   NOT NULL
	) PARTITION BY RANGE (time);
	CREATE INDEX requests_part ON requests (part_id, time);
	CREATE INDEX requests_request_id ON requests (request_id) WHERE request_id <> '';

	CREATE TABLE part_values (
		part_id BIGINT  NOT NULL,
		kind    INTEGER NOT NULL,
		value   BYTEA   NOT NULL,
		count   BIGINT  NOT NULL DEFAULT 0,
		first   BIGINT  NOT NULL DEFAULT 0,
		PRIMARY KEY (part_id, kind, value)
	);
	CREATE INDEX part_values_lookup ON part_values (kind, value, part_id);

	CREATE TABLE meta (
		key   TEXT PRIMARY KEY,
		value BIGINT NOT NULL
	);

	CREATE TABLE batches (
		id BYTEA  PRIMARY KEY,
		at BIGINT NOT NULL
	);
	CREATE INDEX batches_at ON batches (at);`,

	// Version 2: request rows stored once by content (SQLite's version 4). sha256 of the stored
	// record is the key ingest computes (requestKey). part_values leaves room in its pages, so
	// that the update of a count stays in the row's page and touches no index (a HOT update).
	`ALTER TABLE part_values SET (fillfactor = 70);
	ALTER TABLE requests ADD COLUMN rkey BYTEA;
	UPDATE requests SET rkey = substr(sha256(record), 1, 16);
	UPDATE requests r SET rkey = NULL WHERE EXISTS (SELECT 1 FROM requests o WHERE o.part_id = r.part_id
		AND o.time = r.time AND o.rkey = r.rkey AND o.id < r.id);
	DROP INDEX requests_part;
	CREATE UNIQUE INDEX requests_part ON requests (part_id, time, rkey);
	DROP TABLE batches;
	INSERT INTO meta (key, value) SELECT 'max_span', coalesce(max(last_seen - first_seen), 0) FROM parts
		ON CONFLICT (key) DO NOTHING;
	CREATE INDEX parts_malicious ON parts (last_seen, session, part, first_seen) WHERE rows_malicious > 0;`,

	// Version 3: parts sum the values their requests' responses linked (stitching).
	`ALTER TABLE parts ADD COLUMN rows_linked BIGINT NOT NULL DEFAULT 0;`,

	// Version 4: risk points per signal and the score (SQLite's version 6).
	riskColumns("DOUBLE PRECISION", "BIGINT") + `
	CREATE INDEX parts_risky ON parts (last_seen, session, part) WHERE risk > 0;`,

	// Version 5: parts list their requests' TLS fingerprints (SQLite's version 7).
	// PostgreSQL's JSON refuses to decode the escape \u0000, which a record may hold in any
	// string: it is read as U+FFFD, so that only a fingerprint holding a NUL itself is listed
	// differently.
	`INSERT INTO part_values (part_id, kind, value)
	SELECT DISTINCT part_id, f.kind, substring(convert_to(f.value, 'UTF8') from 1 for ` + strconv.Itoa(maxValueLen) + `)
	FROM (SELECT part_id, 14 AS kind, replace(convert_from(record, 'UTF8'), '\u0000', '\ufffd')::json ->> 'ja3' AS value
			FROM requests WHERE position('"ja3":'::bytea in record) > 0
		UNION ALL
		SELECT part_id, 15, replace(convert_from(record, 'UTF8'), '\u0000', '\ufffd')::json ->> 'ja4'
			FROM requests WHERE position('"ja4":'::bytea in record) > 0) AS f
	WHERE f.value IS NOT NULL AND f.value <> ''
	ON CONFLICT DO NOTHING;`,

	// Version 6: parts by user, by role, and those with several (SQLite's version 8).
	mixedStep,
}

// pgLockMigrate is the advisory lock key under which a store migrates the schema, so that
// replicas starting at once apply each step once.
const pgLockMigrate = 0x61706973_0001

// pgLockPartitions serialises the creation of request partitions between writers.
const pgLockPartitions = 0x61706973_0002

// migratePostgres applies the steps a database lacks, each in a transaction with its version
// row, holding the migration lock on one connection throughout.
func migratePostgres(ctx context.Context, db *sql.DB) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, int64(pgLockMigrate)); err != nil {
		return fmt.Errorf("lock for migration: %w", err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, int64(pgLockMigrate))
	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("create schema_version: %w", err)
	}
	var v int
	if err := conn.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_version`).Scan(&v); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if v > len(pgMigrations) {
		return fmt.Errorf("schema version %d is newer than this build knows (%d); run a newer apisessions", v, len(pgMigrations))
	}
	for ; v < len(pgMigrations); v++ {
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("migrate to %d: %w", v+1, err)
		}
		if _, err := tx.ExecContext(ctx, pgMigrations[v]); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate to %d: %w", v+1, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES ($1)`, v+1); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate to %d: %w", v+1, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migrate to %d: %w", v+1, err)
		}
	}
	return nil
}

// dayMS is a day in milliseconds: request partitions cover one UTC day of time each.
const dayMS = int64(24 * time.Hour / time.Millisecond)

// partitions remembers the request partitions known to exist (writer only, under wmu).
type partitions struct {
	mu   sync.Mutex
	days map[int64]bool
}

// partitionName names the partition of the UTC day that begins at day*dayMS.
func partitionName(day int64) string {
	if day < 0 {
		return "requests_m" + strconv.FormatInt(-day, 10)
	}
	return "requests_d" + strconv.FormatInt(day, 10)
}

// ensurePartitions creates the partitions of the days reqs fall on, and the next day's, that
// are not known to exist, in a short transaction of their own under an advisory lock: never
// inside a batch's transaction, whose row locks a partition's creation could then wait on.
func (s *Store) ensurePartitions(ctx context.Context, reqs []encodedRequest) error {
	p := s.pgParts
	p.mu.Lock()
	defer p.mu.Unlock()
	var missing []int64
	for i := range reqs {
		d := floorDiv(reqs[i].t, dayMS)
		for _, day := range []int64{d, d + 1} {
			if !p.days[day] && !containsDay(missing, day) {
				missing = append(missing, day)
			}
		}
	}
	if len(missing) == 0 {
		return nil
	}
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: create partitions: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(pgLockPartitions)); err != nil {
		return fmt.Errorf("store: create partitions: %w", err)
	}
	for _, day := range missing {
		q := fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s PARTITION OF requests FOR VALUES FROM (%d) TO (%d)`,
			partitionName(day), day*dayMS, (day+1)*dayMS)
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("store: create partition %s: %w", partitionName(day), err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: create partitions: %w", err)
	}
	for _, day := range missing {
		p.days[day] = true
	}
	return nil
}

func containsDay(days []int64, d int64) bool {
	for _, x := range days {
		if x == d {
			return true
		}
	}
	return false
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// dropPartitions drops the request partitions that end before cutoff: retention then deletes
// whole days at once, and the per-part deletion that follows finds their rows gone.
func (s *Store) dropPartitions(ctx context.Context, cutoff int64) error {
	rows, err := s.rdb.QueryContext(ctx, `SELECT c.relname FROM pg_inherits i
		JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
		WHERE p.relname = 'requests'`)
	if err != nil {
		return fmt.Errorf("store: list partitions: %w", err)
	}
	var old []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return fmt.Errorf("store: list partitions: %w", err)
		}
		if day, ok := partitionDay(name); ok && (day+1)*dayMS <= cutoff {
			old = append(old, name)
		}
	}
	rows.Close()
	for _, name := range old {
		// The name is one partitionName made, checked by partitionDay.
		if _, err := s.wdb.ExecContext(ctx, `DROP TABLE IF EXISTS `+name); err != nil {
			return fmt.Errorf("store: drop partition %s: %w", name, err)
		}
		if day, ok := partitionDay(name); ok {
			s.pgParts.mu.Lock()
			delete(s.pgParts.days, day)
			s.pgParts.mu.Unlock()
		}
	}
	return nil
}

// partitionDay reads the day back from a partition's name.
func partitionDay(name string) (int64, bool) {
	switch {
	case strings.HasPrefix(name, "requests_d"):
		d, err := strconv.ParseInt(name[len("requests_d"):], 10, 64)
		return d, err == nil
	case strings.HasPrefix(name, "requests_m"):
		d, err := strconv.ParseInt(name[len("requests_m"):], 10, 64)
		return -d, err == nil
	}
	return 0, false
}

// openPostgres connects to the database at o.DSN and brings its schema up to date. The
// writer and the readers are two pools of one database.
func (s *Store) openPostgres(o Options) error {
	ctx := context.Background()
	db, err := openPG(o.DSN, true)
	if err != nil {
		return fmt.Errorf("store: postgres %s: %w", RedactDSN(o.DSN), err)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return fmt.Errorf("store: postgres %s: %w", RedactDSN(o.DSN), err)
	}
	if err := migratePostgres(ctx, db); err != nil {
		db.Close()
		return fmt.Errorf("store: postgres %s: %w", RedactDSN(o.DSN), err)
	}
	db.SetMaxOpenConns(2)
	s.wdb = db
	s.path = RedactDSN(o.DSN)
	if err := s.prepare(ctx); err != nil {
		db.Close()
		return err
	}
	s.rdb, err = openPG(o.DSN, false)
	if err != nil {
		s.stmt.close()
		db.Close()
		return fmt.Errorf("store: postgres %s: %w", RedactDSN(o.DSN), err)
	}
	return nil
}

// openPG opens a pool of connections to dsn whose sessions run without JIT compilation and
// parallel workers: the store's statements are short and bounded (a page, a chunk of parts),
// and compiling them or starting workers cost more than they save (tens of milliseconds on a
// list that takes a few). The readers plan every statement for its own values (custom plans:
// a generic plan of a list, knowing none of its bounds, may join whole tables); the writer's
// statements keep the server's default, under which the batch statement, whose plan is the
// same whatever the batch holds, is planned once per connection instead of once per batch
// (half a millisecond of the server's CPU).
func openPG(dsn string, writer bool) (*sql.DB, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx's parse errors quote the connection string.
		return nil, fmt.Errorf("the dsn does not parse; check its form (postgres://user:password@host:5432/db?sslmode=…)")
	}
	cfg.RuntimeParams["jit"] = "off"
	cfg.RuntimeParams["max_parallel_workers_per_gather"] = "0"
	if !writer {
		cfg.RuntimeParams["plan_cache_mode"] = "force_custom_plan"
	}
	return stdlib.OpenDB(*cfg), nil
}

// RedactDSN returns dsn without its password, for messages and logs.
func RedactDSN(dsn string) string {
	if !strings.Contains(dsn, "://") {
		// A key=value DSN: drop the password pair.
		var keep []string
		for _, f := range strings.Fields(dsn) {
			if !strings.HasPrefix(strings.ToLower(f), "password=") {
				keep = append(keep, f)
			}
		}
		return strings.Join(keep, " ")
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return "(a DSN that does not parse as a URL)"
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.String()
}
