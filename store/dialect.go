package store

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
	// noIndex prefixes a column to keep SQLite off its indexes ("+"); PostgreSQL has none.
	noIndex string
	// perRow ends an EXISTS that must be tested part by part as the list walks its parts:
	// PostgreSQL otherwise turns it into a join driven by the values, reading every part
	// that has a common value (1 s instead of 6 ms for a 5xx list).
	perRow string
	// distinct is "DISTINCT " where a probe of part_values may ask the engine for distinct
	// parts; PostgreSQL would read every row of a common value to do so, so its probes read
	// rows (a part may come more than once, which only ends a probe sooner) and the store
	// removes the repeats.
	distinct string
	// instr is the function that finds bytes in bytes: instr(haystack, needle), the 1-based
	// position of the first occurrence or 0.
	instr func(haystack, needle string) string
	// flowCond tests whether the request r has the flow ",name," given as its argument.
	flowCond string
	// least is the two-argument minimum: min on SQLite, LEAST on PostgreSQL.
	least string
	// sizes bound the rows of one multi-row statement: 1<<(size-1) parts, requests, values.
	// Each statement is a round trip to a server, which makes larger ones pay there.
	sizes stmtSizes
	// postgres: request partitions, advisory locks, no WAL checkpoints.
	postgres bool
}

// sqliteDialect is the embedded SQLite database.
var sqliteDialect = &dialect{
	name:     DriverSQLite,
	insert:   "INSERT OR FAIL",
	rebind:   func(q string) string { return q },
	text:     func(s string) any { return s },
	noIndex:  "+",
	distinct: "DISTINCT ",
	instr:    func(h, n string) string { return "instr(" + h + ", " + n + ")" },
	sizes:    stmtSizes{parts: 7, requests: 6, values: 7}, // 64, 32, 64 rows a statement
	flowCond: "instr(',' || +r.flows || ',', ?) > 0",
	least:    "min",
}

// idIn adds to w that col is one of ids: a placeholder per id on SQLite, one bigint[]
// parameter on PostgreSQL instead of up to probeParts of them.
func (d *dialect) idIn(w *sqlWhere, col string, ids []int64) {
	if d.postgres {
		w.add(col+" = ANY(?)", ids)
		return
	}
	w.add(col+" IN ("+placeholders(len(ids))+")", idArgs(ids)...)
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

type stmtSizes struct{ parts, requests, values int }
