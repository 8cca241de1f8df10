package store

import (
	"context"
	"database/sql"
)

// dialect holds what differs between the database engines the store runs on; every query is
// otherwise the same text for both.
type dialect struct {
	// name is the driver as configuration names it.
	name string
	// insert begins an INSERT of rows that must not exist yet. SQLite's OR FAIL keeps it from
	// keeping a statement journal for each multi-row statement.
	insert string
	// rebind turns the ? placeholders of a query into the engine's own.
	rebind func(q string) string
	// text is how a string value from traffic is passed to a statement.
	text func(s string) any
	// beforeWrite runs in a batch's transaction before its rows are written (PostgreSQL
	// creates the day partitions the batch's requests need).
	beforeWrite func(ctx context.Context, tx *sql.Tx, reqs []encodedRequest) error
}

// sqliteDialect is the embedded SQLite database.
var sqliteDialect = &dialect{
	name:        DriverSQLite,
	insert:      "INSERT OR FAIL",
	rebind:      func(q string) string { return q },
	text:        func(s string) any { return s },
	beforeWrite: func(context.Context, *sql.Tx, []encodedRequest) error { return nil },
}

// args passes the strings among a query's arguments as d.text does.
func (d *dialect) args(args []any) []any {
	for i, a := range args {
		if s, ok := a.(string); ok {
			args[i] = d.text(s)
		}
	}
	return args
}
