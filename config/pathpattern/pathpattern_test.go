package pathpattern

import (
	"errors"
	"path"
	"strings"
	"testing"
)

func TestCompileErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, src, want string
	}{
		{name: "relative", src: "api/x", want: `invalid path pattern "api/x": must begin with "/"`},
		{name: "empty", src: "", want: `invalid path pattern "": must begin with "/"`},
		{name: "empty capture", src: "/a/{}", want: `invalid path pattern "/a/{}": capture {} needs a name of letters, digits and _`},
		{name: "bad capture name", src: "/a/{a-b}", want: `invalid path pattern "/a/{a-b}": capture {a-b} needs a name of letters, digits and _`},
		{name: "duplicate capture", src: "/{id}/x/{id}", want: `invalid path pattern "/{id}/x/{id}": capture {id} appears twice`},
		{name: "capture inside a segment", src: "/a/{id}.json", want: `invalid path pattern "/a/{id}.json": a capture must be a whole segment, like {id}`},
		{name: "lone brace", src: "/a/{id", want: `invalid path pattern "/a/{id": a capture must be a whole segment, like {id}`},
		{name: "double star inside a segment", src: "/a**", want: `invalid path pattern "/a**": "**" must be a whole segment`},
		{name: "bad glob", src: "/v[1", want: `invalid path pattern "/v[1": segment "v[1" is not a valid glob`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := Compile(tc.src)
			if err == nil {
				t.Fatalf("Compile(%q) = %v, want an error", tc.src, p)
			}
			if !errors.Is(err, ErrSyntax) || err.Error() != tc.want {
				t.Errorf("Compile(%q) error = %q, want %q wrapping ErrSyntax", tc.src, err, tc.want)
			}
		})
	}
}

func TestMatchAndCapture(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		pattern string
		path    string
		match   bool
		capture string // "" = no capture expected
	}{
		{name: "literal", pattern: "/api/v1/users", path: "/api/v1/users", match: true},
		{name: "literal differs", pattern: "/api/v1/users", path: "/api/v1/user", match: false},
		{name: "literal is case-sensitive", pattern: "/api/Users", path: "/api/users", match: false},
		{name: "empty and double slashes ignored", pattern: "/api/v1", path: "//api///v1/", match: true},
		{name: "root", pattern: "/", path: "/", match: true},
		{name: "root does not match more", pattern: "/", path: "/a", match: false},
		{name: "star is one segment", pattern: "/a/*/c", path: "/a/b/c", match: true},
		{name: "star needs a segment", pattern: "/a/*/c", path: "/a/c", match: false},
		{name: "star is not two segments", pattern: "/a/*/c", path: "/a/b/b/c", match: false},
		{name: "double star matches none", pattern: "/api/v1/payments/**", path: "/api/v1/payments", match: true},
		{name: "double star matches many", pattern: "/api/v1/payments/**", path: "/api/v1/payments/1/refund/x", match: true},
		{name: "double star in the middle", pattern: "/a/**/z", path: "/a/b/c/d/z", match: true},
		{name: "double star in the middle fails", pattern: "/a/**/z", path: "/a/b/c/d/y", match: false},
		{name: "double star backtracks", pattern: "/**/a/b", path: "/a/a/a/b", match: true},
		{name: "two double stars", pattern: "/**/x/**/y", path: "/x/1/x/2/y", match: true},
		{name: "leading double star", pattern: "/**", path: "/anything/at/all", match: true},
		{name: "glob segment", pattern: "/api/v*/users", path: "/api/v2/users", match: true},
		{name: "glob does not cross segments", pattern: "/api/v*", path: "/api/v2/x", match: false},
		{name: "glob class", pattern: "/f/[a-c]?", path: "/f/bz", match: true},
		{name: "capture", pattern: "/api/sessions/{sid}/**", path: "/api/sessions/abc/events/1", match: true, capture: "abc"},
		{name: "capture at the end", pattern: "/users/{id}", path: "/users/42", match: true, capture: "42"},
		{name: "capture needs a segment", pattern: "/users/{id}", path: "/users/", match: false},
		{name: "capture after double star", pattern: "/**/orders/{id}", path: "/v1/shop/orders/7", match: true, capture: "7"},
		{name: "capture after backtracking", pattern: "/**/{id}/edit", path: "/a/b/c/edit", match: true, capture: "c"},
		{name: "first of two captures", pattern: "/{a}/x/{b}", path: "/one/x/two", match: true, capture: "one"},
		{name: "percent-encoded slash stays in the segment", pattern: "/f/{name}", path: "/f/a%2Fb", match: true, capture: "a%2Fb"},
		{name: "no capture in pattern", pattern: "/users/*", path: "/users/1", match: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := MustCompile(tc.pattern)
			if got := p.Match(tc.path); got != tc.match {
				t.Errorf("%q.Match(%q) = %v, want %v", tc.pattern, tc.path, got, tc.match)
			}
			got, ok := p.Capture(tc.path)
			wantOK := tc.match && len(p.Captures()) > 0
			if ok != wantOK || got != tc.capture {
				t.Errorf("%q.Capture(%q) = (%q, %v), want (%q, %v)", tc.pattern, tc.path, got, ok, tc.capture, wantOK)
			}
		})
	}
}

