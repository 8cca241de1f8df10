// Package testutil holds what the tests of several packages share: an output that a server
// writes while the test reads it, readers of the JSON lines it writes (logs, records), a JWT
// builder and a sink that discards. Only tests import it; of this module it imports only the
// record package, so every package's tests can use it.
package testutil
