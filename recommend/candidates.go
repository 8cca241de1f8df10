package recommend

import (
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/apisessions/apisessions/sessions"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions/extract"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// candKey names one place a value can be read from, in the terms of a config.Parameter.
type candKey struct {
	in, key, path, decode string
}

// param returns the parameter that reads what the candidate read.
func (k candKey) param(name string) config.Parameter {
	return config.Parameter{Name: name, In: k.in, Key: k.key, Path: k.path, Decode: k.decode}
}

func (k candKey) response() bool { return strings.HasPrefix(k.in, "response.") }

// String is the candidate as the text output names it: source, then key or path.
func (k candKey) String() string {
	s := k.in
	if k.key != "" {
		s += " " + k.key
	}
	if k.decode != "" {
		s += " (" + k.decode + ")"
	}
	if k.path != "" {
		s += " " + k.path
	}
	return s
}

// The built-in identifiers are the engine's own lists, in the order it tries them.
var (
	builtinCookies = sessions.BuiltinCookies
	builtinHeaders = sessions.BuiltinHeaders
)

// skippedRequestHeaders describe the request or the client's software, or are added by
// proxies: none identifies a session.
var skippedRequestHeaders = map[string]bool{
	"accept": true, "user-agent": true, "content-type": true, "content-length": true,
	"content-encoding": true, "host": true, "referer": true, "origin": true, "cache-control": true,
	"pragma": true, "connection": true, "keep-alive": true, "upgrade": true, "te": true,
	"transfer-encoding": true, "forwarded": true, "x-real-ip": true, "x-request-id": true,
	"x-correlation-id": true, "traceparent": true, "tracestate": true, "b3": true,
	"x-amzn-trace-id": true, "dnt": true, "if-none-match": true, "if-modified-since": true,
	"if-match": true, "if-unmodified-since": true, "if-range": true, "range": true,
	"priority": true, "via": true, "upgrade-insecure-requests": true, "date": true,
	"expect": true, "x-requested-with": true, "sentry-trace": true, "baggage": true,
	"cookie": true, "authorization": true, "x-client-ja3": true, "x-client-ja4": true,
	"x-waf-attack": true,
}

var skippedRequestPrefixes = []string{"accept-", "x-forwarded-", "x-b3-", "x-envoy-", "sec-", "x-datadog-", "x-cloud-trace"}

// skippedResponseHeaders describe the representation, caching or security policy.
var skippedResponseHeaders = map[string]bool{
	"date": true, "server": true, "vary": true, "etag": true, "last-modified": true,
	"cache-control": true, "expires": true, "age": true, "pragma": true, "connection": true,
	"keep-alive": true, "transfer-encoding": true, "strict-transport-security": true,
	"x-content-type-options": true, "x-frame-options": true, "x-xss-protection": true,
	"location": true, "x-request-id": true, "set-cookie": true, "alt-svc": true, "via": true,
	"x-powered-by": true, "report-to": true, "nel": true, "referrer-policy": true,
	"permissions-policy": true, "retry-after": true, "accept-ranges": true,
	"www-authenticate": true, "traceparent": true, "x-waf-attack": true,
}

var skippedResponsePrefixes = []string{"content-", "access-control-", "x-envoy-", "x-ratelimit-", "ratelimit-", "cross-origin-"}

func skippedHeader(name string, response bool) bool {
	if name == "" || name[0] == ':' {
		return true
	}
	set, prefixes := skippedRequestHeaders, skippedRequestPrefixes
	if response {
		set, prefixes = skippedResponseHeaders, skippedResponsePrefixes
	}
	if set[name] {
		return true
	}
	for _, p := range prefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// normName folds a field name for the word lists below: "User_Name" and "user-name" are
// both "username".
func normName(name string) string {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'A' && c <= 'Z':
			b.WriteByte(c + 'a' - 'A')
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			b.WriteByte(c)
		}
	}
	return b.String()
}

// secretWords mark fields that hold credentials or payment data: never suggested, neither as
// a grouping key (a password recurs per user but is no session) nor as context.
var secretWords = []string{"password", "passwd", "pwd", "passphrase", "secret", "otp", "cvv", "cvc",
	"cardnumber", "creditcard", "ssn", "nonce", "signature", "captcha"}

