// Package recommend suggests session grouping keys and context parameters from recorded
// traffic: it reads every cookie, header, query parameter, form field, JSON field (request and
// response, down to four levels) and set-cookie of a set of exchanges, follows values that a
// response issues and later requests send back, and ranks the places by the evidence that a
// value identifies one client's session: it flows from a response into later requests, each
// client keeps to one value (or one chain of rotated values) that no other client uses, and
// it lives as long as the client's traffic. Trackers, bot managers' cookies, geo and locale
// values, counters and user attributes are never keys (demote.go); user attributes become
// context parameters. The result is explained with counts only — values are secrets and never
// leave the package — and comes with a `parameters:` snippet that `apisessions validate`
// accepts.
//
// It is deterministic and explainable by design: a score is the product of five documented
// ratios, no model is involved. Every input is attacker-written, so the work and memory are
// bounded however large or strange the traffic is.
//
// It imports config, sessions/extract and sessions/traffic, and reads no file itself (the
// command reads them with sessions/traffic/recorded); nothing imports it but the command
// (and, in its tests only, the replay package, which measures its snippet on a corpus).
package recommend
