package redact

import (
	"slices"
	"strings"
	"sync"

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

// MayHold reports cheaply whether one of the record fields could carry one of the secrets,
// so that the common case (none does) costs a few searches and no allocation. It is true when
// a secret occurs in a field (ASCII case ignored), when a field holds an escape (% or \)
// that the Redactor must decode first, when a field and a secret both hold non-ASCII text
// (whose case the Redactor folds), and when a field holds the base64 encoding of a secret at
// any alignment.
func MayHold(secrets []Secret, fields ...string) bool {
	if len(secrets) == 0 {
		return false
	}
	var cores base64Cores
	return mayHold(secrets, &cores, fields...)
}

// mayHold is MayHold with the base64 cores of the secrets, filled on first use.
func mayHold(secrets []Secret, cores *base64Cores, fields ...string) bool {
	for _, f := range fields {
		if f == "" {
			continue
		}
		if strings.IndexByte(f, '%') >= 0 || strings.IndexByte(f, '\\') >= 0 {
			return true
		}
		nonASCII := !isASCII(f)
		for i := range secrets {
			c := secrets[i].Clear
			if c != "" && (indexFold(f, c) >= 0 || nonASCII && !isASCII(c)) {
				return true
			}
		}
		if len(f) >= minBase64Run && cores.in(secrets, f) {
			return true
		}
	}
	return false
}

// Redactor replaces the secrets of one exchange — the clear values of its hashed parameters
// and, for a malicious request, the values it learns (Learn) — by their hashed form, in every
// form they may take in a request (see find.go): as sent, in upper or lower case, percent-
// and JSON-escaped (once or more) and base64-encoded. It belongs to one exchange and one
// goroutine. A nil *Redactor changes nothing.
type Redactor struct {
	hash    func(string) string
	list    []Secret // as given and learnt, for MayHold
	cores   base64Cores
	secrets []secret // the same, longest first once sorted
	sorted  bool
	learnt  int
	view    *extract.View
}

// secret is one clear value, its hashed form and the forms of it that are searched: the
// value and its Unicode upper- and lower-case forms when they differ from it beyond ASCII
// case (which the search ignores anyway).
type secret struct {
	clear, hashed string
	variants      [3]string // forms()
	nvariants     int
}

// forms are the forms of the secret that are searched: the value first.
func (s *secret) forms() []string { return s.variants[:s.nvariants] }

// New returns the Redactor of one exchange: hash gives the exported form of any value (the
// engine's hashed parameter form), secrets are the exchange's hashed parameter values (each
// Hashed being hash(Clear), which the Redactor reuses instead of hashing again), and v
// is the exchange's View, whose parsed bodies and decoded tokens it reuses (nil: tokens are
// not decoded).
func New(hash func(string) string, secrets []Secret, v *extract.View) *Redactor {
	r := redactors.Get().(*Redactor)
	r.hash, r.view = hash, v
	if cap(r.list) < len(secrets) {
		r.list = make([]Secret, 0, len(secrets))
		r.secrets = make([]secret, 0, len(secrets))
	}
	for _, s := range secrets {
		r.add(s.Clear, s.Hashed)
	}
	return r
}

// redactors keeps released Redactors: one is about a kilobyte, mostly its base64 cores.
var redactors = sync.Pool{New: func() any { return new(Redactor) }}

// maxPooledSecrets bounds the lists a released Redactor keeps for its next use.
const maxPooledSecrets = 64

// Release gives r back for a later New once nothing will use it again (the strings it
// returned are not its memory). A nil *Redactor is ignored.
func (r *Redactor) Release() {
	if r == nil {
		return
	}
	if cap(r.list) > maxPooledSecrets || cap(r.secrets) > maxPooledSecrets {
		r.list, r.secrets = nil, nil
	} else {
		clear(r.list)
		clear(r.secrets)
		r.list, r.secrets = r.list[:0], r.secrets[:0]
	}
	r.hash, r.view = nil, nil
	r.cores.done, r.cores.n = false, 0
	r.sorted, r.learnt = false, 0
	redactors.Put(r)
}

// hashOf is hash(v): the hashed form New was given when v is one of the secrets (a hashed
// query parameter's value is usually the secret its parameter read), else computed.
func (r *Redactor) hashOf(v string) string {
	for i := range r.list {
		if r.list[i].Clear == v {
			return r.list[i].Hashed
		}
	}
	return r.hash(v)
}

// add adds a secret unless it is empty or known; false when it was not added.
func (r *Redactor) add(clear, hashed string) bool {
	if clear == "" || slices.ContainsFunc(r.list, func(s Secret) bool { return s.Clear == clear }) {
		return false
	}
	r.list = append(r.list, Secret{Clear: clear, Hashed: hashed})
	sec := secret{clear: clear, hashed: hashed, nvariants: 1}
	sec.variants[0] = clear
	// ASCII text has no case forms beyond the ASCII case the search ignores.
	if !isASCII(clear) {
		for _, v := range [...]string{strings.ToLower(clear), strings.ToUpper(clear)} {
			if !slices.ContainsFunc(sec.forms(), func(w string) bool { return equalFold(v, w) }) {
				sec.variants[sec.nvariants] = v
				sec.nvariants++
			}
		}
	}
	r.secrets = append(r.secrets, sec)
	r.sorted = false
	r.cores.done, r.cores.n = false, 0 // filled again on next use; fill writes what it reads
	return true
}

// prepare sorts the secrets longest first, so that a secret containing another is replaced
// whole.
func (r *Redactor) prepare() {
	if !r.sorted {
		slices.SortStableFunc(r.secrets, func(a, b secret) int { return len(b.clear) - len(a.clear) })
		r.sorted = true
	}
}

// Value returns the hashed form when s is itself a secret, else s with every occurrence of
// a secret inside it replaced.
func (r *Redactor) Value(s string) string {
	if r == nil || len(r.secrets) == 0 || s == "" {
		return s
	}
	r.prepare()
	for i := range r.secrets {
		if s == r.secrets[i].clear {
			return r.secrets[i].hashed
		}
	}
	if !mayHold(r.list, &r.cores, s) {
		return s
	}
	spans := r.spans(s, false)
	if len(spans) == 0 {
		return s
	}
	return r.replace(s, spans)
}

// CutTail removes a trailing fragment of a secret (its first minScrubLen bytes or more, in
// any encoding Value finds) that cutting s at a cap left at its end.
func (r *Redactor) CutTail(s string) string {
	if r == nil {
		return s
	}
	r.prepare()
	return r.cutTail(s)
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

// Path hashes secrets in a request path: occurrences of secrets of at least minScrubLen
// bytes anywhere, and whole segments that are a shorter secret (a request.path capture).
func (r *Redactor) Path(p string) string {
	if r == nil || len(r.secrets) == 0 {
		return p
	}
	r.prepare()
	p = r.Value(p)
	if len(r.secrets[len(r.secrets)-1].clear) >= minScrubLen {
		return p
	}
	segs := strings.Split(p, "/")
	changed := false
	for i, seg := range segs {
		if seg == "" {
			continue
		}
		if spans := r.spans(seg, true); len(spans) > 0 {
			segs[i], changed = r.replace(seg, spans), true
		}
	}
	if !changed {
		return p
	}
	return strings.Join(segs, "/")
}
