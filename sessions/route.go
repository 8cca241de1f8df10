package sessions

import "strings"

// idPlaceholder replaces path segments that look like identifiers.
const idPlaceholder = "{id}"

// minTokenLen is the shortest segment treated as an opaque base64-like token; shorter mixed
// segments ("v2", "page10") are usually names.
const minTokenLen = 20

// minHexLen is the shortest all-hex segment treated as an id (object ids, digests).
const minHexLen = 16

// route templates a path (already without its query) so requests to the same endpoint share
// one route: numbers, UUIDs, long hex strings, long base64/base64url tokens and e-mail
// addresses become "{id}". It allocates only when a segment changes.
func route(path string) string {
	var b strings.Builder
	changed := false
	start := 0
	for start <= len(path) {
		end := strings.IndexByte(path[start:], '/')
		if end < 0 {
			end = len(path)
		} else {
			end += start
		}
		seg := path[start:end]
		if isID(seg) {
			if !changed {
				changed = true
				b.Grow(len(path))
				b.WriteString(path[:start])
			}
			b.WriteString(idPlaceholder)
		} else if changed {
			b.WriteString(seg)
		}
		if end == len(path) {
			break
		}
		if changed {
			b.WriteByte('/')
		}
		start = end + 1
	}
	if !changed {
		return path
	}
	return b.String()
}

func isID(seg string) bool {
	if seg == "" {
		return false
	}
	var digits, letters, hex, other int
	at := -1
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		switch {
		case c >= '0' && c <= '9':
			digits++
			hex++
		case c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F':
			letters++
			hex++
		case c >= 'g' && c <= 'z' || c >= 'G' && c <= 'Z':
			letters++
		case c == '@':
			if at >= 0 {
				return false
			}
			at = i
			other++
		default:
			other++
		}
	}
	switch {
	case digits == len(seg):
		return true
	case isUUID(seg):
		return true
	case hex == len(seg) && len(seg) >= minHexLen:
		return true
	case at > 0:
		return isEmail(seg, at)
	case len(seg) >= minTokenLen && digits > 0 && letters > 0:
		return isTokenChars(seg)
	}
	return false
}

// isUUID matches the 8-4-4-4-12 hex form in any case.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return false
			}
		default:
			if !isHex(s[i]) {
				return false
			}
		}
	}
	return true
}

// isEmail accepts local@domain with a dot inside the domain; at is the index of '@'. Percent
// escapes are allowed in the local part because paths arrive encoded.
func isEmail(s string, at int) bool {
	domain := s[at+1:]
	dot := strings.LastIndexByte(domain, '.')
	if dot <= 0 || dot == len(domain)-1 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' {
			continue
		}
		switch c {
		case '@', '.', '-', '_', '+', '%':
			continue
		}
		return false
	}
	return true
}

// isTokenChars accepts the alphabets of base64 and base64url, padding included.
func isTokenChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' {
			continue
		}
		switch c {
		case '-', '_', '+', '=', '.':
			continue
		}
		return false
	}
	return true
}
