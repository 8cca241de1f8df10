package record

import (
	"strconv"
	"time"
)

// Kinds of record.
const (
	KindRequest = "request"
	KindSession = "session"
)

// Record is either a *Request or a *Session.
type Record interface {
	// SessionID is the session the record belongs to (the Kafka key, the store's partition).
	SessionID() string
	// RecordKind is KindRequest or KindSession.
	RecordKind() string
}

// Key names the grouping key that put a request in its session.
type Key struct {
	// Source is "param", "builtin" or "fallback".
	Source string `json:"source"`
	// Name is the parameter name, the built-in name (cookie:<name>, header:<name>, jwt:sid,
	// jwt:sub, bearer) or the fallback parts used, joined by "+".
	Name string `json:"name"`
}

// Key sources.
const (
	SourceParam    = "param"
	SourceBuiltin  = "builtin"
	SourceFallback = "fallback"
)

// String returns "source:name".
func (k Key) String() string { return k.Source + ":" + k.Name }

// Request is the record of one HTTP request seen by Envoy (kind "request").
type Request struct {
	Kind      string `json:"kind"`
	Session   string `json:"session"`
	Part      string `json:"part"`
	RequestID string `json:"request_id,omitempty"`
	Time      Time   `json:"time"`
	Method    string `json:"method,omitempty"`
	Scheme    string `json:"scheme,omitempty"`
	Host      string `json:"host,omitempty"`
	Path      string `json:"path,omitempty"`
	// Query is the query string as sent (without "?"), cut at 2048 bytes, with the values of
	// hashed query parameters and of the fields attacks.scrub_fields names in their hashed
	// form, and any other secret found in it replaced the same way.
	Query         string  `json:"query,omitempty"`
	Route         string  `json:"route,omitempty"`
	Status        int     `json:"status"`
	DurationMS    float64 `json:"duration_ms"`
	RequestBytes  int64   `json:"request_bytes"`
	ResponseBytes int64   `json:"response_bytes"`
	ClientIP      string  `json:"client_ip,omitempty"`
	UserAgent     string  `json:"user_agent,omitempty"`
	JA3           string  `json:"ja3,omitempty"`
	JA4           string  `json:"ja4,omitempty"`
	Key           Key     `json:"key"`
	User          string  `json:"user,omitempty"`
	Role          string  `json:"role,omitempty"`
	// ClaimedUser and ClaimedRole are the user and role a request answered 4xx or 5xx named
	// (sessions.users_from: succeeded): what a client claimed, not who the session is.
	ClaimedUser string            `json:"claimed_user,omitempty"`
	ClaimedRole string            `json:"claimed_role,omitempty"`
	Flows       []string          `json:"flows,omitempty"`
	Params      map[string]string `json:"params,omitempty"`
	Malicious   bool              `json:"malicious,omitempty"`
	Attack      *Attack           `json:"attack,omitempty"`
	Partial     bool              `json:"partial,omitempty"`
	// Protection is the verdict of the protection rules or a manual block, nil when none
	// applied.
	Protection *Verdict `json:"protection,omitempty"`
	// ContinuedFrom is set when the value the request carried was linked to the session of
	// another value (stitching): the session id that value has of its own, and how it was
	// linked.
	ContinuedFrom *Continued `json:"continued_from,omitempty"`
	// Linked counts the values this request's response linked into its session.
	Linked int `json:"linked,omitempty"`
}

// Verdict is what protection decided for a request: the action of the rule that matched (or
// of a manual block), and whether it was only recorded.
type Verdict struct {
	// Action is block, rate_limit or tag.
	Action string `json:"action"`
	// Rule is the rule's name, or manual:session / manual:user for a manual block.
	Rule string `json:"rule"`
	// DryRun is true when nothing was done: the rule runs with dry_run, or Envoy does not
	// wait for answers (observability mode).
	DryRun bool `json:"dry_run,omitempty"`
}

