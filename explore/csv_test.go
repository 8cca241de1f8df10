package explore

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// neutraliseCases are the cells TestNeutralise checks and FuzzNeutralise starts from: every
// formula character, its look-alikes, and what may come before it.
var neutraliseCases = []struct {
	name, in string
	formula  bool
}{
	{"equals", "=1+2", true},
	{"plus", "+1", true},
	{"minus", "-1", true},
	{"at", "@SUM(A1)", true},
	{"tab", "\tx", true},
	{"carriage return", "\rx", true},
	{"line feed", "\n=1", true},
	{"line feed alone", "\n", true},
	{"full-width equals", "＝1+2", true},
	{"full-width plus", "＋1", true},
	{"full-width minus", "－1", true},
	{"full-width at", "＠SUM(A1)", true},
	{"small equals", "\uFE66cmd", true},
	{"small plus", "\uFE62 1", true},
	{"small minus", "\uFE63 1", true},
	{"small at", "\uFE6Bx", true},
	{"superscript equals", "\u207C1", true},
	{"superscript plus", "\u207A1", true},
	{"subscript equals", "\u208C1", true},
	{"subscript plus", "\u208A1", true},
	{"double equals", "\u2A75 1", true},
	{"triple equals", "\u2A76 1", true},
	{"Hebrew plus", "\uFB29 1", true},
	{"space then equals", " =1", true},
	{"spaces then at", "   @x", true},
	{"NUL then equals", "\x00=1", true},
	{"NBSP then equals", "\u00A0=1", true},
	{"narrow NBSP then minus", "\u202F-1", true},
	{"ideographic space then full-width equals", "\u3000＝1", true},
	{"zero-width space then equals", "\u200B=1", true},
	{"zero-width joiner then plus", "\u200D+1", true},
	{"word joiner then at", "\u2060@x", true},
	{"byte order mark then equals", "\uFEFF=1", true},
	{"soft hyphen then minus", "\u00AD-1", true},
	{"right-to-left mark then equals", "\u200F=1", true},
	{"Hangul filler then equals", "\u3164=1", true},
	{"variation selector then equals", "\uFE0F=1", true},
	{"line separator then equals", "\u2028=1", true},
	{"vertical tab then equals", "\v=1", true},
	{"DEL then equals", "\x7F=1", true},
	{"C1 control then equals", "\u0085=1", true},
	{"invalid UTF-8 then equals", "\xff=1", true},
	{"mixed invisibles then plus", " \x00\u00A0\u200B\uFEFF+1", true},
	{"space then tab", " \tx", true},
	{"plain", "GET", false},
	{"empty", "", false},
	{"formula later in the cell", "a=1", false},
	{"space then text", " hello", false},
	{"NUL then text", "\x00abc", false},
	{"only invisible characters", " \x00\u200B\u00A0", false},
	{"quote", "'=1", false},
	{"minus sign U+2212 is not a formula", "\u22121", false},
	{"number", "3.5", false},
	{"path", "/api/items/7", false},
	{"JSON", `{"q":"=1"}`, false},
}

func TestNeutralise(t *testing.T) {
	t.Parallel()
	for _, tc := range neutraliseCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			want := tc.in
			if tc.formula {
				want = "'" + tc.in
			}
			if got := neutralise(tc.in); got != want {
				t.Errorf("%s: neutralise(%q) = %q; want %q", tc.name, tc.in, got, want)
			}
		})
	}
}

func TestSafeName(t *testing.T) {
	t.Parallel()
	if got := safeName(`a"b/../c`); got != "a_b_.._c" {
		t.Errorf("safeName(%q) = %q; want a_b_.._c", `a"b/../c`, got)
	}
}

// FuzzNeutralise checks that no cell leaves neutralise able to start a formula: after its
// leading white space and invisible characters, the first character in compatibility form
// (NFKC, which folds full-width and other look-alikes to ASCII) is none of = + - @, and the
// cell does not begin with tab, carriage return or line feed. A changed cell is the input
// behind one "'".
func FuzzNeutralise(f *testing.F) {
	for _, tc := range neutraliseCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := neutralise(in)
		if out != in && out != "'"+in {
			t.Fatalf("neutralise(%q) = %q; want the cell unchanged or behind one quote", in, out)
		}
		if out != "" && strings.ContainsRune("\t\r\n", rune(out[0])) {
			t.Fatalf("neutralise(%q) = %q begins with a tab, carriage return or line feed", in, out)
		}
		rest := strings.TrimLeftFunc(out, func(r rune) bool {
			return r == utf8.RuneError || unicode.IsSpace(r) || unicode.IsControl(r) ||
				unicode.In(r, unicode.Cf, unicode.Zs, unicode.Other_Default_Ignorable_Code_Point, unicode.Variation_Selector)
		})
		first, _ := utf8.DecodeRuneInString(rest)
		folded, _ := utf8.DecodeRuneInString(norm.NFKC.String(string(first)))
		if rest != "" && strings.ContainsRune("=+-@", folded) {
			t.Fatalf("neutralise(%q) = %q: its first visible character %q reads as %q, a formula", in, out, first, folded)
		}
	})
}
