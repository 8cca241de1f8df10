package traffic

import "time"

// Header is one header field. Name is lower case, as Envoy sends it; pseudo-headers
// (":method", ":path", ":authority", ":scheme", ":status") are included.
type Header struct {
	Name  string
	Value string
}

// Exchange is one HTTP request and what was seen of its response. Everything in it was
// written by the client or the upstream: any field may be huge, malformed or hostile.
type Exchange struct {
	// RequestID is Envoy's request.id attribute (x-request-id).
	RequestID string
	// Start is when the request began: Envoy's request.time attribute, else the arrival of the
	// request headers.
	Start time.Time
	// End is when the response ended, or the stream when the response never completed.
	End time.Time

	Method string
	Scheme string
	// Host is :authority as sent (port included).
	Host string
	// Path is :path as sent, query string included.
	Path string

	// SourceAddress is Envoy's source.address attribute ("ip:port"), or "" when not sent.
	SourceAddress string

	RequestHeaders []Header
	// RequestBody holds at most the configured max_body_bytes of the request body.
	RequestBody []byte
	// RequestBodyTruncated is true when the body was longer than what RequestBody holds, or
	// when Envoy sent only part of it.
	RequestBodyTruncated bool
	// RequestBytes is the request body size: bytes seen, else content-length.
	RequestBytes int64
	// RequestTrailers are the request trailers, when Envoy sent them.
	RequestTrailers []Header

	// ResponseSeen is true once the response headers arrived.
	ResponseSeen bool
	// Status is the response status, 0 when the response never arrived.
	Status          int
	ResponseHeaders []Header
	// ResponseBody holds at most max_body_bytes of the response body.
	ResponseBody          []byte
	ResponseBodyTruncated bool
	ResponseBytes         int64
	ResponseTrailers      []Header

	// Metadata is the dynamic metadata Envoy forwarded (namespace -> key -> value), for attack
	// verdicts of other filters. Values are what structpb.Value.AsInterface returns.
	Metadata map[string]map[string]any

	// Partial is true when the stream ended before the response completed.
	Partial bool

	// Verdict is what protection decided at the request headers; zero when nothing applied.
	Verdict Verdict

	// Handover, when not nil, is what an apisessions HAR export recorded of this request
	// (sessions/traffic/recorded sets it; the ext_proc server never does, so no client can).
	Handover *Handover
}

// Handover is what the store kept of an exported request, read back from the custom fields of
// an apisessions HAR export. The sessions engine takes grouping, user, role, parameters and the
// attack verdict from it instead of reading them again: the export holds their stored forms
// (hashed values hashed), not the traffic they came from.
type Handover struct {
	// Session and Part name the exported part; every request of one part replays into one
	// session of its own.
	Session, Part string
	// KeySource and KeyName are the grouping key that put the request in its session.
	KeySource, KeyName string
	// User and Role as stored; ClaimedUser and ClaimedRole when the request only claimed them.
	User, Role, ClaimedUser, ClaimedRole string
	// Params are the exported parameter values, hashed ones still hashed.
	Params map[string]string
	// ClientIP, JA3 and JA4 are the client as stored ("" when the record had none).
	ClientIP, JA3, JA4 string
	// Malicious and Attack are the stored attack verdict; Attack is nil when none was given.
	Malicious bool
	Attack    *HandoverAttack
}

// HandoverAttack is a stored attack verdict and the content kept of a malicious request.
type HandoverAttack struct {
	Source         string
	Types, RuleIDs []string
	Headers        map[string]string
	Body           string
	BodyTruncated  bool
}

// Decision is what protection tells the ext_proc server to do with a request at its headers.
// Its strings and headers are shared by many requests: read only.
type Decision struct {
	Verdict Verdict
	// Status is the immediate response's status (block, rate_limit); 0 lets the request on.
	Status  int
	Body    string
	Headers []Header
	// RetryAfter is the Retry-After header's seconds (rate_limit); 0 for none.
	RetryAfter int
	// TagHeader names the request header set to the rule's name (tag); "" for none.
	TagHeader string
}

// Verdict is a protection decision as the request record keeps it.
type Verdict struct {
	// Action is block, rate_limit or tag; "" when no rule applied.
	Action string
	// Rule is the rule's name (manual:session or manual:user for a manual block).
	Rule string
	// DryRun is true when the action was only recorded.
	DryRun bool
}

// RequestHeader returns the first value of the named request header; name must be lower case.
func (x *Exchange) RequestHeader(name string) (string, bool) { return find(x.RequestHeaders, name) }

// ResponseHeader returns the first value of the named response header; name must be lower case.
func (x *Exchange) ResponseHeader(name string) (string, bool) { return find(x.ResponseHeaders, name) }

func find(hs []Header, name string) (string, bool) {
	for i := range hs {
		if hs[i].Name == name {
			return hs[i].Value, true
		}
	}
	return "", false
}

// Side is one half of an exchange: the request or the response.
type Side uint8

// The two halves of an exchange.
const (
	Request Side = iota
	Response
)

// String returns "request" or "response".
func (s Side) String() string {
	if s == Response {
		return "response"
	}
	return "request"
}

// Needs says which parts of an exchange the sessions engine reads for the current
// configuration, so the ext_proc server copies only those.
type Needs struct {
	// RequestBody is true when some parameter reads the request body.
	RequestBody bool
	// ResponseBody is true when some parameter reads the response body.
	ResponseBody bool
}

// Body reports whether the body of side is read.
func (n Needs) Body(side Side) bool {
	if side == Response {
		return n.ResponseBody
	}
	return n.RequestBody
}
