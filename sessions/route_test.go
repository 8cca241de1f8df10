package sessions

import (
	"strings"
	"testing"
)

func TestRoute(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		path string
		want string
	}{
		{name: "root", path: "/", want: "/"},
		{name: "empty", path: "", want: ""},
		{name: "names kept", path: "/api/v1/users", want: "/api/v1/users"},
		{name: "number", path: "/users/42/orders", want: "/users/{id}/orders"},
		{name: "trailing number", path: "/users/42", want: "/users/{id}"},
		{name: "trailing slash kept", path: "/users/42/", want: "/users/{id}/"},
		{name: "two ids", path: "/users/42/orders/7", want: "/users/{id}/orders/{id}"},
		{name: "uuid", path: "/items/3f9c0a51-b2d4-7e88-16aa-0123456789ab", want: "/items/{id}"},
		{name: "upper-case uuid", path: "/items/3F9C0A51-B2D4-7E88-16AA-0123456789AB", want: "/items/{id}"},
		{name: "long hex", path: "/objects/507f1f77bcf86cd799439011", want: "/objects/{id}"},
		{name: "short hex is a name", path: "/colors/beef", want: "/colors/beef"},
		{name: "base64url token", path: "/reset/dGhpcyBpcyBhIHRva2VuXzEyMw", want: "/reset/{id}"},
		{name: "jwt-like token", path: "/t/eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig123", want: "/t/{id}"},
		{name: "long word without digits is a name", path: "/internationalization/settings", want: "/internationalization/settings"},
		{name: "short mixed is a name", path: "/api/v2/page10", want: "/api/v2/page10"},
		{name: "email", path: "/users/john.doe@example.com/profile", want: "/users/{id}/profile"},
		{name: "encoded email", path: "/users/john%2Bx@example.com", want: "/users/{id}"},
		{name: "at without domain is a name", path: "/@home", want: "/@home"},
		{name: "double slash", path: "//42", want: "//{id}"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := route(tc.path); got != tc.want {
				t.Errorf("%s: route(%q) = %q, want %q", tc.name, tc.path, got, tc.want)
			}
		})
	}
}

func TestRouteUnchangedDoesNotAllocate(t *testing.T) {
	p := "/api/v1/users/profile"
	if n := testing.AllocsPerRun(100, func() { _ = route(p) }); n != 0 {
		t.Errorf("route of a path without ids allocated %v times, want 0", n)
	}
}

func FuzzRoute(f *testing.F) {
	for _, s := range []string{"/", "/users/42", "/a@b.c", strings.Repeat("/9", 100), "/\xff\xfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		r := route(p)
		if strings.Count(r, "/") != strings.Count(p, "/") {
			t.Errorf("route(%q) = %q changed the number of segments", p, r)
		}
	})
}
