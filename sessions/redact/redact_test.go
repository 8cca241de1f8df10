package redact

import "testing"

// fakeHash stands in for the engine's hashed parameter form.
func fakeHash(s string) string { return "hmac:<" + s + ">" }

func TestCutTail(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, in, want string }{
		{name: "fragment at the end", in: "abc 41112222", want: "abc "},
		{name: "short fragment kept", in: "abc 411", want: "abc 411"},
		{name: "no fragment", in: "abc def", want: "abc def"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// A Redactor belongs to one exchange (it computes its encodings on first use), so
			// each parallel subtest has its own.
			r := New(fakeHash, []Secret{{Clear: "4111222233334444", Hashed: fakeHash("4111222233334444")}}, nil)
			if got := r.cutTail(tc.in); got != tc.want {
				t.Errorf("%s: cutTail(%q) = %q, want %q", tc.name, tc.in, got, tc.want)
			}
		})
	}
}

func TestValueAndPath(t *testing.T) {
	t.Parallel()
	r := New(fakeHash, []Secret{
		{Clear: "tok/secret+1", Hashed: fakeHash("tok/secret+1")},
		{Clear: "42", Hashed: fakeHash("42")},
	}, nil)
	tests := []struct{ name, in, want, wantPath string }{
		{name: "a whole secret", in: "tok/secret+1", want: fakeHash("tok/secret+1"), wantPath: fakeHash("tok/secret+1")},
		{name: "inside a longer string, URL-escaped", in: "/a?t=tok%2Fsecret%2B1", want: "/a?t=" + fakeHash("tok/secret+1"), wantPath: "/a?t=" + fakeHash("tok/secret+1")},
		{name: "a short secret only as a whole path segment", in: "/users/42/x42", want: "/users/42/x42", wantPath: "/users/" + fakeHash("42") + "/x42"},
		{name: "nothing to replace", in: "/health", want: "/health", wantPath: "/health"},
	}
	for _, tc := range tests {
		if got := r.Value(tc.in); got != tc.want {
			t.Errorf("%s: Value(%q) = %q, want %q", tc.name, tc.in, got, tc.want)
		}
		if got := r.Path(tc.in); got != tc.wantPath {
			t.Errorf("%s: Path(%q) = %q, want %q", tc.name, tc.in, got, tc.wantPath)
		}
	}
	var none *Redactor
	if none.Value("tok/secret+1") != "tok/secret+1" || none.Path("/42") != "/42" {
		t.Error("a nil Redactor changed a value")
	}
}

func TestMayHold(t *testing.T) {
	t.Parallel()
	secrets := []Secret{{Clear: "s3cr3t", Hashed: fakeHash("s3cr3t")}}
	for field, want := range map[string]bool{"": false, "/plain": false, "/x/s3cr3t": true, "/x/%73": true} {
		if got := MayHold(field, secrets); got != want {
			t.Errorf("MayHold(%q) = %v, want %v", field, got, want)
		}
	}
}
