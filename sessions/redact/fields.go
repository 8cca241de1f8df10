package redact

import (
	"mime"
	"net/url"
	"slices"
	"strings"

	"github.com/ohler55/ojg/jp"

	"github.com/apisessions/apisessions/config"
)

// Targets are the request-side places whose values are replaced by their hashed form in the
// content of a malicious request, whether or not a parameter read them in that request: the
// places hashed parameters read (Add), the built-in session cookies and headers, and the
// fields Scrub names.
type Targets struct {
	Headers []string // lower case
	Cookies []string
	Queries []string
	Forms   []string // urlencoded and multipart body fields
	// Fields are the JSON keys whose values hashed request-body parameters read (the last name
	// of their path). In a body that cannot be parsed (cut at max_body_bytes, invalid) the
	// parameter reads nothing, so these keys are looked for by name, case ignored.
	Fields []string
	// Scrub names the fields hidden whatever the configuration reads: JSON members, form
	// fields, query parameters, cookies and headers (attacks.scrub_fields). Nil: none.
	Scrub *Names
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
		if p.Path != "" {
			t.Fields = appendNew(t.Fields, lastKey(p.Path))
		}
	}
}

// lastKey is the last member name a JSONPath selects by ("email" in $.user.email and in
// $.users[*].email), "" when it names none.
func lastKey(path string) string {
	x, err := jp.ParseString(path)
	if err != nil {
		return ""
	}
	for i := len(x) - 1; i >= 0; i-- {
		if c, ok := x[i].(jp.Child); ok {
			return string(c)
		}
	}
	return ""
}

