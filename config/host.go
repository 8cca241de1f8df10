package config

import (
	"path"
	"strings"
)

// HostMatch reports whether host (an :authority value, port and any trailing dot ignored)
// matches pattern, a path.Match glob such as "*.example.com", without regard to case. "*"
// matches any run of characters, dots included, so "*.example.com" matches
// "a.b.example.com" but not "example.com". A malformed pattern matches nothing; Validate
// rejects those.
func HostMatch(pattern, host string) bool {
	host = StripPort(host)
	ok, err := path.Match(strings.ToLower(pattern), strings.ToLower(host))
	return ok && err == nil
}

// StripPort returns the host part of an :authority value: "example.com:8443" ->
// "example.com", "[::1]:8080" -> "::1", "example.com." -> "example.com". A bare IPv6 address
// is returned as it is.
func StripPort(authority string) string {
	h := authority
	if strings.HasPrefix(h, "[") {
		if i := strings.IndexByte(h, ']'); i > 0 {
			return h[1:i]
		}
		return h
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 && strings.IndexByte(h, ':') == i {
		h = h[:i]
	}
	return strings.TrimSuffix(h, ".")
}
