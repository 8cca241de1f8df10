package sessions

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"slices"
	"strings"

	"github.com/ohler55/ojg"
	"github.com/ohler55/ojg/oj"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions/extract"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// Bounds of the request content kept for a malicious request.
const (
	maxAttackHeaders     = 128
	maxAttackHeaderValue = 8192
	// minScrubLen is the shortest hashed value that is also replaced where it occurs inside a
	// longer string; shorter ones are replaced only where they are a whole value (a header, a
	// cookie, a query or form value, a JSON string or number, a path segment), since
	// replacing every "42" inside every string would destroy the content without protecting
	// anything.
	minScrubLen = 4
	// maxRedactDepth bounds the JSON nesting rewritten value by value; deeper bodies are
	// scrubbed as text.
	maxRedactDepth = 256
	// maxContainerDepth bounds the depth at which whole objects and arrays are rendered to be
	// compared with a hashed value that is itself an object or an array.
	maxContainerDepth = 16
)

// credentialHeaders carry credentials whatever the configuration says: their values are
// hashed in the content of malicious requests (the scheme of authorization stays readable).
var credentialHeaders = []string{"authorization", "proxy-authorization"}

// hashedTargets are the request-side places that hashed parameters read; in the content of a
// malicious request the value found there is replaced by its hashed form, whether or not the
// parameter worked for that request.
type hashedTargets struct {
	headers []string // lower case
	cookies []string
	queries []string
	forms   []string
}

func (t *hashedTargets) add(p config.Parameter) {
	switch p.In {
	case config.InRequestHeader:
		t.headers = appendNew(t.headers, strings.ToLower(p.Key))
	case config.InRequestCookie:
		t.cookies = appendNew(t.cookies, p.Key)
	case config.InRequestQuery:
		t.queries = appendNew(t.queries, p.Key)
	case config.InRequestBody:
		if p.Key != "" {
			t.forms = appendNew(t.forms, p.Key)
		}
	}
}

func appendNew(list []string, s string) []string {
	if s == "" || slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// secret is the clear value of a hashed parameter seen in one exchange and its exported form.
type secret struct{ clear, hashed string }

// mayHold reports cheaply whether a record field could carry one of the secrets, so that the
// common case (it does not) costs a few substring searches and no allocation.
func mayHold(field string, secrets []secret) bool {
	if field == "" {
		return false
	}
	for _, sec := range secrets {
		// A short secret is replaced only where it is a whole value or path segment; the
		// redactor decides.
		if strings.Contains(field, sec.clear) {
			return true
		}
	}
	// Escaped forms: decoding is needed only when there is an escape.
	return strings.IndexByte(field, '%') >= 0
}

// redactor replaces the clear values of one exchange's hashed parameters (its secrets) by
// their hashed form, in every form they may take in a request: as sent, URL-escaped,
// JSON-escaped and base64-encoded. It belongs to one exchange and one goroutine: it computes
// the encodings on first use.
type redactor struct {
	h       *hasher
	secrets []string // longest first
	hashed  []string // hashed[i] is the exported form of secrets[i]
	// forms[i] are the encodings of secrets[i] that are searched inside longer strings;
	// computed on first use.
	forms     [][]string
	formsDone bool
	view      *extract.View
}

func newRedactor(h *hasher, secrets []secret, v *extract.View) *redactor {
	r := &redactor{h: h, view: v}
	for _, s := range secrets {
		if s.clear != "" && !slices.Contains(r.secrets, s.clear) {
			r.secrets = append(r.secrets, s.clear)
			r.hashed = append(r.hashed, s.hashed)
		}
	}
	// Longest first, so that a secret containing another is replaced whole.
	idx := make([]int, len(r.secrets))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return len(r.secrets[b]) - len(r.secrets[a]) })
	secs, hs := make([]string, len(idx)), make([]string, len(idx))
	for i, j := range idx {
		secs[i], hs[i] = r.secrets[j], r.hashed[j]
	}
	r.secrets, r.hashed = secs, hs
	return r
}

