package store

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"

	"github.com/apisessions/apisessions/sessions/record"
)

// migration brings the schema from one version to the next inside the transaction it is given.
type migration func(ctx context.Context, tx *sql.Tx) error

// sqlStep is a migration that is plain SQL.
func sqlStep(q string) migration {
	return func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, q)
		return err
	}
}

// migrations bring the schema from version i to i+1 (PRAGMA user_version). Append only: a
// released step never changes, so every database reaches the same schema by the same path.
//
// Times are Unix milliseconds (records carry millisecond precision). parts holds one row per
// session part: counts summed from its stored request rows (rows_*), the range of its request
// times, and the merged session record (record, JSON). requests holds one row per request
// record: the columns the filters read, and the record itself as JSON.
var migrations = []migration{
	sqlStep(`CREATE TABLE parts (
		id             INTEGER PRIMARY KEY,
		session        TEXT    NOT NULL,
		part           TEXT    NOT NULL,
		first_seen     INTEGER NOT NULL,
		last_seen      INTEGER NOT NULL,
		rows           INTEGER NOT NULL DEFAULT 0,
		rows_malicious INTEGER NOT NULL DEFAULT 0,
		rows_bytes_in  INTEGER NOT NULL DEFAULT 0,
		rows_bytes_out INTEGER NOT NULL DEFAULT 0,
		rows_last      INTEGER NOT NULL DEFAULT 0,
		user           TEXT    NOT NULL DEFAULT '',
		role           TEXT    NOT NULL DEFAULT '',
		record         TEXT,
		UNIQUE (session, part)
	);
	CREATE INDEX parts_recent ON parts (last_seen, session, part);

	CREATE TABLE requests (
		id           INTEGER PRIMARY KEY,
		part_id      INTEGER NOT NULL,
		time         INTEGER NOT NULL,
		request_id   TEXT    NOT NULL,
		method       TEXT    NOT NULL,
		host         TEXT    NOT NULL,
		path         TEXT    NOT NULL,
		route        TEXT    NOT NULL,
		status       INTEGER NOT NULL,
		client_ip    TEXT    NOT NULL,
		user         TEXT    NOT NULL,
		role         TEXT    NOT NULL,
		malicious    INTEGER NOT NULL,
		flows        TEXT    NOT NULL,
		attack_types TEXT    NOT NULL,
		record       BLOB    NOT NULL
	);
	CREATE INDEX requests_part ON requests (part_id, time);
	CREATE INDEX requests_time ON requests (time);
	CREATE INDEX requests_request_id ON requests (request_id) WHERE request_id <> '';
	CREATE INDEX requests_user ON requests (user) WHERE user <> '';
	CREATE INDEX requests_ip ON requests (client_ip);
	CREATE INDEX requests_malicious ON requests (part_id) WHERE malicious;

	CREATE TABLE request_flows (
		flow    TEXT    NOT NULL,
		part_id INTEGER NOT NULL,
		request INTEGER NOT NULL,
		PRIMARY KEY (flow, part_id, request)
	) WITHOUT ROWID;`),

	// Version 2: the filters read a table of the distinct values of each part (part_values)
	// instead of per-request indexes, which cost a B-tree insert on every request; a part's
	// values are written once, when first seen. parts_recent carries first_seen so a time
	// interval is tested on the index alone; meta keeps the longest part span, which bounds
	// the parts an interval has to look at.
	sqlStep(`DROP TABLE request_flows;
	DROP INDEX requests_time;
	DROP INDEX requests_user;
	DROP INDEX requests_ip;
	DROP INDEX requests_malicious;
	DROP INDEX parts_recent;
	CREATE INDEX parts_recent ON parts (last_seen, session, part, first_seen);

	CREATE TABLE part_values (
		part_id INTEGER NOT NULL,
		kind    INTEGER NOT NULL,
		value   TEXT    NOT NULL,
		PRIMARY KEY (part_id, kind, value)
	) WITHOUT ROWID;
	CREATE INDEX part_values_lookup ON part_values (kind, value, part_id);

	CREATE TABLE meta (
		key   TEXT PRIMARY KEY,
		value INTEGER NOT NULL
	) WITHOUT ROWID;
	INSERT INTO meta (key, value) SELECT 'max_span', coalesce(max(last_seen - first_seen), 0) FROM parts;`).then(backfillValues),

	// Version 3: a part is derived from its request rows alone, by updates that give the same
	// row whatever order batches come in. part_values counts the requests that have each value
	// and keeps the first one's time (user agents and attack types join it); parts keep with
	// user, role and key the request that chose them; batches lists the committed batches, so
	// that a batch written twice is counted once. Parts written before keep their user, role
	// and key, dated by their last request (user, role) or first (key).
	sqlStep(`ALTER TABLE parts ADD COLUMN user_at INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE parts ADD COLUMN user_rid TEXT NOT NULL DEFAULT '';
	ALTER TABLE parts ADD COLUMN role_at INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE parts ADD COLUMN role_rid TEXT NOT NULL DEFAULT '';
	ALTER TABLE parts ADD COLUMN key_source TEXT NOT NULL DEFAULT '';
	ALTER TABLE parts ADD COLUMN key_name TEXT NOT NULL DEFAULT '';
	ALTER TABLE parts ADD COLUMN key_at INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE parts ADD COLUMN key_rid TEXT NOT NULL DEFAULT '';
	UPDATE parts SET user_at = rows_last, role_at = rows_last, key_at = first_seen,
		key_source = coalesce(json_extract(CAST(record AS TEXT), '$.key.source'), ''),
		key_name = coalesce(json_extract(CAST(record AS TEXT), '$.key.name'), '')
		WHERE record IS NOT NULL AND json_valid(CAST(record AS TEXT));
	ALTER TABLE part_values ADD COLUMN count INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE part_values ADD COLUMN first INTEGER NOT NULL DEFAULT 0;
	DELETE FROM part_values;
	CREATE TABLE batches (
		id TEXT    PRIMARY KEY,
		at INTEGER NOT NULL
	) WITHOUT ROWID;
	CREATE INDEX batches_at ON batches (at);`).then(countValues),

	// Version 4: a request row is stored once by its content. rkey is the record's content key
	// (requestKey), unique per part and time together with them, in the index that already
	// served a part's requests; batch ids are no longer needed. Rows stored twice by earlier
	// versions stay, as their parts count them, with the key on the first of them only.
	sqlStep(`ALTER TABLE requests ADD COLUMN rkey BLOB;`).then(fillRequestKeys).then(sqlStep(`
	UPDATE requests SET rkey = NULL WHERE EXISTS (SELECT 1 FROM requests o WHERE o.part_id = requests.part_id
		AND o.time = requests.time AND o.rkey = requests.rkey AND o.id < requests.id);
	DROP INDEX requests_part;
	CREATE UNIQUE INDEX requests_part ON requests (part_id, time, rkey);
	DROP TABLE batches;`)),

	// Version 5: parts sum the values their requests' responses linked (stitching).
	sqlStep(`ALTER TABLE parts ADD COLUMN rows_linked INTEGER NOT NULL DEFAULT 0;`),

	// Version 6: parts keep their requests' risk points per signal, scaled to risk_ref (Unix
	// ms, see sessions/risk), and the score at their latest request; risky parts have an
	// index of their own for the min_risk list. Parts written before score 0.
	sqlStep(riskColumns("REAL", "INTEGER") + `
	CREATE INDEX parts_risky ON parts (last_seen, session, part) WHERE risk > 0;`),

	// Version 7: parts list their requests' TLS fingerprints (kinds 14 and 15), which the
	// ja3 and ja4 filters look up; values are cut at maxValueLen bytes as ingest cuts them.
	sqlStep(`INSERT OR IGNORE INTO part_values (part_id, kind, value)
		SELECT DISTINCT part_id, f.kind, CAST(substr(CAST(f.value AS BLOB), 1, ` + strconv.Itoa(maxValueLen) + `) AS TEXT)
		FROM (SELECT part_id, 14 AS kind, json_extract(CAST(record AS TEXT), '$.ja3') AS value FROM requests
				WHERE instr(record, CAST('"ja3":' AS BLOB)) > 0 AND json_valid(CAST(record AS TEXT))
			UNION ALL
			SELECT part_id, 15, json_extract(CAST(record AS TEXT), '$.ja4') FROM requests
				WHERE instr(record, CAST('"ja4":' AS BLOB)) > 0 AND json_valid(CAST(record AS TEXT))) AS f
		WHERE f.value IS NOT NULL AND f.value <> '';`),

	// Version 8: the user and role lists walk the parts that have the value in list order
	// (parts_user, parts_role: a part's latest user and role), and the parts whose requests
	// have more than one (mixed: bit 1 users, bit 2 roles; parts_mixed), where a part's
	// latest value is not all it has.
	sqlStep(mixedStep),
}