func isSecretName(name string) bool {
	n := normName(name)
	if n == "pin" || n == "pass" {
		return true
	}
	for _, w := range secretWords {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// credentialWords mark values that let whoever holds them act as the user: exported hashed.
var credentialWords = []string{"token", "session", "sess", "sid", "auth", "key", "jwt", "bearer", "cookie", "credential", "mail"}

func looksCredential(name string) bool {
	n := normName(name)
	for _, w := range credentialWords {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

var (
	userNames = []string{"username", "user", "login", "email", "mail", "emailaddress", "preferredusername",
		"upn", "userid", "useremail", "userlogin", "accountname", "loginname"}
	roleNames = []string{"role", "roles", "userrole", "rolename", "userroles"}
)

// contextType says whether a field named name reads like a user name or a role.
func contextType(name string, jwt bool) string {
	n := normName(name)
	switch {
	case slices.Contains(userNames, n), jwt && n == "sub":
		return config.TypeUser
	case slices.Contains(roleNames, n):
		return config.TypeRole
	}
	return ""
}

// lastName is the last field name of a key or JSONPath, for the word lists.
func (k candKey) lastName() string {
	if k.path == "" {
		return k.key
	}
	p := strings.TrimSuffix(k.path, "[0]")
	if i := strings.LastIndexAny(p, ".'["); i >= 0 {
		p = p[i+1:]
	}
	return strings.Trim(p, "'[]")
}

// Value features, computed on first sight of each distinct value.
const (
	featID    uint8 = 1 << iota // looks like an identifier
	featEmail                   // looks like an e-mail address
	featName                    // printable text short enough to name a user or role
)

// minIDLen is the shortest value taken for an identifier: shorter ones are counters, small
// numbers, flags and codes that many clients share by chance.
const minIDLen = 8

func features(v string) uint8 {
	var f uint8
	if isIDLike(v) {
		f |= featID
	}
	if len(v) <= 256 && utf8.ValidString(v) && printable(v) {
		f |= featName
		if at := strings.IndexByte(v, '@'); at > 0 && strings.IndexByte(v[at:], '.') > 0 && !strings.ContainsAny(v, " \t") {
			f |= featEmail
		}
	}
	return f
}

func printable(v string) bool {
	for _, r := range v {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			return false
		}
	}
	return true
}

// isIDLike reports whether v could be a session or user identifier: 8 to maxValueLen
// visible ASCII characters without spaces, at least 5 different ones, a digit or at least 16
// characters (words like "customer" are enums), and not a timestamp, a date, a URL or a path.
func isIDLike(v string) bool {
	if len(v) < minIDLen || len(v) > maxValueLen {
		return false
	}
	var seen [128]bool
	distinct, digits := 0, 0
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c <= ' ' || c >= 0x7f {
			return false
		}
		if !seen[c] {
			seen[c] = true
			distinct++
		}
		if c >= '0' && c <= '9' {
			digits++
		}
	}
	if distinct < 5 || (digits == 0 && len(v) < 16) {
		return false
	}
	if v[0] == '/' || strings.Contains(v, "://") {
		return false // a URL or a path names a resource, not a client
	}
	if digits == len(v) && (len(v) == 10 || len(v) == 13) {
		// Unix time in seconds or milliseconds between 2001 and 2286.
		if n, err := strconv.ParseInt(v[:10], 10, 64); err == nil && n >= 1e9 {
			return false
		}
	}
	if len(v) >= 10 && isDigits(v[:4]) && v[4] == '-' && isDigits(v[5:7]) && v[7] == '-' {
		return false // an ISO 8601 date or time
	}
	return true
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// safeName reports whether a cookie, query or form field name is one the output may show and
// the YAML snippet may carry: attacker-chosen names with other bytes are not candidates.
func safeName(s string) bool {
	if s == "" || len(s) > maxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '_' || c == '-' || c == '.':
		default:
			return false
		}
	}
	return true
}

// jsonKeyStep returns the JSONPath step for an object key, or false for keys the snippet
// does not write (they would need quoting that ojg and readers get wrong easily).
func jsonKeyStep(k string) (string, bool) {
	if k == "" || len(k) > maxNameLen {
		return "", false
	}
	dash := false
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
		case c >= '0' && c <= '9', c == '-':
			if i == 0 {
				return "", false
			}
			dash = dash || c == '-'
		default:
			return "", false
		}
	}
	if dash {
		return "['" + k + "']", true
	}
	return "." + k, true
}

// leaf is one scalar of a JSON document with the JSONPath that reads it.
type leaf struct {
	path, value string
}

