package sessions

import (
	"strings"
	"testing"

	"github.com/apisessions/apisessions/sessions/traffic"
)

func TestClientIP(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		source  string
		from    string
		hops    int
		headers []traffic.Header
		want    string
	}{
		{name: "source ipv4 with port", source: "203.0.113.7:51234", from: "source", want: "203.0.113.7"},
		{name: "source ipv6 with port", source: "[2001:db8::1]:443", from: "source", want: "2001:db8::1"},
		{name: "source bare ipv4", source: "198.51.100.2", from: "source", want: "198.51.100.2"},
		{name: "source bare ipv6", source: "2001:db8::2", from: "source", want: "2001:db8::2"},
		{name: "source ipv4-mapped ipv6 unmapped", source: "[::ffff:192.0.2.1]:80", from: "source", want: "192.0.2.1"},
		{name: "source ipv6 zone dropped", source: "[fe80::1%eth0]:80", from: "source", want: "fe80::1"},
		{name: "source invalid", source: "not-an-ip:80", from: "source", want: ""},
		{name: "source ipv4 with bad port", source: "203.0.113.7:port", from: "source", want: ""},
		{name: "source ipv4 leading zero", source: "203.0.113.07:80", from: "source", want: ""},
		{name: "source ipv6 without brackets and a port-like tail", source: "2001:db8::1:80", from: "source", want: "2001:db8::1:80"},
		{name: "source bracketed ipv6 without port", source: "[2001:db8::1]", from: "source", want: ""},
		{name: "source ipv4 empty port", source: "203.0.113.7:", from: "source", want: ""},
		{name: "source empty", from: "", want: ""},
		{name: "xff no trusted hops takes rightmost", source: "10.0.0.1:1", from: "x-forwarded-for", hops: 0,
			headers: []traffic.Header{{Name: "x-forwarded-for", Value: "1.1.1.1, 2.2.2.2, 3.3.3.3"}}, want: "3.3.3.3"},
		{name: "xff one trusted hop", source: "10.0.0.1:1", from: "x-forwarded-for", hops: 1,
			headers: []traffic.Header{{Name: "x-forwarded-for", Value: "1.1.1.1, 2.2.2.2, 3.3.3.3"}}, want: "2.2.2.2"},
		{name: "xff two trusted hops", source: "10.0.0.1:1", from: "x-forwarded-for", hops: 2,
			headers: []traffic.Header{{Name: "x-forwarded-for", Value: "1.1.1.1,2.2.2.2,3.3.3.3"}}, want: "1.1.1.1"},
		{name: "xff ipv6 entry", source: "10.0.0.1:1", from: "x-forwarded-for", hops: 1,
			headers: []traffic.Header{{Name: "x-forwarded-for", Value: "2001:db8::5, 10.1.1.1"}}, want: "2001:db8::5"},
		{name: "xff entry with port", source: "10.0.0.1:1", from: "x-forwarded-for",
			headers: []traffic.Header{{Name: "x-forwarded-for", Value: "[2001:db8::6]:1234"}}, want: "2001:db8::6"},
		{name: "xff repeated header lines read right to left", source: "10.0.0.1:1", from: "x-forwarded-for", hops: 1,
			headers: []traffic.Header{{Name: "x-forwarded-for", Value: "1.1.1.1"}, {Name: "x-forwarded-for", Value: "2.2.2.2"}}, want: "1.1.1.1"},
		{name: "xff fewer entries than trusted hops uses source", source: "10.0.0.1:1", from: "x-forwarded-for", hops: 3,
			headers: []traffic.Header{{Name: "x-forwarded-for", Value: "1.1.1.1, 2.2.2.2"}}, want: "10.0.0.1"},
		{name: "xff absent uses source", source: "10.0.0.1:1", from: "x-forwarded-for", want: "10.0.0.1"},
		{name: "xff selected entry invalid gives empty, not a guess", source: "10.0.0.1:1", from: "x-forwarded-for", hops: 1,
			headers: []traffic.Header{{Name: "x-forwarded-for", Value: "1.1.1.1, garbage, 3.3.3.3"}}, want: ""},
		{name: "xff huge hostile list", source: "10.0.0.1:1", from: "x-forwarded-for", hops: 1,
			headers: []traffic.Header{{Name: "x-forwarded-for", Value: strings.Repeat("9.9.9.9,", 100000) + "4.4.4.4, 5.5.5.5"}}, want: "4.4.4.4"},
		{name: "custom header", source: "10.0.0.1:1", from: "x-real-ip",
			headers: []traffic.Header{{Name: "x-real-ip", Value: " 192.0.2.9 "}}, want: "192.0.2.9"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			x := &traffic.Exchange{SourceAddress: tc.source, RequestHeaders: tc.headers}
			if got := clientIP(x, tc.from, tc.hops); got != tc.want {
				t.Errorf("%s: clientIP = %q, want %q", tc.name, got, tc.want)
			}
		})
	}
}

func TestFingerprints(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		s    string
		ja3  bool
		ja4  bool
	}{
		{name: "ja3 digest", s: "e7d705a3286e19ea42f587b344ee6865", ja3: true},
		{name: "ja3 upper case", s: "E7D705A3286E19EA42F587B344EE6865", ja3: true},
		{name: "ja3 too short", s: "e7d705a3286e19ea"},
		{name: "ja3 not hex", s: "z7d705a3286e19ea42f587b344ee6865"},
		{name: "ja4 quic", s: "q13d0310h3_55b375c5d22e_cd85d2d88918", ja4: true},
		{name: "ja4 upper-case hash", s: "t13d1516h2_8DAAF6152771_e5627efa2ab1"},
		{name: "ja4 unknown transport", s: "x13d1516h2_8daaf6152771_e5627efa2ab1"},
		{name: "ja4", s: "t13d1516h2_8daaf6152771_e5627efa2ab1", ja4: true},
		{name: "ja4 with injection", s: "t13d1516h2_8daaf6152771\"><script>"},
		{name: "ja4 too long", s: strings.Repeat("a", 65)},
		{name: "empty", s: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := validJA3(tc.s); got != tc.ja3 {
				t.Errorf("%s: validJA3 = %v, want %v", tc.name, got, tc.ja3)
			}
			if got := validJA4(tc.s); got != tc.ja4 {
				t.Errorf("%s: validJA4 = %v, want %v", tc.name, got, tc.ja4)
			}
		})
	}
}
