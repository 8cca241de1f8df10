package jsonstr

import "unicode/utf8"

// Escaping says which characters beyond JSON's own (the quote, the backslash, control
// bytes) are escaped.
type Escaping bool

const (
	// Canonical escapes only what JSON requires: the shortest faithful form.
	Canonical Escaping = false
	// HTMLSafe also escapes <, > and & (so JSON embedded in HTML cannot close a script
	// element) and U+2028 and U+2029 (JavaScript reads them as line ends), exactly as
	// encoding/json does by default.
	HTMLSafe Escaping = true
)

// plain marks, for each escaping, the ASCII bytes copied unchanged: printable ASCII and DEL,
// except the quote and backslash, and for HTMLSafe <, > and &.
var plain = func() (t [2][utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[0][c], t[1][c] = true, true
	}
	for _, c := range `"\` {
		t[0][c], t[1][c] = false, false
	}
	for _, c := range `<>&` {
		t[1][c] = false
	}
	return t
}()

const hexDigits = "0123456789abcdef"

// Append writes s as a quoted JSON string: the quote and backslash get a backslash; \b, \f,
// \n, \r and \t keep their short forms; other control bytes (and, HTMLSafe, <, > and &) are
// written \u00XX; HTMLSafe writes U+2028 and U+2029 as \u2028 and \u2029; each byte that is
// not part of valid UTF-8 becomes \ufffd. Everything else is copied as it is.
func Append(dst []byte, s string, e Escaping) []byte {
	table := &plain[0]
	if e == HTMLSafe {
		table = &plain[1]
	}
	dst = append(dst, '"')
	// start is the first byte of s not yet written; runs of plain bytes are copied at once.
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if table[c] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case e == HTMLSafe && (r == '\u2028' || r == '\u2029'):
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
