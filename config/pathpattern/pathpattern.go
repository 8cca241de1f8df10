package pathpattern

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

type kind uint8

const (
	literal kind = iota
	one          // "*"
	any          // "**"
	capture      // "{name}"
	glob         // "v*"
)

type segment struct {
	kind kind
	text string // literal text, glob pattern or capture name
}

// Pattern is a compiled path pattern. It is immutable and safe for concurrent use.
type Pattern struct {
	src      string
	segs     []segment
	captures []string
	// firstCapture is the index in segs of the first capture, -1 without one.
	firstCapture int
}

// ErrSyntax is wrapped by every error Compile returns.
var ErrSyntax = errors.New("invalid path pattern")

// Compile parses a pattern such as "/api/v1/payments/**" or "/api/sessions/{sid}/**".
func Compile(src string) (*Pattern, error) {
	if !strings.HasPrefix(src, "/") {
		return nil, fmt.Errorf("%w %q: must begin with \"/\"", ErrSyntax, src)
	}
	p := &Pattern{src: src, firstCapture: -1}
	for _, s := range splitPath(src) {
		switch {
		case s == "**":
			p.segs = append(p.segs, segment{kind: any})
		case s == "*":
			p.segs = append(p.segs, segment{kind: one})
		case strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}"):
			name := s[1 : len(s)-1]
			if !validName(name) {
				return nil, fmt.Errorf("%w %q: capture {%s} needs a name of letters, digits and _", ErrSyntax, src, name)
			}
			for _, c := range p.captures {
				if c == name {
					return nil, fmt.Errorf("%w %q: capture {%s} appears twice", ErrSyntax, src, name)
				}
			}
			if p.firstCapture < 0 {
				p.firstCapture = len(p.segs)
			}
			p.captures = append(p.captures, name)
			p.segs = append(p.segs, segment{kind: capture, text: name})
		case strings.ContainsAny(s, "{}"):
			return nil, fmt.Errorf("%w %q: a capture must be a whole segment, like {id}", ErrSyntax, src)
		case strings.Contains(s, "**"):
			return nil, fmt.Errorf("%w %q: \"**\" must be a whole segment", ErrSyntax, src)
		case strings.ContainsAny(s, "*?["):
			if _, err := path.Match(s, ""); err != nil {
				return nil, fmt.Errorf("%w %q: segment %q is not a valid glob", ErrSyntax, src, s)
			}
			p.segs = append(p.segs, segment{kind: glob, text: s})
		default:
			p.segs = append(p.segs, segment{kind: literal, text: s})
		}
	}
	return p, nil
}

// MustCompile is Compile for patterns known to be valid (built-in tables); it panics otherwise.
func MustCompile(src string) *Pattern {
	p, err := Compile(src)
	if err != nil {
		panic(err)
	}
	return p
}

// String returns the pattern as written.
func (p *Pattern) String() string { return p.src }

// Captures returns the names of the pattern's captures, in order.
func (p *Pattern) Captures() []string { return p.captures }

// Match reports whether the path (without query string) matches.
func (p *Pattern) Match(urlPath string) bool {
	_, ok := p.match(urlPath, false)
	return ok
}

// Capture matches the path and returns the segment captured by the first {name}.
func (p *Pattern) Capture(urlPath string) (string, bool) {
	v, ok := p.match(urlPath, true)
	if !ok || len(p.captures) == 0 {
		return "", false
	}
	return v, true
}

// match walks segments with the classic single-backtrack glob algorithm at segment level: on a
// mismatch it retries from the last "**", consuming one more path segment. That is linear in
// the common case and never exponential, whatever the input.
func (p *Pattern) match(urlPath string, wantCapture bool) (string, bool) {
	var segsBuf [16]string
	segs := appendSegments(segsBuf[:0], urlPath)
	pi, si := 0, 0
	star, starSi := -1, 0
	var captured string
	for si < len(segs) {
		if pi < len(p.segs) {
			s := p.segs[pi]
			switch s.kind {
			case any:
				star, starSi = pi, si
				pi++
				continue
			case one:
				pi++
				si++
				continue
			case capture:
				// Passing the capture again after a backtrack overwrites it, so the value is
				// always the one of the successful alignment. Only the first capture is
				// kept, as Capture promises.
				if wantCapture && pi == p.firstCapture {
					captured = segs[si]
				}
				pi++
				si++
				continue
			case literal:
				if s.text == segs[si] {
					pi++
					si++
					continue
				}
			case glob:
				if ok, _ := path.Match(s.text, segs[si]); ok {
					pi++
					si++
					continue
				}
			}
		}
		if star < 0 {
			return "", false
		}
		pi = star + 1
		starSi++
		si = starSi
	}
	for pi < len(p.segs) && p.segs[pi].kind == any {
		pi++
	}
	if pi != len(p.segs) {
		return "", false
	}
	return captured, true
}

// splitPath returns the non-empty segments of a path: "/a//b/" has segments a and b.
func splitPath(s string) []string { return appendSegments(nil, s) }

func appendSegments(dst []string, s string) []string {
	for len(s) > 0 {
		i := strings.IndexByte(s, '/')
		if i < 0 {
			return append(dst, s)
		}
		if i > 0 {
			dst = append(dst, s[:i])
		}
		s = s[i+1:]
	}
	return dst
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}
