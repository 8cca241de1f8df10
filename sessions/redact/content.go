package redact

import (
	"bytes"
	"net/url"
	"slices"
	"strings"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions/extract"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// Bounds of the request content kept for a malicious request.
const (
	maxAttackHeaders     = 128
	maxAttackHeaderName  = 128
	maxAttackHeaderValue = 8192
)

// credentialHeaders carry credentials whatever the configuration says: their values are
// hashed in the content of malicious requests (the scheme of authorization stays readable).
var credentialHeaders = []string{"authorization", "proxy-authorization"}

// Targets are the request-side places whose values are replaced by their hashed form in the
// content of a malicious request, whether or not a parameter read them in that request: the
// places hashed parameters read (Add) and the built-in session cookies and headers.
type Targets struct {
	Headers []string // lower case
	Cookies []string
	Queries []string
	Forms   []string // urlencoded body fields
}

// Add adds the place a hashed parameter reads.
func (t *Targets) Add(p config.Parameter) {
	switch p.In {
	case config.InRequestHeader:
		t.Headers = appendNew(t.Headers, strings.ToLower(p.Key))
	case config.InRequestCookie:
		t.Cookies = appendNew(t.Cookies, p.Key)
	case config.InRequestQuery:
		t.Queries = appendNew(t.Queries, p.Key)
	case config.InRequestBody:
		if p.Key != "" {
			t.Forms = appendNew(t.Forms, p.Key)
		}
	}
}

func appendNew(list []string, s string) []string {
	if s == "" || slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// AttackContent fills a with the request as a malicious request's record carries it: every
// header (repeated ones joined) and the body up to maxBody bytes (0: all of it), with the
// values at t, credentials and every secret of the exchange in hashed form. r must have the
// exchange's View.
func (r *Redactor) AttackContent(a *record.Attack, x *traffic.Exchange, t *Targets, maxBody int) {
	a.Headers = make(map[string]string, min(len(x.RequestHeaders), maxAttackHeaders))
	for i, h := range x.RequestHeaders {
		if i >= maxAttackHeaders {
			break
		}
		name := strings.ToLower(record.Truncate(h.Name, maxAttackHeaderName))
		val := r.headerValue(t, name, h.Value)
		if len(val) > maxAttackHeaderValue {
			val = r.cutTail(record.Truncate(val, maxAttackHeaderValue))
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
	if maxBody > 0 && len(body) > maxBody {
		body = body[:maxBody]
	}
	a.BodyTruncated = x.RequestBodyTruncated || len(body) < len(x.RequestBody)
	a.Body = r.attackBody(t, x, body, a.BodyTruncated)
}

func (r *Redactor) headerValue(t *Targets, name, val string) string {
	switch {
	case val == "":
		return ""
	case slices.Contains(t.Headers, name):
		return r.hash(val)
	case name == "cookie":
		return r.cookieValue(t, val)
	case slices.Contains(credentialHeaders, name):
		scheme, cred, ok := strings.Cut(strings.TrimSpace(val), " ")
		if !ok {
			return r.hash(val)
		}
		return scheme + " " + r.hash(strings.TrimSpace(cred))
	case name == ":path":
		return r.pathValue(t, val)
	}
	if tok, ok := r.token(val); ok {
		return tok
	}
	return r.Value(val)
}

// cookieValue hashes the values of the cookies at t and secrets in the others; names stay
// readable.
func (r *Redactor) cookieValue(t *Targets, h string) string {
	var b strings.Builder
	for part := range strings.SplitSeq(h, ";") {
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		name, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			b.WriteString(r.Value(strings.TrimSpace(part)))
			continue
		}
		name = strings.TrimSpace(name)
		val = strings.TrimSpace(val)
		unq := strings.TrimSuffix(strings.TrimPrefix(val, `"`), `"`)
		b.WriteString(r.Value(name))
		b.WriteByte('=')
		switch {
		case unq == "":
			b.WriteString(val)
		case slices.Contains(t.Cookies, name):
			b.WriteString(r.hash(unq))
		default:
			if tok, ok := r.token(unq); ok {
				b.WriteString(tok)
			} else {
				b.WriteString(r.Value(val))
			}
		}
	}
	return b.String()
}

// pathValue hashes secrets in the path part and, in the query, the values of the query
// parameters at t (as their decoded value hashes) and secrets.
func (r *Redactor) pathValue(t *Targets, p string) string {
	q := ""
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p, q = p[:i], p[i+1:]
	}
	p = r.Path(p)
	if q == "" {
		return p
	}
	return p + "?" + r.rewritePairs(q, t.Queries)
}

// rewritePairs rewrites an urlencoded list (a query string or a form body): the values of
// the named fields become the hashed form of their decoded value; other values are scrubbed.
// Pairs are kept as sent when nothing in them changes.
func (r *Redactor) rewritePairs(q string, names []string) string {
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
			b.WriteString(r.escapeIfChanged(rawName, name))
		case val != "" && slices.Contains(names, name):
			b.WriteString(r.escapeIfChanged(rawName, name))
			b.WriteByte('=')
			b.WriteString(r.hash(val))
		default:
			b.WriteString(r.escapeIfChanged(rawName, name))
			b.WriteByte('=')
			b.WriteString(r.escapeIfChanged(rawVal, val))
		}
	}
	return b.String()
}

// escapeIfChanged returns raw when scrubbing its decoded form changes nothing, else the
// scrubbed decoded form, escaped again.
func (r *Redactor) escapeIfChanged(raw, decoded string) string {
	out := r.Value(decoded)
	if out == decoded {
		// The raw text may still carry a secret in an encoding decoding does not undo.
		return r.Value(raw)
	}
	return strings.ReplaceAll(url.QueryEscape(out), "%3A", ":")
}

// attackBody is the request body with secrets hashed: a JSON body rewritten value by value
// and serialised again, an urlencoded form pair by pair, anything else (and a body cut at the
// cap, which cannot be parsed) scrubbed as text.
func (r *Redactor) attackBody(t *Targets, x *traffic.Exchange, body []byte, truncated bool) string {
	if len(body) == 0 {
		return ""
	}
	ct, _ := x.RequestHeader("content-type")
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	if !truncated {
		switch {
		case mt == "application/x-www-form-urlencoded":
			return r.rewritePairs(string(body), t.Forms)
		case mt == "application/json" || strings.HasSuffix(mt, "+json") || (mt == "" && looksJSON(body)):
			if doc, ok := r.view.JSONBody(extract.Request); ok {
				if out, ok := r.jsonBody(doc); ok {
					return out
				}
			}
		}
	}
	out := r.Value(string(body))
	if truncated {
		out = r.cutTail(out)
	}
	return out
}

func looksJSON(b []byte) bool {
	t := bytes.TrimLeft(b, " \t\r\n")
	return len(t) > 0 && (t[0] == '{' || t[0] == '[')
}
