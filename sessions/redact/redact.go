package redact

import (
	"encoding/base64"
	"encoding/json"
	"net/url"
	"slices"
	"strings"

	"github.com/ohler55/ojg"
	"github.com/ohler55/ojg/oj"

	"github.com/apisessions/apisessions/sessions/extract"
)

// Bounds of the rewriting.
const (
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

// Secret is the clear value of a hashed parameter seen in one exchange and its exported
// (hashed) form.
type Secret struct{ Clear, Hashed string }

// MayHold reports cheaply whether a record field could carry one of the secrets, so that the
// common case (it does not) costs a few substring searches and no allocation.
func MayHold(field string, secrets []Secret) bool {
	if field == "" {
		return false
	}
	for _, sec := range secrets {
		// A short secret is replaced only where it is a whole value or path segment; the
		// redactor decides.
		if strings.Contains(field, sec.Clear) {
			return true
		}
	}
	// Escaped forms: decoding is needed only when there is an escape.
	return strings.IndexByte(field, '%') >= 0
}

// Redactor replaces the clear values of one exchange's hashed parameters (its secrets) by
// their hashed form, in every form they may take in a request: as sent, URL-escaped,
// JSON-escaped and base64-encoded. It belongs to one exchange and one goroutine: it computes
// the encodings on first use. A nil *Redactor changes nothing.
type Redactor struct {
	hash    func(string) string
	secrets []string // longest first
	hashed  []string // hashed[i] is the exported form of secrets[i]
	// forms[i] are the encodings of secrets[i] that are searched inside longer strings;
	// computed on first use.
	forms     [][]string
	formsDone bool
	view      *extract.View
}

// New returns the Redactor of one exchange: hash gives the exported form of any value (the
// engine's hashed parameter form), secrets are the exchange's hashed parameter values, and v
// is the exchange's View, whose parsed bodies and decoded tokens it reuses (nil: tokens are
// not decoded).
func New(hash func(string) string, secrets []Secret, v *extract.View) *Redactor {
	r := &Redactor{hash: hash, view: v}
	for _, s := range secrets {
		if s.Clear != "" && !slices.Contains(r.secrets, s.Clear) {
			r.secrets = append(r.secrets, s.Clear)
			r.hashed = append(r.hashed, s.Hashed)
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

func (r *Redactor) encodings() [][]string {
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

// Value returns the hashed form when s is itself a secret, else s with every secret inside it
// replaced.
func (r *Redactor) Value(s string) string {
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
func (r *Redactor) token(s string) (string, bool) {
	if r == nil || len(r.secrets) == 0 || strings.Count(s, ".") != 2 || r.view == nil {
		return s, false
	}
	claims, ok := r.view.UnverifiedClaims(s)
	if !ok {
		return s, false
	}
	budget := 4096
	if r.holds(claims, &budget) {
		return r.hash(s), true
	}
	return s, false
}

// holds reports whether a decoded document contains a secret anywhere in a scalar.
func (r *Redactor) holds(doc any, budget *int) bool {
	*budget--
	if *budget < 0 {
		return true // too large to check: treat as holding one, the safe side
	}
	switch t := doc.(type) {
	case map[string]any:
		for k, v := range t {
			if r.Value(k) != k || r.holds(v, budget) {
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
			return r.Value(s) != s
		}
	}
	return false
}

// cutTail removes a trailing fragment of a secret that a cut (a body or value cut at its cap)
// left at the end of s.
func (r *Redactor) cutTail(s string) string {
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

// Path hashes secrets in a request path: whole segments that are a secret (a request.path
// capture, any length) and, for longer secrets, occurrences inside segments and the query.
func (r *Redactor) Path(p string) string {
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
	return r.Value(p)
}

// jsonBody rewrites a parsed JSON body; false when it is too deep to rewrite value by value or
// cannot be serialised again. An unchanged body is returned as nothing: the caller keeps the
// text as sent (scrubbed, which then finds nothing).
func (r *Redactor) jsonBody(doc any) (string, bool) {
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
func (r *Redactor) jsonNode(n any, depth int, containers bool) (any, bool, bool) {
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
			nk := r.Value(k)
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
		if h := r.Value(t); h != t {
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
func (r *Redactor) exact(v any) (string, bool) {
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
