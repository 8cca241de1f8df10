package config

import "testing"

func TestHostMatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, pattern, host string
		want                bool
	}{
		{name: "exact", pattern: "api.example.com", host: "api.example.com", want: true},
		{name: "case-insensitive", pattern: "API.example.com", host: "api.EXAMPLE.com", want: true},
		{name: "port stripped", pattern: "api.example.com", host: "api.example.com:8443", want: true},
		{name: "trailing dot", pattern: "api.example.com", host: "api.example.com.", want: true},
		{name: "wildcard subdomain", pattern: "*.example.com", host: "shop.example.com", want: true},
		{name: "wildcard spans dots", pattern: "*.example.com", host: "a.b.example.com", want: true},
		{name: "wildcard needs a subdomain", pattern: "*.example.com", host: "example.com", want: false},
		{name: "other domain", pattern: "*.example.com", host: "example.org", want: false},
		{name: "suffix is not a match", pattern: "example.com", host: "badexample.com", want: false},
		{name: "character class", pattern: "api-[0-9].example.com", host: "api-3.example.com:80", want: true},
		{name: "IPv6 with port", pattern: "::1", host: "[::1]:8080", want: true},
		{name: "IPv6 bracketed", pattern: "::1", host: "[::1]", want: true},
		{name: "bare IPv6 kept", pattern: "fe80::1", host: "fe80::1", want: true},
		{name: "malformed pattern matches nothing", pattern: "[a", host: "[a", want: false},
		{name: "empty host", pattern: "*", host: "", want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := HostMatch(tc.pattern, tc.host); got != tc.want {
				t.Errorf("HostMatch(%q, %q) = %v, want %v", tc.pattern, tc.host, got, tc.want)
			}
		})
	}
}

func TestStripPort(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, in, want string }{
		{name: "name", in: "example.com", want: "example.com"},
		{name: "name and port", in: "example.com:443", want: "example.com"},
		{name: "IPv4 and port", in: "10.0.0.1:80", want: "10.0.0.1"},
		{name: "IPv6 and port", in: "[2001:db8::1]:443", want: "2001:db8::1"},
		{name: "unclosed bracket", in: "[2001:db8::1", want: "[2001:db8::1"},
		{name: "bare IPv6", in: "2001:db8::1", want: "2001:db8::1"},
		{name: "empty", in: "", want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := StripPort(tc.in); got != tc.want {
				t.Errorf("StripPort(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestClosest(t *testing.T) {
	t.Parallel()
	keys := []string{"server", "traffic", "sessions", "parameters", "max_parameters", "sinks"}
	tests := []struct {
		name, word, want string
	}{
		{name: "one substitution", word: "paramaters", want: "parameters"},
		{name: "transposition", word: "sesisons", want: "sessions"},
		{name: "missing letter", word: "sink", want: "sinks"},
		{name: "case and dashes ignored", word: "Max-Parameters", want: "max_parameters"},
		{name: "too far", word: "database", want: ""},
		{name: "short words allow one edit", word: "sinkz", want: "sinks"},
		{name: "short words allow no more", word: "sinx", want: ""},
		{name: "very long word", word: string(make([]byte, 100)), want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, ok := closest(tc.word, keys)
			if got != tc.want || ok != (tc.want != "") {
				t.Errorf("closest(%q) = (%q, %v), want %q", tc.word, got, ok, tc.want)
			}
		})
	}
}

func TestEditDistance(t *testing.T) {
	t.Parallel()
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"a", "", 1}, {"", "abc", 3}, {"kitten", "sitting", 3},
		{"ab", "ba", 1}, {"abc", "acb", 1}, {"same", "same", 0},
	}
	for _, tc := range tests {
		if got := editDistance(tc.a, tc.b); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}