// walkJSON appends the scalars of doc down to maxDepth levels; of an array only the first
// element is followed (a session key does not sit at a varying index). Object keys are
// visited in sorted order so that the bounded walk is deterministic.
func walkJSON(dst []leaf, doc any, path string, depth int) []leaf {
	if len(dst) >= maxLeaves {
		return dst
	}
	switch t := doc.(type) {
	case map[string]any:
		if depth >= maxDepth {
			return dst
		}
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			step, ok := jsonKeyStep(k)
			if !ok {
				continue
			}
			dst = walkJSON(dst, t[k], path+step, depth+1)
		}
	case []any:
		if depth >= maxDepth || len(t) == 0 {
			return dst
		}
		dst = walkJSON(dst, t[0], path+"[0]", depth+1)
	case nil:
	default:
		if path == "$" {
			return dst
		}
		if s, ok := extract.Scalar(t); ok {
			dst = append(dst, leaf{path: path, value: s})
		}
	}
	return dst
}

// names lists the distinct names of a separator-split list of name=value pairs ("a=1; b=2",
// "a=1&b=2"), unescaping them when unescape is set, at most maxNames.
func names(dst []string, s string, sep byte, unescape bool) []string {
	for s != "" && len(dst) < maxNames {
		var part string
		if i := strings.IndexByte(s, sep); i >= 0 {
			part, s = s[:i], s[i+1:]
		} else {
			part, s = s, ""
		}
		name, _, _ := strings.Cut(part, "=")
		name = strings.TrimSpace(name)
		if unescape {
			if u, err := url.QueryUnescape(name); err == nil {
				name = u
			}
		}
		if safeName(name) && !slices.Contains(dst, name) {
			dst = append(dst, name)
		}
	}
	return dst
}

// headerNames lists the distinct lower-case header names worth a look on one side.
func headerNames(dst []string, hs []traffic.Header, response bool) []string {
	for _, h := range hs {
		if len(dst) >= maxNames {
			break
		}
		n := strings.ToLower(h.Name)
		if skippedHeader(n, response) || !safeName(n) || slices.Contains(dst, n) {
			continue
		}
		dst = append(dst, n)
	}
	return dst
}

// mediaType is the lower-case media type of a content-type value, parameters dropped.
func mediaType(hs []traffic.Header) string {
	for _, h := range hs {
		if strings.EqualFold(h.Name, "content-type") {
			mt, _, _ := strings.Cut(h.Value, ";")
			return strings.ToLower(strings.TrimSpace(mt))
		}
	}
	return ""
}

// sanitizeWord turns a name into [a-z0-9_] for parameter names.
func sanitizeWord(s string) string {
	var b strings.Builder
	under := false
	for i := 0; i < len(s) && b.Len() < 40; i++ {
		c := s[i]
		switch {
		case c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		default:
			if b.Len() > 0 && !under {
				b.WriteByte('_')
				under = true
			}
			continue
		}
		b.WriteByte(c)
		under = false
	}
	return strings.TrimRight(b.String(), "_")
}

// routeOf renders an exchange's method and path for the explanations: query dropped,
// segments that look like identifiers or that are not plain words replaced by {id}, so that
// no identifier or injected text from the traffic reaches the output.
func routeOf(x *traffic.Exchange) string {
	p := x.Path
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	segs := strings.Split(strings.Trim(p, "/"), "/")
	var b strings.Builder
	b.WriteString(safeMethod(x.Method))
	b.WriteByte(' ')
	if len(segs) == 1 && segs[0] == "" {
		b.WriteByte('/')
		return b.String()
	}
	for i, s := range segs {
		if i == 6 {
			b.WriteString("/…")
			break
		}
		b.WriteByte('/')
		if plainSegment(s) {
			b.WriteString(s)
		} else {
			b.WriteString("{id}")
		}
	}
	return b.String()
}

// routeWord is the last plain segment of an exchange's path ("login" for /api/login), used
// to name response-side parameters; "" when there is none.
func routeWord(x *traffic.Exchange) string {
	p := x.Path
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	segs := strings.Split(strings.Trim(p, "/"), "/")
	for i := len(segs) - 1; i >= 0; i-- {
		if s := segs[i]; plainSegment(s) && !isDigits(s) && len(s) <= 24 {
			if w := sanitizeWord(s); w != "" && (w[0] < '0' || w[0] > '9') && w != "api" && !isVersion(w) {
				return w
			}
		}
	}
	return ""
}

func isVersion(w string) bool { return len(w) >= 2 && w[0] == 'v' && isDigits(w[1:]) }

func plainSegment(s string) bool {
	if s == "" || len(s) > 32 || isIDLike(s) && strings.ContainsAny(s, "0123456789") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return !isDigits(s)
}

func safeMethod(m string) string {
	if m == "" || len(m) > 16 {
		return "?"
	}
	for i := 0; i < len(m); i++ {
		if m[i] < 'A' || m[i] > 'Z' {
			return "?"
		}
	}
	return m
}