// mixedStep adds parts.mixed, sets it for the parts whose request rows hold more than one user
// or role, and the indexes of parts by user, by role and of mixed parts, in list order. The
// same text on both engines.
const mixedStep = `ALTER TABLE parts ADD COLUMN mixed INTEGER NOT NULL DEFAULT 0;
	UPDATE parts SET mixed = m.bits FROM (SELECT part_id,
			CASE WHEN count(DISTINCT CASE WHEN "user" <> '' THEN "user" END) > 1 THEN 1 ELSE 0 END |
			CASE WHEN count(DISTINCT CASE WHEN role <> '' THEN role END) > 1 THEN 2 ELSE 0 END AS bits
		FROM requests GROUP BY part_id) AS m
	WHERE m.part_id = parts.id AND m.bits <> 0;
	CREATE INDEX parts_user ON parts ("user", last_seen, session, part) WHERE "user" <> '';
	CREATE INDEX parts_role ON parts (role, last_seen, session, part) WHERE role <> '';
	CREATE INDEX parts_mixed ON parts (last_seen, session, part) WHERE mixed > 0;`

// riskColumns adds the risk columns to parts, with the engine's types for a float and an
// integer.
func riskColumns(float, integer string) string {
	var b strings.Builder
	for _, c := range riskSumCols {
		fmt.Fprintf(&b, "ALTER TABLE parts ADD COLUMN %s %s NOT NULL DEFAULT 0;\n", c, float)
	}
	fmt.Fprintf(&b, "ALTER TABLE parts ADD COLUMN risk_ref %s NOT NULL DEFAULT 0;\n", integer)
	fmt.Fprintf(&b, "ALTER TABLE parts ADD COLUMN risk %s NOT NULL DEFAULT 0;\n", integer)
	return b.String()
}

