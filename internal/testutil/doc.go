// Package testutil holds what the tests of several packages share: an output that a server
// writes while the test reads it, readers of the JSON lines it writes (logs, records), a JWT
// builder, a sink that discards, the problems a configuration file shows, a PostgreSQL
// database of a test's own (PostgresDB) and a key prefix of its own in the test Redis
// (RedisPrefix). Only tests import it; of this module it imports only the record and config
// packages, so every package's tests but those two can use it.
package testutil