func (r *redactor) encodings() [][]string {
	if r.formsDone {
		return r.forms
	}
	r.formsDone = true
	r.forms = make([][]string, len(r.secrets))
	for i, s := range r.secrets {
		if len(s) < minScrubLen {
			continue
		}
		f := []string{s}
		for _, e := range []string{
			url.QueryEscape(s), url.PathEscape(s), jsonEscaped(s),
			base64.StdEncoding.EncodeToString([]byte(s)), base64.RawStdEncoding.EncodeToString([]byte(s)),
			base64.URLEncoding.EncodeToString([]byte(s)), base64.RawURLEncoding.EncodeToString([]byte(s)),
		} {
			if e != "" && !slices.Contains(f, e) {
				f = append(f, e)
			}
		}
		r.forms[i] = f
	}
	return r.forms
}

func jsonEscaped(s string) string {
	b, err := json.Marshal(s)
	if err != nil || len(b) < 2 {
		return ""
	}
	return string(b[1 : len(b)-1])
}

// value returns the hashed form when s is itself a secret, else s with every secret inside it
// replaced.
func (r *redactor) value(s string) string {
	if r == nil || len(r.secrets) == 0 || s == "" {
		return s
	}
	for i, sec := range r.secrets {
		if s == sec {
			return r.hashed[i]
		}
	}
	for i, forms := range r.encodings() {
		for _, f := range forms {
			if strings.Contains(s, f) {
				s = strings.ReplaceAll(s, f, r.hashed[i])
			}
		}
	}
	return s
}

// token hashes s whole when it is a JWT whose claims hold a secret: the claim is readable by
// anyone who decodes the token, whatever the text of the token looks like.
func (r *redactor) token(s string) (string, bool) {
	if r == nil || len(r.secrets) == 0 || strings.Count(s, ".") != 2 || r.view == nil {
		return s, false
	}
	claims, ok := r.view.UnverifiedClaims(s)
	if !ok {
		return s, false
	}
	budget := 4096
	if r.holds(claims, &budget) {
		return r.h.param(s), true
	}
	return s, false
}

// holds reports whether a decoded document contains a secret anywhere in a scalar.
func (r *redactor) holds(doc any, budget *int) bool {
	*budget--
	if *budget < 0 {
		return true // too large to check: treat as holding one, the safe side
	}
	switch t := doc.(type) {
	case map[string]any:
		for k, v := range t {
			if r.value(k) != k || r.holds(v, budget) {
				return true
			}
		}
	case []any:
		for _, v := range t {
			if r.holds(v, budget) {
				return true
			}
		}
	default:
		if s, ok := extract.Scalar(t); ok {
			return r.value(s) != s
		}
	}
	return false
}

// cutTail removes a trailing fragment of a secret that a cut (a body or value cut at its cap)
// left at the end of s.
func (r *redactor) cutTail(s string) string {
	if r == nil {
		return s
	}
	for _, forms := range r.encodings() {
		for _, f := range forms {
			for n := min(len(f)-1, len(s)); n >= minScrubLen; n-- {
				if strings.HasSuffix(s, f[:n]) {
					s = s[:len(s)-n]
					break
				}
			}
		}
	}
	return s
}

// path hashes secrets in a request path: whole segments that are a secret (a request.path
// capture, any length) and, for longer secrets, occurrences inside segments and the query.
func (r *redactor) path(p string) string {
	if r == nil || len(r.secrets) == 0 {
		return p
	}
	short := false
	for _, s := range r.secrets {
		if len(s) < minScrubLen {
			short = true
		}
	}
	if short {
		segs := strings.Split(p, "/")
		changed := false
		for i, seg := range segs {
			dec, err := url.PathUnescape(seg)
			if err != nil {
				dec = seg
			}
			for j, s := range r.secrets {
				if seg == s || dec == s {
					segs[i], changed = r.hashed[j], true
				}
			}
		}
		if changed {
			p = strings.Join(segs, "/")
		}
	}
	return r.value(p)
}

// attackContent is the request as a malicious request's record carries it: every header
// (repeated ones joined) and the body up to the body cap, with the values that hashed
// parameters read, credentials and every secret of the exchange in hashed form.
func (s *snapshot) attackContent(a *record.Attack, x *traffic.Exchange, r *redactor) {
	a.Headers = make(map[string]string, min(len(x.RequestHeaders), maxAttackHeaders))
	for i, h := range x.RequestHeaders {
		if i >= maxAttackHeaders {
			break
		}
		name := strings.ToLower(truncate(h.Name, maxAttackValue))
		val := s.headerValue(name, h.Value, r)
		if len(val) > maxAttackHeaderValue {
			val = r.cutTail(truncate(val, maxAttackHeaderValue))
		}
		if prev, ok := a.Headers[name]; ok {
			sep := ", "
			if name == "cookie" {
				sep = "; "
			}
			if len(prev)+len(sep)+len(val) <= maxAttackHeaderValue {
				val = prev + sep + val
			} else {
				val = prev
			}
		}
		a.Headers[name] = val
	}
	body := x.RequestBody
	if s.maxBody > 0 && len(body) > s.maxBody {
		body = body[:s.maxBody]
	}
	a.BodyTruncated = x.RequestBodyTruncated || len(body) < len(x.RequestBody)
	a.Body = s.attackBody(x, body, a.BodyTruncated, r)
}

