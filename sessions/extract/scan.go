package extract

import (
	"strconv"
	"unicode/utf8"

	"github.com/ohler55/ojg/jp"
)

// A JSON body read by simple paths ($.a.b, $.items[0].id: child names and indexes only) is
// not turned into a tree. One pass over the body writes a flat token list (the "tape": one
// entry per value and per object key, each container entry pointing past its subtree), and
// every such path of the View walks the tape, skipping whole subtrees. Nothing is allocated
// per value except the extracted string itself; the tape is reused through the View pool.
//
// The scanner is strict RFC 8259 JSON. Anything it is not certain ojg reads the same way (a
// byte-order mark, invalid UTF-8, a \u escape in a selected string or a key of a searched
// object, numbers that are not small integers or short decimals, a selected object or array)
// makes the lookup answer "unsure", and the caller falls back to the full parse, so both
// always give the same answer. FuzzScanMatchesParse checks that.

type tokKind uint8

const (
	tokObject tokKind = iota + 1
	tokArray
	tokString
	tokNumber
	tokTrue
	tokFalse
	tokNull
)

// tok is one tape entry. For a string, start and end delimit the bytes between the quotes;
// for a number its literal; for a container its brackets. next is the index of the entry
// after the value's subtree; an object's entries alternate key, value.
type tok struct {
	start, end, next int32
	kind             tokKind
	esc              bool // a string holding a backslash escape
	uesc             bool // a string holding a \u escape
}

// maxTapeBody bounds the bodies the scanner reads: tape offsets are int32.
const maxTapeBody = 1 << 30

// pooledTape is the largest tape a released View keeps (16 bytes an entry): enough for
// bodies of about 32 KiB.
const pooledTape = 8192

// step is one element of a simple path: a child name or an array index.
type step struct {
	name  string
	index int
	isIdx bool
}

// simpleSteps returns the steps of a path made of child names and indexes only; false for
// any other path.
func simpleSteps(x jp.Expr) ([]step, bool) {
	steps := make([]step, 0, len(x))
	for _, f := range x {
		switch f := f.(type) {
		case jp.Root, jp.Bracket:
		case jp.Child:
			steps = append(steps, step{name: string(f)})
		case jp.Nth:
			steps = append(steps, step{index: int(f), isIdx: true})
		default:
			return nil, false
		}
	}
	return steps, true
}

// buildTape scans body into tape. It is false when the body is not strict JSON or uses
// something the scanner leaves to the full parser.
//
// It is longer than our functions usually are, on purpose: it is one state machine (read a
// value, then close containers or step to the next member) whose state — tape, stack of open
// containers, offset — would otherwise be passed into and back out of helpers for every token
// of every JSON body a parameter reads. The per-token work is already in helpers.
func buildTape(tape []tok, body []byte) ([]tok, bool) {
	tape = tape[:0]
	if len(body) == 0 || len(body) > maxTapeBody {
		return tape, false
	}
	// Typical JSON holds a token every five to ten bytes. Sizing the tape once avoids the
	// many small growth steps a large body would otherwise take.
	if want := len(body)/4 + 16; cap(tape) < want {
		tape = make([]tok, 0, want)
	}
	var stackBuf [32]int32
	stack := stackBuf[:0] // indexes of the open containers
	i := skipWS(body, 0)
	for {
		// A value starts at i.
		if i >= len(body) {
			return tape, false
		}
		switch c := body[i]; {
		case c == '{' || c == '[':
			kind := tokObject
			closer := byte('}')
			if c == '[' {
				kind, closer = tokArray, ']'
			}
			stack = append(stack, int32(len(tape)))
			tape = append(tape, tok{kind: kind, start: int32(i)})
			i = skipWS(body, i+1)
			if i < len(body) && body[i] == closer {
				stack, i = closeContainer(tape, stack, i)
				break // the empty container is a complete value
			}
			if kind == tokObject {
				var ok bool
				if tape, i, ok = scanKey(tape, body, i); !ok {
					return tape, false
				}
			}
			continue
		case c == '"':
			t, end, ok := scanString(body, i)
			if !ok {
				return tape, false
			}
			t.next = int32(len(tape) + 1)
			tape = append(tape, t)
			i = end
		case c == '-' || ('0' <= c && c <= '9'):
			end, ok := scanNumber(body, i)
			if !ok {
				return tape, false
			}
			tape = append(tape, tok{kind: tokNumber, start: int32(i), end: int32(end), next: int32(len(tape) + 1)})
			i = end
		default:
			kind, lit := tokTrue, "true"
			switch c {
			case 'f':
				kind, lit = tokFalse, "false"
			case 'n':
				kind, lit = tokNull, "null"
			}
			if len(body)-i < len(lit) || string(body[i:i+len(lit)]) != lit {
				return tape, false
			}
			tape = append(tape, tok{kind: kind, start: int32(i), end: int32(i + len(lit)), next: int32(len(tape) + 1)})
			i += len(lit)
		}
		// A value ended before i: close containers or move to the next member.
		for {
			i = skipWS(body, i)
			if len(stack) == 0 {
				return tape, i == len(body)
			}
			if i >= len(body) {
				return tape, false
			}
			open := tape[stack[len(stack)-1]].kind
			c := body[i]
			if (open == tokObject && c == '}') || (open == tokArray && c == ']') {
				stack, i = closeContainer(tape, stack, i)
				continue
			}
			if c != ',' {
				return tape, false
			}
			i = skipWS(body, i+1)
			if open == tokObject {
				var ok bool
				if tape, i, ok = scanKey(tape, body, i); !ok {
					return tape, false
				}
			}
			break
		}
	}
}

