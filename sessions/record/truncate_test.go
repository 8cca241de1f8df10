package record

import "testing"

func TestTruncate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		s    string
		n    int
		want string
	}{
		{name: "short kept", s: "abc", n: 5, want: "abc"},
		{name: "ascii cut", s: "abcdef", n: 4, want: "abcd"},
		{name: "cut inside a two-byte rune backs off", s: "aé", n: 2, want: "a"},
		{name: "cut inside a four-byte rune backs off", s: "ab😀", n: 5, want: "ab"},
		{name: "cut after a rune keeps it", s: "é😀", n: 2, want: "é"},
		{name: "invalid utf-8 still bounded", s: "\xff\xff\xff\xff\xff\xff", n: 3, want: "\xff\xff\xff"},
		{name: "only continuation bytes", s: "\x80\x80\x80\x80\x80\x80\x80", n: 6, want: "\x80\x80"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := Truncate(tc.s, tc.n)
			if got != tc.want {
				t.Errorf("%s: Truncate(%q, %d) = %q, want %q", tc.name, tc.s, tc.n, got, tc.want)
			}
			if len(got) > tc.n {
				t.Errorf("%s: Truncate returned %d bytes, more than %d", tc.name, len(got), tc.n)
			}
		})
	}
}