func (s *snapshot) headerValue(name, val string, r *redactor) string {
	switch {
	case val == "":
		return ""
	case slices.Contains(s.hashedReq.headers, name):
		return r.h.param(val)
	case name == "cookie":
		return s.cookieValue(val, r)
	case slices.Contains(credentialHeaders, name):
		scheme, cred, ok := strings.Cut(strings.TrimSpace(val), " ")
		if !ok {
			return r.h.param(val)
		}
		return scheme + " " + r.h.param(strings.TrimSpace(cred))
	case isBuiltinHeader(name):
		return r.h.param(val)
	case name == ":path":
		return s.pathValue(val, r)
	}
	if t, ok := r.token(val); ok {
		return t
	}
	return r.value(val)
}

func isBuiltinHeader(name string) bool {
	for _, b := range builtinHeaders {
		if b.name == name {
			return true
		}
	}
	return false
}

func isBuiltinCookie(name string) bool {
	for _, b := range builtinCookies {
		if b.name == name {
			return true
		}
	}
	return false
}

// cookieValue hashes the values of cookies that hashed parameters read and of the built-in
// session cookies, and secrets in the others; names stay readable.
func (s *snapshot) cookieValue(h string, r *redactor) string {
	var b strings.Builder
	for part := range strings.SplitSeq(h, ";") {
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		name, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			b.WriteString(r.value(strings.TrimSpace(part)))
			continue
		}
		name = strings.TrimSpace(name)
		val = strings.TrimSpace(val)
		unq := strings.TrimSuffix(strings.TrimPrefix(val, `"`), `"`)
		b.WriteString(r.value(name))
		b.WriteByte('=')
		switch {
		case unq == "":
			b.WriteString(val)
		case slices.Contains(s.hashedReq.cookies, name) || isBuiltinCookie(name):
			b.WriteString(r.h.param(unq))
		default:
			if t, ok := r.token(unq); ok {
				b.WriteString(t)
			} else {
				b.WriteString(r.value(val))
			}
		}
	}
	return b.String()
}

// pathValue hashes secrets in the path part and, in the query, the values of query
// parameters that hashed parameters read (as their decoded value hashes) and secrets.
func (s *snapshot) pathValue(p string, r *redactor) string {
	q := ""
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p, q = p[:i], p[i+1:]
	}
	p = r.path(p)
	if q == "" {
		return p
	}
	return p + "?" + rewritePairs(q, s.hashedReq.queries, r)
}

// rewritePairs rewrites an urlencoded list (a query string or a form body): the values of
// the named fields become the hashed form of their decoded value; other values are scrubbed.
// Pairs are kept as sent when nothing in them changes.
func rewritePairs(q string, names []string, r *redactor) string {
	var b strings.Builder
	b.Grow(len(q))
	first := true
	for part := range strings.SplitSeq(q, "&") {
		if !first {
			b.WriteByte('&')
		}
		first = false
		rawName, rawVal, hasVal := strings.Cut(part, "=")
		name, err := url.QueryUnescape(rawName)
		if err != nil {
			name = rawName
		}
		val, err := url.QueryUnescape(rawVal)
		if err != nil {
			val = rawVal
		}
		switch {
		case !hasVal:
			b.WriteString(escapeIfChanged(rawName, name, r))
		case val != "" && slices.Contains(names, name):
			b.WriteString(escapeIfChanged(rawName, name, r))
			b.WriteByte('=')
			b.WriteString(r.h.param(val))
		default:
			b.WriteString(escapeIfChanged(rawName, name, r))
			b.WriteByte('=')
			b.WriteString(escapeIfChanged(rawVal, val, r))
		}
	}
	return b.String()
}

