package store

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations bring the schema from version i to i+1 (PRAGMA user_version). Append only: a
// released step never changes, so every database reaches the same schema by the same path.
//
// Times are Unix milliseconds (records carry millisecond precision). parts holds one row per
// session part: counts summed from its stored request rows (rows_*), the range of its request
// times, and the merged session record (record, JSON). requests holds one row per request
// record: the columns the filters read, and the record itself as JSON.
var migrations = []string{
	`CREATE TABLE parts (
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
	) WITHOUT ROWID;`,
}

// SchemaVersion is the schema version this build writes.
var SchemaVersion = len(migrations)

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
		if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
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
