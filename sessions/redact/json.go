package redact

import (
	"slices"
	"strings"

	"github.com/ohler55/ojg"
	"github.com/ohler55/ojg/oj"

	"github.com/apisessions/apisessions/sessions/extract"
)

// jsonRewrite is what one rewriting of a parsed JSON body needs besides the Redactor.
type jsonRewrite struct {
	// containers is true when a secret is itself an object or an array, which is then
	// compared with whole containers.
	containers bool
	// field reports whether a member's key names a field whose value is hashed whatever it is.
	field func(key string) bool
}

// jsonBody rewrites a parsed JSON body: secrets replaced and the values of the members
// whose key field accepts hashed. changed is false when there was nothing to replace; ok is
// false when the body is too deep to rewrite value by value or cannot be serialised again,
// and must then be scrubbed as text.
func (r *Redactor) jsonBody(doc any, field func(string) bool) (out string, changed, ok bool) {
	rw := jsonRewrite{field: field}
	for i := range r.secrets {
		if c := r.secrets[i].clear[0]; c == '{' || c == '[' {
			rw.containers = true
		}
	}
	node, changed, ok := r.jsonNode(doc, 0, &rw)
	if !ok || !changed {
		return "", false, ok
	}
	b, err := oj.Marshal(node, &ojg.Options{Sort: true, HTMLUnsafe: true})
	if err != nil {
		return "", false, false
	}
	return string(b), true, true
}

// jsonNode returns the node with secrets replaced, whether it changed, and false when it is
// too deep. New containers are built only where something changed; the parsed document is
// shared and read-only.
func (r *Redactor) jsonNode(n any, depth int, rw *jsonRewrite) (any, bool, bool) {
	if depth > maxRedactDepth {
		return nil, false, false
	}
	switch t := n.(type) {
	case map[string]any:
		if rw.containers && depth <= maxContainerDepth {
			if h, ok := r.exact(t); ok {
				return h, true, true
			}
		}
		return r.jsonObject(t, depth, rw)
	case []any:
		if rw.containers && depth <= maxContainerDepth {
			if h, ok := r.exact(t); ok {
				return h, true, true
			}
		}
		var out []any
		for i, v := range t {
			nv, changed, ok := r.jsonNode(v, depth+1, rw)
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

// jsonObject is jsonNode for an object: keys scrubbed, the values of named fields hashed
// whole, the others rewritten.
func (r *Redactor) jsonObject(t map[string]any, depth int, rw *jsonRewrite) (any, bool, bool) {
	var out map[string]any
	for k, v := range t {
		var nv any
		changed := false
		if s, ok := extract.Scalar(v); ok && rw.field != nil && rw.field(k) {
			nv, changed = r.hash(s), true
		} else {
			var ok bool
			if nv, changed, ok = r.jsonNode(v, depth+1, rw); !ok {
				return nil, false, false
			}
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
}

// exact returns the hashed form of a JSON value whose rendering (canonical JSON for objects
// and arrays, as parameters export them) is a secret.
func (r *Redactor) exact(v any) (string, bool) {
	s, ok := extract.Scalar(v)
	if !ok {
		return "", false
	}
	for i := range r.secrets {
		if s == r.secrets[i].clear {
			return r.secrets[i].hashed, true
		}
	}
	return "", false
}

// member is a value found in a text by the name of its field: text[start:end], its content
// (a JSON string's unescaped text, anything else as written) and whether the text holds all
// of it (false when a cut fell inside it).
type member struct {
	start, end int
	value      string
	complete   bool
}

// jsonMembers yields the members of JSON text whose key field accepts, outermost first. The
// text may be cut or invalid: only strings are tokenised, a key being a string followed by
// ':', so a body cut at max_body_bytes still shows the value (or the start of the value) of
// every member it reached.
func jsonMembers(text string, field func(string) bool) func(yield func(member) bool) {
	return func(yield func(member) bool) {
		for i := 0; i < len(text); {
			q := strings.IndexByte(text[i:], '"')
			if q < 0 {
				return
			}
			key, end, closed := jsonString(text, i+q)
			if !closed {
				return
			}
			i = end
			c := skipSpace(text, end)
			if c >= len(text) || text[c] != ':' || !field(key) {
				continue
			}
			v := skipSpace(text, c+1)
			if v >= len(text) {
				return
			}
			m := jsonValue(text, v)
			if !yield(m) {
				return
			}
			i = m.end
		}
	}
}

// jsonValue reads the JSON value that starts at text[v].
func jsonValue(text string, v int) member {
	switch text[v] {
	case '"':
		s, end, closed := jsonString(text, v)
		return member{start: v, end: end, value: s, complete: closed}
	case '{', '[':
		end, closed := skipContainer(text, v)
		return member{start: v, end: end, value: text[v:end], complete: closed}
	}
	end := v
	for end < len(text) && !strings.ContainsRune(",}] \t\r\n", rune(text[end])) {
		end++
	}
	return member{start: v, end: end, value: text[v:end], complete: end < len(text)}
}

// jsonString reads the string whose quote is at text[i]: its unescaped content, the index
// after its closing quote (len(text) when cut) and whether it was closed.
func jsonString(text string, i int) (string, int, bool) {
	escaped := false
	for j := i + 1; j < len(text); j++ {
		switch text[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			if !escaped {
				return text[i+1 : j], j + 1, true
			}
			return unescapeJSON(text[i+1 : j]), j + 1, true
		}
	}
	s := text[i+1:]
	s = s[:len(s)-danglingEscape(s)]
	if escaped {
		s = unescapeJSON(s)
	}
	return s, len(text), false
}

// skipContainer returns the index after the object or array that starts at text[i], and
// false when the text ends first.
func skipContainer(text string, i int) (int, bool) {
	depth := 0
	for j := i; j < len(text); j++ {
		switch text[j] {
		case '"':
			_, end, closed := jsonString(text, j)
			if !closed {
				return len(text), false
			}
			j = end - 1
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return j + 1, true
			}
		}
	}
	return len(text), false
}

func skipSpace(text string, i int) int {
	for i < len(text) && (text[i] == ' ' || text[i] == '\t' || text[i] == '\r' || text[i] == '\n') {
		i++
	}
	return i
}

// unescapeJSON decodes the escapes of a JSON string's content; an invalid escape is kept as
// written.
func unescapeJSON(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		if s[i] == '\\' {
			if r, n := jsonEscape([]byte(s[i:min(len(s), i+12)])); n > 0 {
				b.WriteRune(r)
				i += n
				continue
			}
		}
		b.WriteByte(s[i])
		i++
	}
	return b.String()
}

// jsonFields replaces, in JSON text that may be cut or invalid, the value of every member
// whose key field accepts by the quoted hashed form of its content, a cut value included.
func (r *Redactor) jsonFields(text string, field func(string) bool) string {
	var b strings.Builder
	last, changed := 0, false
	for m := range jsonMembers(text, field) {
		if m.value == "" {
			continue
		}
		b.WriteString(text[last:m.start])
		b.WriteByte('"')
		b.WriteString(r.hash(m.value))
		b.WriteByte('"')
		last, changed = m.end, true
	}
	if !changed {
		return text
	}
	b.WriteString(text[last:])
	return b.String()
}