func appendNew(list []string, s string) []string {
	if s == "" || slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// bodyField reports whether a JSON member or a body field of this name is hidden by name.
func (t *Targets) bodyField(name string) bool {
	return slices.ContainsFunc(t.Fields, func(f string) bool { return strings.EqualFold(f, name) }) ||
		slices.Contains(t.Forms, name) || t.Scrub.Match(name)
}

// Names matches field names as attacks.scrub_fields does: a field matches a listed name when
// its own name, in lower case and without "-" and "_", equals the listed name (written the
// same way) or ends with it. "password" matches Password, new_password and X-Password;
// "api_key" matches apiKey and x-api-key.
type Names struct {
	list []string // lower case, without "-" and "_"
}

// NewNames compiles the lists of names into one matcher; nil when they hold no name.
func NewNames(lists ...[]string) *Names {
	n := &Names{}
	for _, l := range lists {
		for _, s := range l {
			if k := normalName(s); k != "" && !slices.Contains(n.list, k) {
				n.list = append(n.list, k)
			}
		}
	}
	if len(n.list) == 0 {
		return nil
	}
	return n
}

// ScrubNames compiles attacks.scrub_fields: the default list when it is on, and the extra
// names.
func ScrubNames(c config.ScrubFields) *Names {
	if c.Defaults {
		return NewNames(config.DefaultScrubFields, c.Extra)
	}
	return NewNames(c.Extra)
}

func normalName(s string) string {
	return strings.ToLower(strings.NewReplacer("-", "", "_", "").Replace(s))
}

// Match reports whether name matches one of the names. A bracketed name, as PHP, Rails and
// qs nest a field in a form or a query (user[password], password[], a[b][api_key]), matches
// when one of its parts does, since the server reads the value under that part. It does not
// allocate.
func (n *Names) Match(name string) bool {
	if n == nil || name == "" {
		return false
	}
	if n.ends(name) {
		return true
	}
	if !strings.ContainsAny(name, "[]") {
		return false
	}
	for rest := name; rest != ""; {
		i := strings.IndexAny(rest, "[]")
		if i < 0 {
			i = len(rest)
		}
		if part := rest[:i]; part != "" && n.ends(part) {
			return true
		}
		rest = rest[min(i+1, len(rest)):]
	}
	return false
}

// ends reports whether s ends with one of the names.
func (n *Names) ends(s string) bool {
	for _, k := range n.list {
		if endsWithName(s, k) {
			return true
		}
	}
	return false
}

// endsWithName reports whether name, lower-cased and without "-" and "_", ends with k.
func endsWithName(name, k string) bool {
	i := len(name) - 1
	for j := len(k) - 1; j >= 0; j-- {
		for i >= 0 && (name[i] == '-' || name[i] == '_') {
			i--
		}
		if i < 0 {
			return false
		}
		c := name[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != k[j] {
			return false
		}
		i--
	}
	return true
}

// rewritePairs rewrites an urlencoded list (a query string or a form body, which may be cut):
// the values of the fields in names or Scrub become the hashed form of their decoded value,
// a cut value included; every other pair is scrubbed as written, so a secret in it is found
// whatever its escaping.
func (r *Redactor) rewritePairs(q string, names []string, scrub *Names) string {
	var b strings.Builder
	b.Grow(len(q))
	for i := 0; ; i++ {
		part, rest, more := strings.Cut(q, "&")
		if i > 0 {
			b.WriteByte('&')
		}
		if !r.hidePair(&b, part, names, scrub) {
			r.semicolonPairs(&b, part, names, scrub)
		}
		if !more {
			return b.String()
		}
		q = rest
	}
}

// hidePair writes pair to b with its value hashed and reports true when its name is hidden (a
// name of names, or one scrub matches) and it has a value; else it writes nothing.
func (r *Redactor) hidePair(b *strings.Builder, pair string, names []string, scrub *Names) bool {
	rawName, rawVal, hasVal := strings.Cut(pair, "=")
	if !hasVal || rawVal == "" {
		return false
	}
	if name := unescapeOr(rawName); !slices.Contains(names, name) && !scrub.Match(name) {
		return false
	}
	b.WriteString(r.Value(rawName))
	b.WriteByte('=')
	b.WriteString(r.hashOf(unescapeOr(rawVal)))
	return true
}

// semicolonPairs writes part, a pair that no name hides, to b with ";" taken as a separator
// too, as some servers take it (Rack before 3, old PHP and Python setups): a hidden name after
// a ";" (a=1;password=…) has its value hashed as a pair of its own would.
func (r *Redactor) semicolonPairs(b *strings.Builder, part string, names []string, scrub *Names) {
	for i := 0; ; i++ {
		sub, rest, more := strings.Cut(part, ";")
		if i > 0 {
			b.WriteByte(';')
		}
		if i == 0 || !r.hidePair(b, sub, names, scrub) {
			b.WriteString(r.Value(sub))
		}
		if !more {
			return
		}
		part = rest
	}
}

// pairs yields the decoded name and value of every pair of an urlencoded list; when cut is
// true the last pair, which a cut may have shortened, is left out.
func pairs(q string, cut bool) func(yield func(name, value string) bool) {
	return func(yield func(name, value string) bool) {
		for q != "" {
			part, rest, more := strings.Cut(q, "&")
			q = rest
			if !more && cut {
				return
			}
			name, val, _ := strings.Cut(part, "=")
			if !yield(unescapeOr(name), unescapeOr(val)) {
				return
			}
		}
	}
}

// unescapeOr is the query-decoded s, or s as written when it does not decode.
func unescapeOr(s string) string {
	if !strings.ContainsAny(s, "%+") {
		return s
	}
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	return s
}

// multipartMembers yields the values of the fields of a multipart/form-data body, which may
// be cut, whose name field accepts. Parts without a name are skipped.
func multipartMembers(body, boundary string, field func(string) bool) func(yield func(member) bool) {
	return func(yield func(member) bool) {
		delim := "--" + boundary
		i := strings.Index(body, delim)
		for i >= 0 {
			i += len(delim)
			head := i
			hdrEnd := strings.Index(body[head:], "\r\n\r\n")
			if hdrEnd < 0 {
				return
			}
			start := head + hdrEnd + 4
			next := strings.Index(body[start:], "\r\n"+delim)
			end, complete := len(body), false
			if next >= 0 {
				end, complete = start+next, true
			}
			if name := partName(body[head : head+hdrEnd]); name != "" && field(name) {
				if !yield(member{start: start, end: end, value: body[start:end], complete: complete}) {
					return
				}
			}
			if !complete {
				return
			}
			i = end + 2
		}
	}
}

// partName is the name parameter of a part's Content-Disposition header.
func partName(headers string) string {
	for line := range strings.SplitSeq(headers, "\r\n") {
		name, val, ok := strings.Cut(line, ":")
		if !ok || !strings.EqualFold(strings.TrimSpace(name), "content-disposition") {
			continue
		}
		if _, params, err := mime.ParseMediaType(strings.TrimSpace(val)); err == nil {
			return params["name"]
		}
	}
	return ""
}

// multipartFields replaces the values of the fields of a multipart body that t names by
// their hashed form, a cut value included.
func (r *Redactor) multipartFields(body, boundary string, t *Targets) string {
	var b strings.Builder
	last, changed := 0, false
	for m := range multipartMembers(body, boundary, t.bodyField) {
		if m.value == "" {
			continue
		}
		b.WriteString(body[last:m.start])
		b.WriteString(r.hash(m.value))
		last, changed = m.end, true
	}
	if !changed {
		return body
	}
	b.WriteString(body[last:])
	return b.String()
}

// QueryNamed reports whether the query string q has a pair with a value whose name t hides:
// a query parameter a hashed parameter reads, or a name Scrub lists. A name written with
// escapes counts as hidden, so that Query decodes it, and so does a value holding a ";". It does not allocate.
func (t *Targets) QueryNamed(q string) bool {
	for q != "" {
		var part string
		part, q, _ = strings.Cut(q, "&")
		name, val, ok := strings.Cut(part, "=")
		if !ok || val == "" {
			continue
		}
		// A ";" may separate pairs too (semicolonPairs): Query looks at what follows it.
		if strings.ContainsAny(name, "%+") || strings.IndexByte(val, ';') >= 0 || slices.Contains(t.Queries, name) || t.Scrub.Match(name) {
			return true
		}
	}
	return false
}

// Query rewrites the query string q (without "?") of an ordinary request record as the
// content of a malicious one is: the values of the pairs t hides by name become the hashed
// form of their decoded value, and every secret elsewhere is replaced.
func (r *Redactor) Query(t *Targets, q string) string {
	return r.rewritePairs(q, t.Queries, t.Scrub)
}
