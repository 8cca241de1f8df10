// Package replay feeds recorded traffic through the same pipeline as live traffic and reports
// the sessions found. In process (Replay), the exchanges enter a sessions.Engine whose clock
// follows the replayed time; against a running server (Remote), they travel one by one to a
// Server, such as extproc/remote's connection, and the parts its answers name are counted;
// Stored then replaces them with what the server's store recorded (a PartReader, its API).
// WriteTable, WriteResult and WriteJSONL print what either found.
//
// It imports the sessions engine and the config, record and traffic shapes. It must not
// import extproc or gRPC (a remote server is the small Server interface), nor read files
// itself (sessions/traffic/recorded does); nothing imports it but the command.
package replay
