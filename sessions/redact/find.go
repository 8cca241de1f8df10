package redact

import (
	"encoding/base64"
	"slices"
	"strings"
	"unicode/utf8"
	"unsafe"
)

// How secrets are found in a text. A secret may reach a request in any encoding a client or
// an application chooses, so the text is searched as sent and again after each round of
// decoding, and every match is mapped back to the bytes that carried it:
//
//   - rounds of decoding: %XX escapes (upper- or lower-case hex; a double-encoded %252F
//     decodes in two rounds) and JSON's escapes (\u0061, surrogate pairs, \/ and the
//     one-letter ones), at most maxLayers-1 rounds;
//   - in every round, runs of base64 characters (standard and URL alphabets, padded or not)
//     decoded at each of the four alignments, so a secret inside a longer encoded text
//     (Basic credentials "user:secret") is found;
//   - comparison that ignores the case of ASCII letters and takes a space and '+' as equal
//     (a query's space), against the secret and its Unicode upper- and lower-case forms.
//
// Secrets shorter than minScrubLen are matched only as a whole text.

// maxLayers bounds the texts searched: the text as sent and up to three decodings of it.
const maxLayers = 4

// minBase64Run is the shortest run of base64 characters decoded: the encoding of a secret
// of minScrubLen bytes.
const minBase64Run = (minScrubLen*4 + 2) / 3

// Bounds of the base64 cores MayHold searches for.
const (
	// coreSecrets is the number of secrets whose cores fit; with more, every field that
	// could hold base64 is left to the Redactor.
	coreSecrets = 8
	// coreBytes is the start of a secret that is encoded: its encoding occurs inside the
	// encoding of the whole secret, and 12 bytes give cores of 15 or 16 characters.
	coreBytes = 12
)

// base64Cores are, for each secret of at least minScrubLen bytes and each of the three
// alignments of a secret in a longer text, the base64 characters that depend on the
// secret's bytes alone — the same whatever precedes or follows the secret. Each is cut to its
// longest part without '+' and '/', which the standard and the URL alphabets write
// differently, or kept whole in both alphabets when that part is too short. A field without
// any of them holds no base64 of a secret. It lives on MayHold's stack.
type base64Cores struct {
	done, ok bool
	n        int
	buf      [6 * coreSecrets][4 * (coreBytes + 3) / 3]byte
	lo, hi   [6 * coreSecrets]uint8
}

// in reports whether field holds a core of one of the secrets (or the cores could not be
// made, which counts as holding one).
func (c *base64Cores) in(secrets []Secret, field string) bool {
	if !c.done {
		c.done, c.ok = true, c.fill(secrets)
	}
	if !c.ok {
		return true
	}
	for i := range c.n {
		if strings.Contains(field, bytesString(c.buf[i][c.lo[i]:c.hi[i]])) {
			return true
		}
	}
	return false
}

func (c *base64Cores) fill(secrets []Secret) bool {
	for _, s := range secrets {
		if len(s.Clear) < minScrubLen {
			continue
		}
		if c.n+6 > len(c.buf) {
			return false
		}
		p := s.Clear[:min(len(s.Clear), coreBytes)]
		for k := range 3 {
			var src [coreBytes + 2]byte
			copy(src[k:], p)
			m := k + len(p)
			b := c.buf[c.n][:]
			base64.StdEncoding.Encode(b, src[:m])
			// Characters lo..hi encode bits of the secret only.
			lo, hi := (8*k+5)/6, 8*m/6
			if plo, phi := longestPlain(b, lo, hi); phi-plo >= minScrubLen {
				c.lo[c.n], c.hi[c.n] = uint8(plo), uint8(phi)
				c.n++
				continue
			}
			c.lo[c.n], c.hi[c.n] = uint8(lo), uint8(hi)
			u := c.buf[c.n+1][:]
			copy(u, b)
			for i := lo; i < hi; i++ {
				switch u[i] {
				case '+':
					u[i] = '-'
				case '/':
					u[i] = '_'
				}
			}
			c.lo[c.n+1], c.hi[c.n+1] = uint8(lo), uint8(hi)
			c.n += 2
		}
	}
	return true
}

