package redact

import (
	"bytes"
	"mime"
	"slices"
	"strings"

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

// AttackContent fills a with the request as a malicious request's record carries it: every
// header (repeated ones joined) and the body up to maxBody bytes (0: all of it), with the
// values at t, credentials and every secret of the exchange in hashed form. r must have the
// exchange's View; call Learn first so that the values t names are hidden wherever else
// they occur too.
func (r *Redactor) AttackContent(a *record.Attack, x *traffic.Exchange, t *Targets, maxBody int) {
	r.prepare()
	a.Headers = make(map[string]string, min(len(x.RequestHeaders), maxAttackHeaders))
	for i, h := range x.RequestHeaders {
		if i >= maxAttackHeaders {
			break
		}
		name := strings.ToLower(h.Name)
		val := r.headerValue(t, name, h.Value)
		if len(name) > maxAttackHeaderName {
			name = r.cutTail(record.Truncate(name, maxAttackHeaderName))
		}
		name = r.Value(name)
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
	for i, v := range a.Types {
		a.Types[i] = r.Value(v)
	}
	for i, v := range a.RuleIDs {
		a.RuleIDs[i] = r.Value(v)
	}
}

func (r *Redactor) headerValue(t *Targets, name, val string) string {
	switch {
	case val == "":
		return ""
	case slices.Contains(t.Headers, name):
		return r.hash(val)
	case slices.Contains(credentialHeaders, name):
		scheme, cred, ok := strings.Cut(strings.TrimSpace(val), " ")
		if !ok {
			return r.hash(val)
		}
		return scheme + " " + r.hash(strings.TrimSpace(cred))
	case !strings.HasPrefix(name, ":") && t.Scrub.Match(name):
		return r.hash(val)
	case name == "cookie":
		return r.cookieValue(t, val)
	case name == ":path":
		return r.pathValue(t, val)
	}
	if scheme, cred, ok := basicCredentials(val); ok {
		// Credentials copied into another header (x-forwarded-authorization, a custom one).
		return scheme + " " + r.hash(cred)
	}
	if tok, ok := r.token(val); ok {
		return tok
	}
	return r.Value(val)
}

// basicCredentials splits a value of the form "Basic <base64>" (the scheme in any case).
func basicCredentials(val string) (scheme, cred string, ok bool) {
	scheme, cred, ok = strings.Cut(strings.TrimSpace(val), " ")
	cred = strings.TrimSpace(cred)
	if !ok || !strings.EqualFold(scheme, "basic") || cred == "" {
		return "", "", false
	}
	for i := 0; i < len(cred); i++ {
		if base64Value[cred[i]] < 0 && cred[i] != '=' {
			return "", "", false
		}
	}
	return scheme, cred, true
}

// cookieValue hashes the values of the cookies at t and of the cookies Scrub names, and
// secrets in the others; names stay readable unless they hold a secret.
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
		case slices.Contains(t.Cookies, name) || t.Scrub.Match(name):
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
// parameters at t and of those Scrub names (as their decoded value hashes), and secrets.
func (r *Redactor) pathValue(t *Targets, p string) string {
	q := ""
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p, q = p[:i], p[i+1:]
	}
	p = r.Path(p)
	if q == "" {
		return p
	}
	return p + "?" + r.rewritePairs(q, t.Queries, t.Scrub)
}

// attackBody is the request body with secrets hashed. A complete JSON body is rewritten value
// by value and serialised again; an urlencoded form pair by pair and a multipart form part by
// part, cut or not. Anything else — a JSON body cut at the cap or invalid, another type — is
// scrubbed as text, after the values of the JSON members t names were hashed, found by their
// key even where the cut fell inside the value.
func (r *Redactor) attackBody(t *Targets, x *traffic.Exchange, body []byte, truncated bool) string {
	if len(body) == 0 {
		return ""
	}
	ct, _ := x.RequestHeader("content-type")
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		mt, _, _ = strings.Cut(strings.ToLower(ct), ";")
		mt = strings.TrimSpace(mt)
	}
	var out string
	switch {
	case mt == "application/x-www-form-urlencoded":
		out = r.rewritePairs(string(body), t.Forms, t.Scrub)
	case mt == "multipart/form-data" && params["boundary"] != "":
		out = r.Value(r.multipartFields(string(body), params["boundary"], t))
	default:
		if !truncated && (mt == "application/json" || strings.HasSuffix(mt, "+json") || (mt == "" && looksJSON(body))) {
			if doc, ok := r.jsonDoc(); ok {
				switch out, changed, ok := r.jsonBody(doc, t.Scrub.Match); {
				case ok && changed:
					return out
				case ok:
					// Nothing to replace in any value: the body as sent, unless a secret
					// spans values in a way no single value shows.
					return r.Value(string(body))
				}
			}
		}
		out = r.Value(r.jsonFields(string(body), t.bodyField))
	}
	if truncated {
		out = r.cutTail(out)
	}
	return out
}

func looksJSON(b []byte) bool {
	t := bytes.TrimLeft(b, " \t\r\n")
	return len(t) > 0 && (t[0] == '{' || t[0] == '[')
}