// fillRequestKeys gives every stored request row the content key of its record, as ingest
// computes it from the same bytes.
func fillRequestKeys(ctx context.Context, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, `SELECT id, record FROM requests`)
	if err != nil {
		return err
	}
	defer rows.Close()
	set, err := tx.PrepareContext(ctx, `UPDATE requests SET rkey = ? WHERE id = ?`)
	if err != nil {
		return err
	}
	defer set.Close()
	// SQLite allows writing one table while a query reads another on the same connection;
	// the key column is no index's yet, so the scan is not disturbed.
	for rows.Next() {
		var id int64
		var rec []byte
		if err := rows.Scan(&id, &rec); err != nil {
			return err
		}
		k := requestKey(rec)
		if _, err := set.ExecContext(ctx, k[:], id); err != nil {
			return err
		}
	}
	return rows.Err()
}

// then runs next after m in the same transaction.
func (m migration) then(next migration) migration {
	return func(ctx context.Context, tx *sql.Tx) error {
		if err := m(ctx, tx); err != nil {
			return err
		}
		return next(ctx, tx)
	}
}

// SchemaVersion is the schema version this build writes.
var SchemaVersion = len(migrations)

// backfillValues fills part_values from the request rows a version 1 database holds, through
// the same function ingest uses. Rows are read part by part, so each part's values are
// deduplicated in memory, and written 64 at a time.
func backfillValues(ctx context.Context, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, `SELECT part_id, method, host, path, route, status, client_ip, user, role,
		malicious, flows FROM requests ORDER BY part_id`)
	if err != nil {
		return err
	}
	defer rows.Close()
	const chunk = 64
	var b strings.Builder
	b.WriteString(`INSERT OR IGNORE INTO part_values (part_id, kind, value) VALUES (?,?,?)`)
	for range chunk - 1 {
		b.WriteString(",(?,?,?)")
	}
	many, err := tx.PrepareContext(ctx, b.String())
	if err != nil {
		return err
	}
	defer many.Close()
	one, err := tx.PrepareContext(ctx, `INSERT OR IGNORE INTO part_values (part_id, kind, value) VALUES (?, ?, ?)`)
	if err != nil {
		return err
	}
	defer one.Close()
	// SQLite allows writing one table while a query reads another on the same connection.
	var pending, scratch []partValue
	seen := map[partValue]struct{}{}
	cur := int64(-1)
	flush := func(all bool) error {
		for len(pending) >= chunk {
			args := make([]any, 0, 3*chunk)
			for _, v := range pending[:chunk] {
				args = append(args, v.part, v.kind, v.value)
			}
			if _, err := many.ExecContext(ctx, args...); err != nil {
				return err
			}
			pending = pending[chunk:]
		}
		if all {
			for _, v := range pending {
				if _, err := one.ExecContext(ctx, v.part, v.kind, v.value); err != nil {
					return err
				}
			}
			pending = pending[:0]
		}
		return nil
	}
	for rows.Next() {
		var (
			id                                             int64
			method, host, path, route, ip, user, role, fls string
			status                                         int
			mal                                            bool
		)
		if err := rows.Scan(&id, &method, &host, &path, &route, &status, &ip, &user, &role, &mal, &fls); err != nil {
			return err
		}
		if id != cur {
			cur = id
			clear(seen)
		}
		scratch = requestValues(scratch[:0], id, method, host, path, route, status, ip, user, role, mal, splitFlows(fls))
		for _, v := range scratch {
			if _, ok := seen[v]; !ok {
				seen[v] = struct{}{}
				pending = append(pending, v)
			}
		}
		if err := flush(false); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return flush(true)
}

