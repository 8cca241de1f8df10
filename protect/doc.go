// Package protect decides, at each request's headers, whether the request goes on: manual
// blocks of sessions and users, then the rules of protection.rules (block, rate_limit, tag),
// each of which may run as a dry run (docs/protection.md). Rules may look back over sliding
// windows (sequence, requires, enumeration, count; windows.go, state.go), fed at the headers
// and, for login outcomes, by Outcome at the end of each exchange; with state.redis the windows
// live in Redis (sharedwin.go). The ext_proc server asks it through extproc.Guard (and
// extproc.Outcomes) and carries out the decision in inline mode.
//
// It imports config and sessions (for the grouping and the facts rules match on); it must not
// import extproc, sinks, store or explore.
package protect