// closeContainer ends the innermost open container at the closing bracket at i and returns
// the remaining stack and the offset after the bracket.
func closeContainer(tape []tok, stack []int32, i int) ([]int32, int) {
	t := &tape[stack[len(stack)-1]]
	t.end = int32(i + 1)
	t.next = int32(len(tape))
	return stack[:len(stack)-1], i + 1
}

// scanKey reads an object key and its colon at i and returns the offset of the value.
func scanKey(tape []tok, body []byte, i int) ([]tok, int, bool) {
	if i >= len(body) || body[i] != '"' {
		return tape, i, false
	}
	t, end, ok := scanString(body, i)
	if !ok {
		return tape, i, false
	}
	t.next = int32(len(tape) + 1)
	tape = append(tape, t)
	i = skipWS(body, end)
	if i >= len(body) || body[i] != ':' {
		return tape, i, false
	}
	return tape, skipWS(body, i+1), true
}

func skipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// scanString reads the string whose opening quote is at i and returns its token and the
// offset after the closing quote. Control characters, bad escapes and invalid UTF-8 fail.
func scanString(b []byte, i int) (tok, int, bool) {
	t := tok{kind: tokString, start: int32(i + 1)}
	ascii := true
	for j := i + 1; j < len(b); j++ {
		c := b[j]
		switch {
		case c == '"':
			t.end = int32(j)
			if !ascii && !utf8.Valid(b[t.start:j]) {
				return t, j, false
			}
			return t, j + 1, true
		case c == '\\':
			if j+1 >= len(b) {
				return t, j, false
			}
			t.esc = true
			switch b[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j++
			case 'u':
				if j+5 >= len(b) || !isHex(b[j+2]) || !isHex(b[j+3]) || !isHex(b[j+4]) || !isHex(b[j+5]) {
					return t, j, false
				}
				t.uesc = true
				j += 5
			default:
				return t, j, false
			}
		case c < 0x20:
			return t, j, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return t, len(b), false
}

// scanNumber reads a number as RFC 8259 writes it and returns the offset after it. ojg
// refuses an exponent right after a zero integer part ("0e1"), so the scanner does too.
func scanNumber(b []byte, i int) (int, bool) {
	if b[i] == '-' {
		i++
	}
	zero := false
	switch {
	case i < len(b) && b[i] == '0':
		zero = true
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
	default:
		return i, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		d := i
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
		if i == d {
			return i, false
		}
		zero = false
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		if zero {
			return i, false
		}
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := i
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
		if i == d {
			return i, false
		}
	}
	return i, true
}

// lookup follows steps through the tape. It returns the index of the selected value, or -1
// when the path selects nothing; sure is false when a key it had to compare holds a \u escape.
func lookup(tape []tok, body []byte, steps []step) (idx int, sure bool) {
	if len(tape) == 0 {
		return -1, true
	}
	cur := 0
	for _, s := range steps {
		t := tape[cur]
		end := int(t.next)
		switch {
		case s.isIdx:
			if t.kind != tokArray {
				return -1, true
			}
			n := 0
			for j := cur + 1; j < end; j = int(tape[j].next) {
				n++
			}
			want := s.index
			if want < 0 {
				want += n
			}
			if want < 0 || want >= n {
				return -1, true
			}
			j := cur + 1
			for range want {
				j = int(tape[j].next)
			}
			cur = j
		default:
			if t.kind != tokObject {
				return -1, true
			}
			// The last member of a name wins, as it does in the parsed map.
			found := -1
			for j := cur + 1; j < end; j = int(tape[j+1].next) {
				k := tape[j]
				if k.uesc {
					return -1, false
				}
				if keyEquals(body[k.start:k.end], k.esc, s.name) {
					found = j + 1
				}
			}
			if found < 0 {
				return -1, true
			}
			cur = found
		}
	}
	return cur, true
}

// keyEquals compares a key's raw bytes (without \u escapes) with a name.
func keyEquals(raw []byte, esc bool, name string) bool {
	if !esc {
		return string(raw) == name
	}
	j := 0
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c == '\\' {
			i++
			c = unescapeChar(raw[i])
		}
		if j >= len(name) || name[j] != c {
			return false
		}
		j++
	}
	return j == len(name)
}

func unescapeChar(c byte) byte {
	switch c {
	case 'b':
		return '\b'
	case 'f':
		return '\f'
	case 'n':
		return '\n'
	case 'r':
		return '\r'
	case 't':
		return '\t'
	}
	return c // '"', '\\', '/'
}

// maxIntDigits is the most digits an integer may have to be read here; longer ones may not
// fit an int64, and ojg turns those into other types.
const maxIntDigits = 18

// maxFloatLen bounds the literals of non-integers read here; ojg reads longer ones through a
// different route.
const maxFloatLen = 15

// tokScalar renders the selected token as Scalar renders the parsed value; sure is false
// when only the parsed value can tell.
func tokScalar(tape []tok, body []byte, idx int) (val string, ok, sure bool) {
	t := tape[idx]
	raw := body[t.start:t.end]
	switch t.kind {
	case tokString:
		if len(raw) == 0 {
			return "", false, true
		}
		if t.uesc {
			return "", false, false
		}
		if !t.esc {
			return string(raw), true, true
		}
		out := make([]byte, 0, len(raw))
		for i := 0; i < len(raw); i++ {
			c := raw[i]
			if c == '\\' {
				i++
				c = unescapeChar(raw[i])
			}
			out = append(out, c)
		}
		return string(out), true, true
	case tokTrue:
		return "true", true, true
	case tokFalse:
		return "false", true, true
	case tokNull:
		return "", false, true
	case tokNumber:
		return numberScalar(raw)
	case tokObject, tokArray:
		if t.next == int32(idx+1) {
			return "", false, true // {} and [] do not work
		}
	}
	return "", false, false
}

// maxExponent is the largest exponent ojg reads as a float; past it the number is kept as
// its literal.
const maxExponent = 1022

func numberScalar(raw []byte) (string, bool, bool) {
	digits, integer, exp, inExp := 0, true, 0, false
	for _, c := range raw {
		switch {
		case inExp && '0' <= c && c <= '9':
			if exp = exp*10 + int(c-'0'); exp > maxExponent {
				return "", false, false
			}
		case '0' <= c && c <= '9':
			digits++
		case c == 'e' || c == 'E':
			integer, inExp = false, true
		case c == '.':
			integer = false
		}
	}
	if integer {
		if digits > maxIntDigits {
			return "", false, false
		}
		n, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil {
			return "", false, false
		}
		return strconv.FormatInt(n, 10), true, true
	}
	if len(raw) > maxFloatLen {
		return "", false, false
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil {
		return "", false, false
	}
	b, works := appendFloat(nil, f)
	return string(b), works, true
}