// countValues fills part_values again from the request rows, with counts, user agents and
// attack types, through the aggregation ingest uses, a part at a time.
func countValues(ctx context.Context, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, `SELECT part_id, time, method, host, path, route, status, client_ip, user, role,
		malicious, flows, attack_types, coalesce(json_extract(CAST(record AS TEXT), '$.user_agent'), '')
		FROM requests WHERE json_valid(CAST(record AS TEXT)) ORDER BY part_id`)
	if err != nil {
		return err
	}
	defer rows.Close()
	ins, err := tx.PrepareContext(ctx, `INSERT INTO part_values (part_id, kind, value, count, first) VALUES (?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	defer ins.Close()
	// SQLite allows writing one table while a query reads another on the same connection.
	cur := int64(-1)
	var a *partAgg
	var scratch []partValue
	flush := func() error {
		if a == nil {
			return nil
		}
		for _, kv := range sortedValues(a.values) {
			v := a.values[kv]
			if !counted(kv.kind) && !dated(kv.kind) {
				v = valueAgg{}
			}
			if _, err := ins.ExecContext(ctx, cur, kv.kind, kv.value, v.count, v.first); err != nil {
				return err
			}
		}
		return nil
	}
	for rows.Next() {
		var id, t int64
		var r record.Request
		var fls, types string
		if err := rows.Scan(&id, &t, &r.Method, &r.Host, &r.Path, &r.Route, &r.Status, &r.ClientIP, &r.User, &r.Role,
			&r.Malicious, &fls, &types, &r.UserAgent); err != nil {
			return err
		}
		r.Flows = splitFlows(fls)
		if types != "" {
			r.Attack = &record.Attack{Types: strings.Split(types, ",")}
		}
		if id != cur {
			if err := flush(); err != nil {
				return err
			}
			cur, a = id, &partAgg{values: map[kindValue]valueAgg{}}
		}
		scratch = a.add(&r, t, nil, scratch)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return flush()
}

// migrate applies the migrations a database lacks, each in its own transaction together with
// the version bump, so a crash leaves the database at one version or the next.
func migrate(ctx context.Context, db *sql.DB) error {
	var v int
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if v > len(migrations) {
		return fmt.Errorf("schema version %d is newer than this build knows (%d); run a newer apisessions or move the file away", v, len(migrations))
	}
	for ; v < len(migrations); v++ {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("migrate to %d: %w", v+1, err)
		}
		if err := migrations[v](ctx, tx); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate to %d: %w", v+1, err)
		}
		// PRAGMA takes no bound parameters; v is our own integer.
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v+1)); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate to %d: %w", v+1, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migrate to %d: %w", v+1, err)
		}
	}
	return nil
}