// Continued says which session a request's value continues from.
type Continued struct {
	// Session is the session id the carried value has of its own (never the value).
	Session string `json:"session"`
	// Kind is "rotation" or "login".
	Kind string `json:"kind"`
}

// SessionID implements Record.
func (r *Request) SessionID() string { return r.Session }

// RecordKind implements Record.
func (r *Request) RecordKind() string { return KindRequest }

// Attack is the verdict another Envoy filter left for a request and, for malicious requests,
// the request's content.
type Attack struct {
	Source  string   `json:"source"`
	Types   []string `json:"types,omitempty"`
	RuleIDs []string `json:"rule_ids,omitempty"`
	// Headers of the request, hashed parameters still hashed.
	Headers map[string]string `json:"headers,omitempty"`
	// Body of the request up to max_body_bytes, hashed parameters still hashed.
	Body string `json:"body,omitempty"`
	// BodyTruncated is true when the body was longer than max_body_bytes.
	BodyTruncated bool `json:"body_truncated,omitempty"`
}

// Session is the state of one session part (kind "session").
type Session struct {
	Kind       string         `json:"kind"`
	Session    string         `json:"session"`
	Part       string         `json:"part"`
	FirstSeen  Time           `json:"first_seen"`
	LastSeen   Time           `json:"last_seen"`
	Requests   int            `json:"requests"`
	Key        Key            `json:"key"`
	User       string         `json:"user,omitempty"`
	Role       string         `json:"role,omitempty"`
	IPs        []string       `json:"ips,omitempty"`
	UserAgents []string       `json:"user_agents,omitempty"`
	Methods    map[string]int `json:"methods,omitempty"`
	Statuses   map[string]int `json:"statuses,omitempty"`
	Flows      map[string]int `json:"flows,omitempty"`
	Malicious  int            `json:"malicious"`
	BytesIn    int64          `json:"bytes_in"`
	BytesOut   int64          `json:"bytes_out"`
	// Linked counts the values linked into the part (stitching).
	Linked int `json:"linked,omitempty"`
	// Risk is the part's risk score at its latest request, 0 to 100, and RiskReasons the
	// signals that make it, the largest first.
	Risk        int          `json:"risk"`
	RiskReasons []RiskReason `json:"risk_reasons,omitempty"`
	Final       bool         `json:"final"`
	// EndReason says why a final part ended: "day", "idle", "evicted" or "shutdown".
	EndReason string `json:"end_reason,omitempty"`
}

// RiskReason is one signal's share of a risk score: its points left at the part's latest
// request, rounded to tenths.
type RiskReason struct {
	Signal string  `json:"signal"`
	Points float64 `json:"points"`
}

// SessionID implements Record.
func (s *Session) SessionID() string { return s.Session }

// RecordKind implements Record.
func (s *Session) RecordKind() string { return KindSession }

// End reasons of a final session record.
const (
	EndDay      = "day"
	EndIdle     = "idle"
	EndEvicted  = "evicted"
	EndShutdown = "shutdown"
)

// MaxDistinct caps the ips and user_agents lists of a session record.
const MaxDistinct = 32

// TimeLayout is RFC 3339 in UTC with millisecond precision, as records carry times.
const TimeLayout = "2006-01-02T15:04:05.000Z07:00"

// Time is a time written as RFC 3339 in UTC with millisecond precision.
type Time struct{ time.Time }

// At returns t as a record Time.
func At(t time.Time) Time { return Time{t} }

// MarshalJSON writes the time in UTC with millisecond precision.
func (t Time) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, len(TimeLayout)+2)
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, TimeLayout)
	return append(b, '"'), nil
}

// UnmarshalJSON reads an RFC 3339 time.
func (t *Time) UnmarshalJSON(b []byte) error {
	s, err := strconv.Unquote(string(b))
	if err != nil {
		return err
	}
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return err
	}
	t.Time = v
	return nil
}

// String formats the time as records do.
func (t Time) String() string { return t.UTC().Format(TimeLayout) }
