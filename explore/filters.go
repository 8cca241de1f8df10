package explore

import (
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/store"
)

// maxFilterValue bounds one filter value; longer values cannot match anything a record holds.
const maxFilterValue = 4096

// listFilters and partFilters are the query parameters each endpoint accepts.
var (
	listFilters = []string{"from", "to", "user", "role", "flow", "ip", "request_id", "method", "status",
		"host", "path", "route", "malicious", "ua", "ja3", "ja4", "min_risk", "limit", "cursor"}
	partFilters = []string{"from", "to", "method", "status", "ip", "path", "route", "flow", "malicious",
		"request_id", "limit", "cursor"}
	csvFilters = []string{"from", "to", "method", "status", "ip", "path", "route", "flow", "malicious", "request_id"}
)

// badFilter is a filter problem worded for the client: what is wrong and how to fix it.
type badFilter struct{ msg string }

func (e *badFilter) Error() string { return e.msg }

func bad(format string, args ...any) error { return &badFilter{msg: fmt.Sprintf(format, args...)} }

// query is a parsed request: the filter and the paging parameters.
type query struct {
	filter store.Filter
	limit  int
	cursor string
}

// parseQuery reads the parameters allowed (one of the lists above) from q. Every value is
// checked so that a typo is answered with a message rather than an empty result.
func parseQuery(q url.Values, allowed []string, maxLimit int) (query, error) {
	var out query
	for k, vs := range q {
		if !slices.Contains(allowed, k) {
			return out, bad("unknown filter %s; the filters here are %s", quote(k), strings.Join(allowed, ", "))
		}
		if len(vs) > 1 {
			return out, bad("filter %s is given %d times; give it once", k, len(vs))
		}
		if len(vs[0]) > maxFilterValue {
			return out, bad("filter %s is %d bytes long; use at most %d", k, len(vs[0]), maxFilterValue)
		}
	}
	f := &out.filter
	var err error
	if f.From, err = parseTime(q, "from"); err != nil {
		return out, err
	}
	if f.To, err = parseTime(q, "to"); err != nil {
		return out, err
	}
	if !f.From.IsZero() && !f.To.IsZero() && f.To.Before(f.From) {
		return out, bad("to (%s) is before from (%s); swap them", q.Get("to"), q.Get("from"))
	}
	f.User = q.Get("user")
	f.Role = q.Get("role")
	f.RequestID = q.Get("request_id")
	// The user agent and the fingerprints are matched exactly, as records hold them.
	f.UserAgent = q.Get("ua")
	f.JA3 = q.Get("ja3")
	f.JA4 = q.Get("ja4")
	if v := q.Get("min_risk"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 100 {
			return out, bad("min_risk %s is not a risk score from 0 to 100; use e.g. min_risk=60", quote(v))
		}
		f.MinRisk = n
	}
	if err := parseRequestFilters(q, f); err != nil {
		return out, err
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxLimit {
			return out, bad("limit %s is not a number from 1 to %d; use e.g. limit=50", quote(v), maxLimit)
		}
		out.limit = n
	}
	out.cursor = q.Get("cursor")
	return out, nil
}

// parseRequestFilters reads the filters that test a request's own fields into f: flow, ip,
// method, status, host, path or route, malicious.
func parseRequestFilters(q url.Values, f *store.Filter) error {
	if v := q.Get("flow"); v != "" {
		if !slices.Contains(config.Flows, v) {
			return bad("flow %s is not a business flow; use one of %s", quote(v), strings.Join(config.Flows, ", "))
		}
		f.Flow = v
	}
	if v := q.Get("ip"); v != "" {
		a, err := netip.ParseAddr(v)
		if err != nil {
			return bad("ip %s is not an IP address; use e.g. 203.0.113.7 or 2001:db8::1", quote(v))
		}
		f.IP = a.Unmap().String()
	}
	if v := q.Get("method"); v != "" {
		if !isToken(v) {
			return bad("method %s is not an HTTP method; use e.g. GET or POST", quote(v))
		}
		f.Method = strings.ToUpper(v)
	}
	if v := q.Get("status"); v != "" {
		st, ok := parseStatus(v)
		if !ok {
			return bad("status %s is not a status code or class; use e.g. 404 or 4xx (0 = no response)", quote(v))
		}
		f.Status = st
	}
	if v := q.Get("host"); v != "" {
		f.Host = strings.ToLower(v)
	}
	f.Route = q.Get("route")
	if v := q.Get("path"); v != "" {
		if !strings.HasPrefix(v, "/") {
			return bad("path %s does not begin with /; give the beginning of a path, e.g. /api/", quote(v))
		}
		f.Path = v
	}
	if f.Path != "" && f.Route != "" {
		return bad("path and route are both given; use one of them")
	}
	if f.Route != "" && !strings.HasPrefix(f.Route, "/") {
		return bad("route %s does not begin with /; give a route as the list shows it, e.g. /users/{id}", quote(f.Route))
	}
	switch v := q.Get("malicious"); v {
	case "", "false":
	case "true":
		f.Malicious = true
	default:
		return bad("malicious %s is not true or false; use malicious=true or leave it out", quote(v))
	}
	return nil
}

func parseTime(q url.Values, name string) (time.Time, error) {
	v := q.Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, bad("%s %s is not an RFC 3339 time; use e.g. 2026-11-22T10:00:00Z", name, quote(v))
	}
	return t, nil
}

// parseStatus reads a code (0, 100..599) or a class (1xx..5xx).
func parseStatus(v string) (store.Status, bool) {
	if len(v) == 3 && v[0] >= '1' && v[0] <= '5' && (v[1:] == "xx" || v[1:] == "XX") {
		return store.Status{Class: int(v[0] - '0'), Set: true}, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || len(v) > 3 || (n != 0 && (n < 100 || n > 599)) {
		return store.Status{}, false
	}
	return store.Status{Code: n, Set: true}, true
}

func isToken(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// quote shows a client's value in a message: quoted, control and non-ASCII characters
// escaped, long values cut.
func quote(s string) string {
	const most = 64
	if len(s) > most {
		return strconv.QuoteToASCII(s[:most]) + "…"
	}
	return strconv.QuoteToASCII(s)
}
