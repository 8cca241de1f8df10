package ui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"sort"
	"strings"
	"sync"
	"time"
)

//go:embed static
var static embed.FS

// AssetPrefix is the path under which the scripts and styles are served, followed by a version
// derived from their content. Because a new build changes the version, assets can be cached for
// good while the page itself is revalidated on every load.
const AssetPrefix = "/static/"

// ContentSecurityPolicy is sent with every answer of the handler. The page needs nothing but its
// own scripts, styles and the API on the same origin; frames, plugins, forms to elsewhere and
// base-URL tricks are all refused.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; " +
	"img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; " +
	"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// versionPlaceholder marks where index.html names the asset directory.
const versionPlaceholder = "{{ASSETS}}"

type asset struct {
	body        []byte
	contentType string
	etag        string
}

type handler struct {
	index   asset
	version string
	assets  map[string]asset // by file name, e.g. "app.js"
}

// Handler returns the handler that serves the UI: the page at "/" (and "/index.html"), and the
// embedded assets under AssetPrefix + version + "/". Other paths answer 404, other methods 405.
// It is safe for concurrent use; the assets are read and hashed once per process.
func Handler() http.Handler {
	h, err := load()
	if err != nil {
		// The assets are embedded at build time; failing to read them is a build defect that the
		// package's own tests catch, never a runtime condition.
		panic("ui: embedded assets: " + err.Error())
	}
	return h
}

var load = sync.OnceValues(func() (*handler, error) { return newHandler(static) })

func newHandler(fsys fs.FS) (*handler, error) {
	sub, err := fs.Sub(fsys, "static")
	if err != nil {
		return nil, err
	}
	names, err := fs.Glob(sub, "*")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	h := &handler{assets: make(map[string]asset, len(names))}
	sum := sha256.New()
	var indexBody []byte
	for _, name := range names {
		body, err := fs.ReadFile(sub, name)
		if err != nil {
			return nil, err
		}
		sum.Write([]byte(name))
		sum.Write([]byte{0})
		sum.Write(body)
		if name == "index.html" {
			indexBody = body
			continue
		}
		h.assets[name] = asset{body: body, contentType: contentType(name)}
	}
	if indexBody == nil {
		return nil, fs.ErrNotExist
	}
	h.version = hex.EncodeToString(sum.Sum(nil))[:12]
	for name, a := range h.assets {
		a.etag = `"` + h.version + "-" + name + `"`
		h.assets[name] = a
	}
	page := bytes.ReplaceAll(indexBody, []byte(versionPlaceholder), []byte(AssetPrefix+h.version))
	h.index = asset{body: page, contentType: "text/html; charset=utf-8", etag: `"` + h.version + `"`}
	return h, nil
}

func contentType(name string) string {
	switch path.Ext(name) {
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	case ".html":
		return "text/html; charset=utf-8"
	default:
		return "application/octet-stream"
	}
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Content-Security-Policy", ContentSecurityPolicy)
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("X-Frame-Options", "DENY")
	hdr.Set("Cross-Origin-Opener-Policy", "same-origin")

	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}

	p := r.URL.Path
	switch {
	case p == "/" || p == "/index.html":
		// The page names the current asset version, so it must be revalidated on every load.
		hdr.Set("Cache-Control", "no-cache")
		serve(w, r, h.index)
		return
	case strings.HasPrefix(p, AssetPrefix):
		version, name, ok := strings.Cut(p[len(AssetPrefix):], "/")
		a, found := h.assets[name]
		if ok && found && version == h.version {
			hdr.Set("Cache-Control", "public, max-age=31536000, immutable")
			serve(w, r, a)
			return
		}
	}
	hdr.Set("Cache-Control", "no-store")
	http.NotFound(w, r)
}

func serve(w http.ResponseWriter, r *http.Request, a asset) {
	w.Header().Set("Content-Type", a.contentType)
	w.Header().Set("ETag", a.etag)
	// ServeContent answers If-None-Match with 304 from the ETag header and handles HEAD and ranges.
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}
