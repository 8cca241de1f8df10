package ui

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, method, target string, hdr map[string]string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

// assetPaths lists the asset URLs the page names.
func assetPaths(t *testing.T, page string) []string {
	t.Helper()
	found := regexp.MustCompile(`(?:src|href)="(/static/[^"]+)"`).FindAllStringSubmatch(page, -1)
	if len(found) == 0 {
		t.Fatalf("the page names no asset under /static/:\n%s", page)
	}
	var out []string
	for _, m := range found {
		out = append(out, m[1])
	}
	return out
}

func TestHandlerServesPageAndAssets(t *testing.T) {
	t.Parallel()
	h := Handler()
	res := get(t, h, http.MethodGet, "/", nil)
	body, _ := io.ReadAll(res.Body)
	page := string(body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET / answered %d, want 200", res.StatusCode)
	}
	if strings.Contains(page, versionPlaceholder) {
		t.Fatalf("the page still holds the placeholder %s", versionPlaceholder)
	}
	for _, tag := range regexp.MustCompile(`<script\b[^>]*>`).FindAllString(page, -1) {
		if !strings.Contains(tag, ` src="`) {
			t.Fatalf("the page has an inline script %s, which the policy would refuse", tag)
		}
	}
	paths := assetPaths(t, page)
	// Every module the entry point imports must be served too.
	paths = append(paths, strings.Replace(paths[0], "favicon.svg", "state.js", 1))
	for _, p := range paths {
		res := get(t, h, http.MethodGet, p, nil)
		if res.StatusCode != http.StatusOK {
			t.Errorf("GET %s answered %d, want 200", p, res.StatusCode)
			continue
		}
		if cc := res.Header.Get("Cache-Control"); !strings.Contains(cc, "immutable") {
			t.Errorf("GET %s: Cache-Control %q, want a long immutable cache for a versioned asset", p, cc)
		}
	}
}

func TestHandlerHeaders(t *testing.T) {
	t.Parallel()
	h := Handler()
	page, _ := io.ReadAll(get(t, h, http.MethodGet, "/", nil).Body)
	var js, css string
	for _, p := range assetPaths(t, string(page)) {
		switch {
		case strings.HasSuffix(p, ".js"):
			js = p
		case strings.HasSuffix(p, ".css"):
			css = p
		}
	}
	tests := []struct {
		name         string
		method, path string
		status       int
		contentType  string
		cache        string
	}{
		{name: "page", method: http.MethodGet, path: "/", status: 200, contentType: "text/html; charset=utf-8", cache: "no-cache"},
		{name: "page by name", method: http.MethodGet, path: "/index.html", status: 200, contentType: "text/html; charset=utf-8", cache: "no-cache"},
		{name: "page with a view in the query", method: http.MethodGet, path: "/?session=s_1&part=2026-11-22&in.method=POST", status: 200, contentType: "text/html; charset=utf-8", cache: "no-cache"},
		{name: "head of the page", method: http.MethodHead, path: "/", status: 200, contentType: "text/html; charset=utf-8", cache: "no-cache"},
		{name: "module", method: http.MethodGet, path: js, status: 200, contentType: "text/javascript; charset=utf-8", cache: "public, max-age=31536000, immutable"},
		{name: "style", method: http.MethodGet, path: css, status: 200, contentType: "text/css; charset=utf-8", cache: "public, max-age=31536000, immutable"},
		{name: "asset of another version", method: http.MethodGet, path: "/static/000000000000/app.js", status: 404, cache: "no-store"},
		{name: "asset without version", method: http.MethodGet, path: "/static/app.js", status: 404, cache: "no-store"},
		{name: "unknown asset", method: http.MethodGet, path: strings.Replace(js, "app.js", "nope.js", 1), status: 404, cache: "no-store"},
		{name: "the page template is not an asset", method: http.MethodGet, path: strings.Replace(js, "app.js", "index.html", 1), status: 404, cache: "no-store"},
		{name: "traversal", method: http.MethodGet, path: strings.Replace(js, "app.js", "../ui.go", 1), status: 404, cache: "no-store"},
		{name: "unknown path", method: http.MethodGet, path: "/admin", status: 404, cache: "no-store"},
		{name: "post", method: http.MethodPost, path: "/", status: 405},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res := get(t, h, tc.method, tc.path, nil)
			if res.StatusCode != tc.status {
				t.Fatalf("%s %s answered %d, want %d", tc.method, tc.path, res.StatusCode, tc.status)
			}
			if got := res.Header.Get("Content-Security-Policy"); got != ContentSecurityPolicy {
				t.Errorf("Content-Security-Policy = %q, want %q", got, ContentSecurityPolicy)
			}
			if got := res.Header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options = %q, want nosniff", got)
			}
			if tc.contentType != "" && res.Header.Get("Content-Type") != tc.contentType {
				t.Errorf("Content-Type = %q, want %q", res.Header.Get("Content-Type"), tc.contentType)
			}
			if tc.cache != "" && res.Header.Get("Cache-Control") != tc.cache {
				t.Errorf("Cache-Control = %q, want %q", res.Header.Get("Cache-Control"), tc.cache)
			}
			if tc.status == 405 && res.Header.Get("Allow") != "GET, HEAD" {
				t.Errorf("Allow = %q, want GET, HEAD", res.Header.Get("Allow"))
			}
		})
	}
}

func TestPolicyForbidsInlineAndEval(t *testing.T) {
	t.Parallel()
	for _, want := range []string{"default-src 'self'", "script-src 'self'", "object-src 'none'", "frame-ancestors 'none'", "base-uri 'none'"} {
		if !strings.Contains(ContentSecurityPolicy, want) {
			t.Errorf("the policy lacks %q: %s", want, ContentSecurityPolicy)
		}
	}
	for _, bad := range []string{"unsafe-inline", "unsafe-eval", "http:", "https:", "*"} {
		if strings.Contains(ContentSecurityPolicy, bad) {
			t.Errorf("the policy allows %q: %s", bad, ContentSecurityPolicy)
		}
	}
}

func TestHandlerRevalidates(t *testing.T) {
	t.Parallel()
	h := Handler()
	first := get(t, h, http.MethodGet, "/", nil)
	etag := first.Header.Get("ETag")
	if etag == "" {
		t.Fatal("the page has no ETag, so browsers cannot revalidate it")
	}
	if res := get(t, h, http.MethodGet, "/", map[string]string{"If-None-Match": etag}); res.StatusCode != http.StatusNotModified {
		t.Fatalf("GET / with the current ETag answered %d, want 304", res.StatusCode)
	}
}

// TestScriptsBuildDOMOnlyFromText keeps data out of HTML parsing: the scripts must never hand a
// string to an HTML or code sink, whatever the string holds.
func TestScriptsBuildDOMOnlyFromText(t *testing.T) {
	t.Parallel()
	sinks := regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|setTimeout\(['"\x60]|createContextualFragment|DOMParser`)
	names, err := static.ReadDir("static")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range names {
		if !strings.HasSuffix(e.Name(), ".js") {
			continue
		}
		b, err := static.ReadFile("static/" + e.Name())
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			if m := sinks.FindString(line); m != "" {
				t.Errorf("%s:%d uses %s, which parses strings as HTML or code", e.Name(), i+1, m)
			}
		}
	}
}
