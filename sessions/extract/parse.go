package extract

import "strings"

// appendCookiePairs splits one cookie header ("a=b; c=d") into pairs. It is lenient the way
// browsers and servers are: a pair without "=" or with an empty name is skipped, not fatal;
// a value in double quotes is unquoted.
func appendCookiePairs(dst []pair, h string) []pair {
	for h != "" && len(dst) < maxPairs {
		var part string
		if i := strings.IndexByte(h, ';'); i >= 0 {
			part, h = h[:i], h[i+1:]
		} else {
			part, h = h, ""
		}
		if p, ok := cookiePair(part); ok {
			dst = append(dst, p)
		}
	}
	return dst
}

// parseSetCookie returns the name=value pair that starts a set-cookie header; attributes
// (Path, Expires, …) after the first ";" are ignored.
func parseSetCookie(h string) (pair, bool) {
	if i := strings.IndexByte(h, ';'); i >= 0 {
		h = h[:i]
	}
	return cookiePair(h)
}

func cookiePair(part string) (pair, bool) {
	eq := strings.IndexByte(part, '=')
	if eq < 0 {
		return pair{}, false
	}
	name := trimOWS(part[:eq])
	if name == "" {
		return pair{}, false
	}
	val := trimOWS(part[eq+1:])
	if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
		val = val[1 : len(val)-1]
	}
	return pair{name: name, value: val}, true
}

// trimOWS trims HTTP optional whitespace (spaces and tabs).
func trimOWS(s string) string {
	for s != "" && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for s != "" && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// appendQueryPairs splits a query string on "&" into raw (still escaped) pairs; decoding
// waits until a name is looked up, so unread pairs cost nothing.
func appendQueryPairs(dst []pair, q string) []pair {
	for q != "" && len(dst) < maxPairs {
		var part string
		if i := strings.IndexByte(q, '&'); i >= 0 {
			part, q = q[:i], q[i+1:]
		} else {
			part, q = q, ""
		}
		if part == "" {
			continue
		}
		name, val, _ := strings.Cut(part, "=")
		dst = append(dst, pair{name: name, value: val})
	}
	return dst
}

// unescapedEquals reports whether raw, %-decoded (and with "+" as space when plus is set),
// equals name, without allocating. A raw name with a malformed escape is compared as sent,
// as its value would be returned.
func unescapedEquals[S ~string | ~[]byte](raw S, name string, plus bool) bool {
	j := 0
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == '%':
			if i+2 >= len(raw) || !isHex(raw[i+1]) || !isHex(raw[i+2]) {
				return string(raw) == name
			}
			c = unhex(raw[i+1])<<4 | unhex(raw[i+2])
			i += 2
		case c == '+' && plus:
			c = ' '
		}
		if j >= len(name) || name[j] != c {
			// Keep scanning for a malformed escape only if one could change the answer.
			return !wellFormed(raw, i+1) && string(raw) == name
		}
		j++
	}
	return j == len(name)
}

// wellFormed reports whether every "%" of raw from offset i on starts a valid escape.
func wellFormed[S ~string | ~[]byte](raw S, i int) bool {
	for ; i < len(raw); i++ {
		if raw[i] == '%' {
			if i+2 >= len(raw) || !isHex(raw[i+1]) || !isHex(raw[i+2]) {
				return false
			}
			i += 2
		}
	}
	return true
}

// unescape %-decodes s (and turns "+" into a space when plus is set). It is false on a
// malformed escape; the caller then uses the raw value. A string without escapes is returned
// without copying.
func unescape[S ~string | ~[]byte](s S, plus bool) (string, bool) {
	n := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return "", false
			}
			n++
			i += 2
		case '+':
			if plus {
				n++
			}
		}
	}
	if n == 0 {
		return string(s), true
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%':
			c = unhex(s[i+1])<<4 | unhex(s[i+2])
			i += 2
		case c == '+' && plus:
			c = ' '
		}
		b.WriteByte(c)
	}
	return b.String(), true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}
