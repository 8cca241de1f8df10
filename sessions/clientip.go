package sessions

import (
	"net/netip"
	"strings"

	"github.com/apisessions/apisessions/sessions/traffic"
)

// Caps on strings copied from traffic into records. Hashes are always computed over the full
// value; only the clear text that leaves the process is cut.
const (
	maxUserAgent  = 512
	maxParamValue = 1024
	maxPath       = 2048
	maxQuery      = 2048
	maxHost       = 256
	maxMethod     = 32
	maxScheme     = 16
	maxRequestID  = 256
)

// parseIP reads a bare address, "ip:port" or "[ipv6]:port" and returns it in canonical form
// (IPv4-mapped IPv6 unmapped, zone dropped), or "" when it is not an address.
func parseIP(s string) string {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 64 {
		return ""
	}
	// An address with a port ("a.b.c.d:port", "[v6]:port") is what Envoy's source.address
	// holds; trying it first spares a failed parse, whose error is built, on every request.
	host := s
	var a netip.Addr
	if s[0] == '[' || strings.Count(s, ":") == 1 {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			return ""
		}
		a, host = ap.Addr(), s[:strings.LastIndexByte(s, ':')]
	} else {
		var err error
		if a, err = netip.ParseAddr(s); err != nil {
			return ""
		}
	}
	if a.Is4() {
		// ParseAddr accepts only the canonical dotted form of IPv4 (no leading zeros), so the
		// text is the address as String would write it, without a copy.
		return host
	}
	return a.Unmap().WithZone("").String()
}

// clientIP resolves the client address as traffic.client_ip says. With a forwarding header the
// address is the entry trustedHops places from the right (as Envoy's xff_num_trusted_hops);
// when the header is absent or holds fewer entries than that, the request did not pass through
// the trusted proxies and the connection's source address is used. A selected entry that is not
// an address yields "", never a guess further left, which the client controls.
func clientIP(x *traffic.Exchange, from string, trustedHops int) string {
	if from == "" || from == "source" {
		return parseIP(x.SourceAddress)
	}
	skip := trustedHops
	hs := x.RequestHeaders
	for i := len(hs) - 1; i >= 0; i-- {
		if hs[i].Name != from {
			continue
		}
		v := hs[i].Value
		for {
			j := strings.LastIndexByte(v, ',')
			entry := v[j+1:]
			if skip == 0 {
				return parseIP(entry)
			}
			skip--
			if j < 0 {
				break
			}
			v = v[:j]
		}
	}
	return parseIP(x.SourceAddress)
}

// validJA3 accepts a JA3 fingerprint: an MD5 digest as 32 hex characters.
func validJA3(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isHex(s[i]) {
			return false
		}
	}
	return true
}

// validJA4 accepts a JA4 fingerprint as Envoy's %TLS_JA4_FINGERPRINT% renders it,
// "t13d1516h2_8daaf6152771_e5627efa2ab1": a 10-character prefix of lower-case letters and
// digits beginning with the transport (t, q or d), then two 12-character lower-case hex hashes.
func validJA4(s string) bool {
	if len(s) != 36 || s[10] != '_' || s[23] != '_' {
		return false
	}
	if c := s[0]; c != 't' && c != 'q' && c != 'd' {
		return false
	}
	for i := 1; i < 10; i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	for i := 11; i < 36; i++ {
		if c := s[i]; i != 23 && !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}