// escapeIfChanged returns raw when scrubbing its decoded form changes nothing, else the
// scrubbed decoded form, escaped again.
func escapeIfChanged(raw, decoded string, r *redactor) string {
	out := r.value(decoded)
	if out == decoded {
		// The raw text may still carry a secret in an encoding decoding does not undo.
		return r.value(raw)
	}
	return strings.ReplaceAll(url.QueryEscape(out), "%3A", ":")
}

// attackBody is the request body with secrets hashed: a JSON body rewritten value by value
// and serialised again, an urlencoded form pair by pair, anything else (and a body cut at the
// cap, which cannot be parsed) scrubbed as text.
func (s *snapshot) attackBody(x *traffic.Exchange, body []byte, truncated bool, r *redactor) string {
	if len(body) == 0 {
		return ""
	}
	ct, _ := x.RequestHeader("content-type")
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	if !truncated {
		switch {
		case mt == "application/x-www-form-urlencoded":
			return rewritePairs(string(body), s.hashedReq.forms, r)
		case mt == "application/json" || strings.HasSuffix(mt, "+json") || (mt == "" && looksJSON(body)):
			if doc, ok := r.view.JSONBody(extract.Request); ok {
				if out, ok := r.jsonBody(doc); ok {
					return out
				}
			}
		}
	}
	out := r.value(string(body))
	if truncated {
		out = r.cutTail(out)
	}
	return out
}

func looksJSON(b []byte) bool {
	t := bytes.TrimLeft(b, " \t\r\n")
	return len(t) > 0 && (t[0] == '{' || t[0] == '[')
}

// jsonBody rewrites a parsed JSON body; false when it is too deep to rewrite value by value or
// cannot be serialised again. An unchanged body is returned as nothing: the caller keeps the
// text as sent (scrubbed, which then finds nothing).
func (r *redactor) jsonBody(doc any) (string, bool) {
	containers := false
	for _, s := range r.secrets {
		if s[0] == '{' || s[0] == '[' {
			containers = true
		}
	}
	out, changed, ok := r.jsonNode(doc, 0, containers)
	if !ok {
		return "", false
	}
	if !changed {
		return "", false
	}
	b, err := oj.Marshal(out, &ojg.Options{Sort: true, HTMLUnsafe: true})
	if err != nil {
		return "", false
	}
	return string(b), true
}

// jsonNode returns the node with secrets replaced, building new containers only where
// something changed; the parsed document is shared and read-only.
func (r *redactor) jsonNode(n any, depth int, containers bool) (any, bool, bool) {
	if depth > maxRedactDepth {
		return nil, false, false
	}
	switch t := n.(type) {
	case map[string]any:
		if containers && depth <= maxContainerDepth {
			if h, ok := r.exact(t); ok {
				return h, true, true
			}
		}
		var out map[string]any
		for k, v := range t {
			nv, changed, ok := r.jsonNode(v, depth+1, containers)
			if !ok {
				return nil, false, false
			}
			nk := r.value(k)
			if !changed && nk == k {
				continue
			}
			if out == nil {
				out = make(map[string]any, len(t))
				for k2, v2 := range t {
					out[k2] = v2
				}
			}
			if nk != k {
				delete(out, k)
			}
			out[nk] = nv
		}
		if out == nil {
			return t, false, true
		}
		return out, true, true
	case []any:
		if containers && depth <= maxContainerDepth {
			if h, ok := r.exact(t); ok {
				return h, true, true
			}
		}
		var out []any
		for i, v := range t {
			nv, changed, ok := r.jsonNode(v, depth+1, containers)
			if !ok {
				return nil, false, false
			}
			if !changed {
				continue
			}
			if out == nil {
				out = slices.Clone(t)
			}
			out[i] = nv
		}
		if out == nil {
			return t, false, true
		}
		return out, true, true
	case string:
		if h := r.value(t); h != t {
			return h, true, true
		}
		if h, ok := r.token(t); ok {
			return h, true, true
		}
		return t, false, true
	case nil, bool:
		return t, false, true
	default:
		if h, ok := r.exact(t); ok {
			return h, true, true
		}
		return t, false, true
	}
}

// exact returns the hashed form of a JSON value whose rendering (canonical JSON for objects
// and arrays, as parameters export them) is a secret.
func (r *redactor) exact(v any) (string, bool) {
	s, ok := extract.Scalar(v)
	if !ok {
		return "", false
	}
	for i, sec := range r.secrets {
		if s == sec {
			return r.hashed[i], true
		}
	}
	return "", false
}