// longestPlain is the longest part of b[lo:hi] without '+' and '/'.
func longestPlain(b []byte, lo, hi int) (int, int) {
	bestLo, bestHi := lo, lo
	start := lo
	for i := lo; i <= hi; i++ {
		if i == hi || b[i] == '+' || b[i] == '/' {
			if i-start > bestHi-bestLo {
				bestLo, bestHi = start, i
			}
			start = i + 1
		}
	}
	return bestLo, bestHi
}

// layer is one decoding of a text: b[i] was decoded from the original text's bytes
// from[i]:to[i]. In the text itself (from == nil) b[i] is the original byte i.
type layer struct {
	b        []byte
	from, to []int32
}

func textLayer(s string) *layer { return &layer{b: []byte(s)} }

func (l *layer) start(i int) int {
	if l.from == nil {
		return i
	}
	return int(l.from[i])
}

func (l *layer) end(i int) int {
	if l.to == nil {
		return i + 1
	}
	return int(l.to[i])
}

func (l *layer) push(c byte, from, to int) {
	l.b = append(l.b, c)
	l.from = append(l.from, int32(from))
	l.to = append(l.to, int32(to))
}

// decode returns the next layer, or nil when l holds no escape to decode.
func (l *layer) decode() *layer {
	b := l.b
	if !strings.ContainsAny(bytesString(b), `%\`) {
		return nil
	}
	out := &layer{b: make([]byte, 0, len(b)), from: make([]int32, 0, len(b)), to: make([]int32, 0, len(b))}
	changed := false
	for i := 0; i < len(b); {
		if b[i] == '%' && i+2 < len(b) && isHex(b[i+1]) && isHex(b[i+2]) {
			out.push(unhex(b[i+1])<<4|unhex(b[i+2]), l.start(i), l.end(i+2))
			i, changed = i+3, true
			continue
		}
		if b[i] == '\\' {
			if r, n := jsonEscape(b[i:]); n > 0 {
				var buf [utf8.UTFMax]byte
				for _, c := range buf[:utf8.EncodeRune(buf[:], r)] {
					out.push(c, l.start(i), l.end(i+n-1))
				}
				i, changed = i+n, true
				continue
			}
		}
		out.push(b[i], l.start(i), l.end(i))
		i++
	}
	if !changed {
		return nil
	}
	return out
}

// jsonEscape decodes the JSON escape at the start of b: the rune and the bytes it took, 0
// when b does not start with one.
func jsonEscape(b []byte) (rune, int) {
	if len(b) < 2 || b[0] != '\\' {
		return 0, 0
	}
	switch b[1] {
	case '"', '\\', '/':
		return rune(b[1]), 2
	case 'b':
		return '\b', 2
	case 'f':
		return '\f', 2
	case 'n':
		return '\n', 2
	case 'r':
		return '\r', 2
	case 't':
		return '\t', 2
	case 'u':
		r, ok := hex4(b[2:])
		if !ok {
			return 0, 0
		}
		if r >= 0xD800 && r < 0xDC00 && len(b) >= 12 && b[6] == '\\' && b[7] == 'u' {
			if lo, ok := hex4(b[8:]); ok && lo >= 0xDC00 && lo < 0xE000 {
				return 0x10000 + (r-0xD800)<<10 + (lo - 0xDC00), 12
			}
		}
		return r, 6
	}
	return 0, 0
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		if !isHex(c) {
			return 0, false
		}
		r = r<<4 | rune(unhex(c))
	}
	return r, true
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

// span is a part of the original text to replace by the hashed form of secret sec.
type span struct {
	from, to int
	sec      int
}

// spans finds every occurrence of a secret in s, in every layer; with shortOnly, only the
// secrets shorter than minScrubLen (as whole values).
func (r *Redactor) spans(s string, shortOnly bool) []span {
	var out []span
	l := textLayer(s)
	for n := 0; l != nil && n < maxLayers; n++ {
		out = r.findIn(l, out, shortOnly)
		if !shortOnly {
			out = r.findBase64(l, out)
		}
		l = l.decode()
	}
	return out
}

// findIn appends the spans where a secret occurs in l.
func (r *Redactor) findIn(l *layer, out []span, shortOnly bool) []span {
	text := bytesString(l.b)
	for si := range r.secrets {
		sec := &r.secrets[si]
		if shortOnly && len(sec.clear) >= minScrubLen {
			continue
		}
		for _, v := range sec.forms() {
			if len(sec.clear) < minScrubLen {
				if len(v) == len(text) && equalFold(text, v) {
					out = append(out, span{l.start(0), l.end(len(text) - 1), si})
				}
				continue
			}
			for i := 0; ; {
				j := indexFold(text[i:], v)
				if j < 0 {
					break
				}
				i += j
				out = append(out, span{l.start(i), l.end(i + len(v) - 1), si})
				i += len(v)
			}
		}
	}
	return out
}

// findBase64 appends the spans of base64 text in l whose decoding holds a secret: the
// characters of the quads that encode it.
func (r *Redactor) findBase64(l *layer, out []span) []span {
	var dec []byte
	for run := range base64Runs(bytesString(l.b)) {
		for off := 0; off < 4 && len(run.text)-off >= minBase64Run; off++ {
			dec = decodeBase64(dec[:0], run.text[off:])
			text := bytesString(dec)
			for si := range r.secrets {
				sec := &r.secrets[si]
				if len(sec.clear) < minScrubLen {
					continue
				}
				for _, v := range sec.forms() {
					for i := 0; ; {
						j := indexFold(text[i:], v)
						if j < 0 {
							break
						}
						i += j
						from := run.at + off + 4*(i/3)
						to := min(run.at+len(run.text), run.at+off+4*((i+len(v)-1)/3)+4)
						out = append(out, span{l.start(from), l.end(to - 1), si})
						i += len(v)
					}
				}
			}
		}
	}
	return out
}

// replace writes s with the spans replaced; overlapping spans become one, hashed as the
// first.
func (r *Redactor) replace(s string, spans []span) string {
	slices.SortFunc(spans, func(a, b span) int {
		if a.from != b.from {
			return a.from - b.from
		}
		return b.to - a.to
	})
	var b strings.Builder
	b.Grow(len(s))
	last := 0
	for i := 0; i < len(spans); {
		sp := spans[i]
		end := sp.to
		i++
		for i < len(spans) && spans[i].from < end {
			end = max(end, spans[i].to)
			i++
		}
		b.WriteString(s[last:sp.from])
		b.WriteString(r.secrets[sp.sec].hashed)
		last = end
	}
	b.WriteString(s[last:])
	return b.String()
}

// cutTail removes a trailing fragment of a secret (at least minScrubLen bytes of its start,
// in any of the searched encodings) that a cut at a cap left at the end of s.
func (r *Redactor) cutTail(s string) string {
	if r == nil || len(r.secrets) == 0 {
		return s
	}
	cut := len(s)
	l := textLayer(s)
	for n := 0; l != nil && n < maxLayers; n++ {
		text := bytesString(l.b)
		end := len(text) - danglingEscape(text)
		for i := range r.secrets {
			for _, v := range r.secrets[i].forms() {
				if k := prefixAtEnd(text[:end], v); k > 0 {
					cut = min(cut, l.start(end-k))
				}
			}
		}
		if at, ok := r.base64Tail(text[:end]); ok {
			cut = min(cut, l.start(at))
		}
		l = l.decode()
	}
	return s[:cut]
}

// prefixAtEnd is the length of the longest start of v, shorter than v and at least
// minScrubLen bytes, that text ends with; 0 when none.
func prefixAtEnd(text, v string) int {
	for k := min(len(v)-1, len(text)); k >= minScrubLen; k-- {
		if equalFold(text[len(text)-k:], v[:k]) {
			return k
		}
	}
	return 0
}

// base64Tail finds a base64 run at the end of text whose decoding ends with the start of a
// secret; it returns where the quads encoding that start begin.
func (r *Redactor) base64Tail(text string) (int, bool) {
	var last base64Run
	found := false
	for run := range base64Runs(text) {
		last, found = run, true
	}
	if !found || last.at+len(last.text) != len(text) {
		return 0, false
	}
	var dec []byte
	for off := 0; off < 4 && len(last.text)-off >= minBase64Run; off++ {
		dec = decodeBase64(dec[:0], last.text[off:])
		for i := range r.secrets {
			for _, v := range r.secrets[i].forms() {
				if k := prefixAtEnd(bytesString(dec), v); k > 0 {
					return last.at + off + 4*((len(dec)-k)/3), true
				}
			}
		}
	}
	return 0, false
}

// danglingEscape is the number of bytes at the end of text that begin an escape the cut
// left incomplete: "%", "%4", "\", "\u00".
func danglingEscape(text string) int {
	for k := 1; k <= 5 && k <= len(text); k++ {
		tail := text[len(text)-k:]
		switch {
		case tail[0] == '%' && k <= 2 && (k == 1 || isHex(tail[1])):
			return k
		case tail[0] == '\\' && (k == 1 || tail[1] == 'u' && allHex(tail[2:])):
			return k
		}
	}
	return 0
}

func allHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isHex(s[i]) {
			return false
		}
	}
	return true
}

// base64Run is a maximal run of base64 characters (padding excluded) at text[at:].
type base64Run struct {
	at   int
	text string
}

// base64Runs yields the runs of base64 characters of text at least minBase64Run long.
func base64Runs(text string) func(yield func(base64Run) bool) {
	return func(yield func(base64Run) bool) {
		for i := 0; i < len(text); {
			if base64Value[text[i]] < 0 {
				i++
				continue
			}
			j := i
			for j < len(text) && base64Value[text[j]] >= 0 {
				j++
			}
			if j-i >= minBase64Run && !yield(base64Run{at: i, text: text[i:j]}) {
				return
			}
			i = j
		}
	}
}

// base64Value maps a character of either base64 alphabet to its value, -1 for others.
var base64Value = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	for i, c := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789" {
		t[c] = int8(i)
	}
	t['+'], t['-'] = 62, 62
	t['/'], t['_'] = 63, 63
	return t
}()

// decodeBase64 appends the decoding of s, all base64 characters, quad by quad: byte k
// comes from the quad at s[4*(k/3):]. A final partial quad gives the whole bytes it holds.
func decodeBase64(dst []byte, s string) []byte {
	for i := 0; i+1 < len(s); i += 4 {
		q := s[i:min(i+4, len(s))]
		var v uint32
		for _, c := range []byte(q) {
			v = v<<6 | uint32(base64Value[c])
		}
		v <<= 6 * uint(4-len(q))
		dst = append(dst, byte(v>>16))
		if len(q) > 2 {
			dst = append(dst, byte(v>>8))
		}
		if len(q) > 3 {
			dst = append(dst, byte(v))
		}
	}
	return dst
}

// indexFold is the index of the first occurrence of needle in s, ASCII letters compared
// without case and a space equal to '+'; -1 when there is none.
func indexFold(s, needle string) int {
	n := len(needle)
	if n == 0 {
		return 0
	}
	a := needle[0]
	b := foldPair(a)
	for i := 0; i+n <= len(s); i++ {
		j := indexEither(s[i:len(s)-n+1], a, b)
		if j < 0 {
			return -1
		}
		i += j
		if equalFold(s[i:i+n], needle) {
			return i
		}
	}
	return -1
}

// foldPair is the byte equal to c under indexFold's comparison, c itself when none.
func foldPair(c byte) byte {
	switch {
	case c >= 'a' && c <= 'z':
		return c - 'a' + 'A'
	case c >= 'A' && c <= 'Z':
		return c - 'A' + 'a'
	case c == ' ':
		return '+'
	case c == '+':
		return ' '
	}
	return c
}

// indexEither is the index of the first a or b in s, -1 when neither occurs.
func indexEither(s string, a, b byte) int {
	i := strings.IndexByte(s, a)
	if a == b {
		return i
	}
	if i >= 0 {
		s = s[:i]
	}
	if j := strings.IndexByte(s, b); j >= 0 {
		return j
	}
	return i
}

// equalFold compares two strings of equal length as indexFold does.
func equalFold(s, t string) bool {
	if len(s) != len(t) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c != t[i] && foldPair(c) != t[i] {
			return false
		}
	}
	return true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// bytesString views b as a string without copying; b must not change while it is used.
func bytesString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