func TestAccessors(t *testing.T) {
	t.Parallel()
	p := MustCompile("/a/{x}/**/{y}")
	if p.String() != "/a/{x}/**/{y}" {
		t.Errorf("String() = %q", p.String())
	}
	if got := strings.Join(p.Captures(), ","); got != "x,y" {
		t.Errorf("Captures() = %q, want x,y", got)
	}
	defer func() {
		if recover() == nil {
			t.Error("MustCompile of an invalid pattern did not panic")
		}
	}()
	MustCompile("nope")
}

// TestLongPathLinear checks that a hostile path against a pattern of several "**" is
// matched without blowing up: the single-backtrack walk is linear-ish, never exponential.
func TestLongPathLinear(t *testing.T) {
	t.Parallel()
	p := MustCompile("/**/a/**/a/**/a/**/a/**/b")
	long := strings.Repeat("/a", 20000)
	if p.Match(long) {
		t.Error("matched a path without b")
	}
	if !p.Match(long + "/b") {
		t.Error("did not match a path ending in b")
	}
}

// refMatch is a plain recursive matcher (exponential, for small inputs only) that tries
// every alignment with "**" consuming as few segments as possible first, and returns the
// first capture of the first alignment that matches.
func refMatch(segs []segment, path []string, first int, pi int) (string, bool) {
	if pi == len(segs) {
		return "", len(path) == 0
	}
	s := segs[pi]
	if s.kind == any {
		for k := 0; k <= len(path); k++ {
			if c, ok := refMatch(segs, path[k:], first, pi+1); ok {
				return c, true
			}
		}
		return "", false
	}
	if len(path) == 0 {
		return "", false
	}
	switch s.kind {
	case literal:
		if s.text != path[0] {
			return "", false
		}
	case glob:
		if ok, _ := matchGlob(s.text, path[0]); !ok {
			return "", false
		}
	}
	c, ok := refMatch(segs, path[1:], first, pi+1)
	if ok && pi == first {
		c = path[0]
	}
	return c, ok
}

func matchGlob(pattern, s string) (bool, error) { return path.Match(pattern, s) }

// FuzzMatch compares Match and Capture with the reference matcher on arbitrary patterns
// and paths; neither may panic, and they must agree.
func FuzzMatch(f *testing.F) {
	seeds := [][2]string{
		{"/api/sessions/{sid}/**", "/api/sessions/abc/x"},
		{"/**/{id}/edit", "/a/b/c/edit"},
		{"/**/x/**/y", "/x/1/x/2/y"},
		{"/v*/[a-c]?/*", "/v1/bz/q"},
		{"/{a}/**/{b}", "/1/2/3"},
		{"/a\\*b", "/a*b"},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, urlPath string) {
		p, err := Compile(pattern)
		if err != nil {
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("Compile(%q) error %v does not wrap ErrSyntax", pattern, err)
			}
			return
		}
		match := p.Match(urlPath)
		capture, capOK := p.Capture(urlPath)
		if capOK && !match {
			t.Fatalf("%q.Capture(%q) succeeded but Match did not", pattern, urlPath)
		}
		segs := splitPath(urlPath)
		if len(p.segs) > 10 || len(segs) > 12 {
			return // keep the exponential reference fast
		}
		wantCap, wantMatch := refMatch(p.segs, segs, p.firstCapture, 0)
		if match != wantMatch {
			t.Fatalf("%q.Match(%q) = %v, reference says %v", pattern, urlPath, match, wantMatch)
		}
		if len(p.captures) > 0 && match && capture != wantCap {
			t.Fatalf("%q.Capture(%q) = %q, reference says %q", pattern, urlPath, capture, wantCap)
		}
	})
}
