// Package recorded reads recorded traffic into traffic.Exchange values: HAR files as browsers
// and proxies save them, and JSON lines of request records as the jsonl sink writes them. The
// replay and recommend commands read their input through it. A HAR file apisessions exported
// (log.creator.name "apisessions") also gives back, per entry, what the store kept of the
// request (traffic.Handover), so that it replays as the sessions it exported.
//
// Recorded traffic is trusted no more than live traffic: files, lines and bodies are bounded,
// and a value is kept as found, never interpreted. The package imports only the traffic and
// record shapes; it must not import the sessions engine, extproc or any command.
package recorded
