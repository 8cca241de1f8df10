package jsonstr

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

var samples = []string{
	"", "plain", `quote " and \ backslash`, "<script>&amp;</script>", "line\u2028sep\u2029",
	"ctl \x00\x01\x1f\x7f \b\f\n\r\t", "bad utf8 \xff\xfe end", "é中文😀", "\xed\xa0\x80 surrogate",
}

func all256() string {
	var b strings.Builder
	for c := range 256 {
		b.WriteByte(byte(c))
	}
	return b.String()
}

// HTMLSafe writes what encoding/json writes.
func TestHTMLSafeMatchesEncodingJSON(t *testing.T) {
	for _, s := range append(samples, all256()) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := Append(nil, s, HTMLSafe); !bytes.Equal(got, want) {
			t.Errorf("Append(%q, HTMLSafe) = %s; want %s", s, got, want)
		}
	}
}

// Canonical writes what encoding/json writes with HTML escaping off, which keeps U+2028 and
// U+2029 as they are too.
func TestCanonicalMatchesEncoderWithoutHTMLEscaping(t *testing.T) {
	for _, s := range append(samples, all256()) {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(s); err != nil {
			t.Fatal(err)
		}
		want := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
		// encoding/json escapes U+2028 and U+2029 even without HTML escaping.
		want = bytes.ReplaceAll(want, []byte(`\u2028`), []byte("\u2028"))
		want = bytes.ReplaceAll(want, []byte(`\u2029`), []byte("\u2029"))
		got := Append(nil, s, Canonical)
		if !bytes.Equal(got, want) {
			t.Errorf("Append(%q, Canonical) = %s; want %s", s, got, want)
		}
		if !utf8.Valid(got) {
			t.Errorf("Append(%q, Canonical) is not valid UTF-8", s)
		}
	}
}

func FuzzAppend(f *testing.F) {
	for _, s := range samples {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := Append(nil, s, HTMLSafe); !bytes.Equal(got, want) {
			t.Fatalf("Append(%q, HTMLSafe) = %s; want %s", s, got, want)
		}
		var back string
		if err := json.Unmarshal(Append(nil, s, Canonical), &back); err != nil {
			t.Fatalf("Canonical form of %q does not decode: %v", s, err)
		}
		if utf8.ValidString(s) && back != s {
			t.Fatalf("Canonical form of %q decodes to %q", s, back)
		}
	})
}
