package sessions

import (
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
)

// idPlaceholder replaces path segments that look like identifiers.
const idPlaceholder = "{id}"

// minTokenLen is the shortest segment treated as an opaque base64-like token; shorter mixed
// segments ("v2", "page10") are usually names.
const minTokenLen = 20

// minHexLen is the shortest all-hex segment treated as an id (object ids, digests).
const minHexLen = 16

// route templates a path (already without its query) so requests to the same endpoint share
// one route: numbers, UUIDs, long hex strings, long base64/base64url tokens and e-mail
// addresses become "{id}". It allocates only when a segment changes.
func route(path string) string {
	var b strings.Builder
	changed := false
	start := 0
	for start <= len(path) {
		end := strings.IndexByte(path[start:], '/')
		if end < 0 {
			end = len(path)
		} else {
			end += start
		}
		seg := path[start:end]
		if isID(seg) {
			if !changed {
				changed = true
				b.Grow(len(path))
				b.WriteString(path[:start])
			}
			b.WriteString(idPlaceholder)
		} else if changed {
			b.WriteString(seg)
		}
		if end == len(path) {
			break
		}
		if changed {
			b.WriteByte('/')
		}
		start = end + 1
	}
	if !changed {
		return path
	}
	return b.String()
}

func isID(seg string) bool {
	if seg == "" {
		return false
	}
	if isHashedForm(seg) {
		return true
	}
	var digits, letters, hex, other int
	at := -1
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		switch {
		case c >= '0' && c <= '9':
			digits++
			hex++
		case c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F':
			letters++
			hex++
		case c >= 'g' && c <= 'z' || c >= 'G' && c <= 'Z':
			letters++
		case c == '@':
			if at >= 0 {
				return false
			}
			at = i
			other++
		default:
			other++
		}
	}
	switch {
	case digits == len(seg):
		return true
	case isUUID(seg):
		return true
	case hex == len(seg) && len(seg) >= minHexLen:
		return true
	case at > 0:
		return isEmail(seg, at)
	case len(seg) >= minTokenLen && digits > 0 && letters > 0:
		return isTokenChars(seg)
	}
	return false
}

// isHashedForm matches a hashed parameter value ("hmac:" + 32 hex), which replaces a hashed
// path capture in the path before the route is templated.
func isHashedForm(s string) bool {
	const prefix = "hmac:"
	if len(s) != len(prefix)+2*paramHashBytes || s[:len(prefix)] != prefix {
		return false
	}
	for i := len(prefix); i < len(s); i++ {
		if !isHex(s[i]) {
			return false
		}
	}
	return true
}

// isUUID matches the 8-4-4-4-12 hex form in any case.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return false
			}
		default:
			if !isHex(s[i]) {
				return false
			}
		}
	}
	return true
}

// isEmail accepts local@domain with a dot inside the domain; at is the index of '@'. Percent
// escapes are allowed in the local part because paths arrive encoded.
func isEmail(s string, at int) bool {
	domain := s[at+1:]
	dot := strings.LastIndexByte(domain, '.')
	if dot <= 0 || dot == len(domain)-1 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' {
			continue
		}
		switch c {
		case '@', '.', '-', '_', '+', '%':
			continue
		}
		return false
	}
	return true
}

// isTokenChars accepts the alphabets of base64 and base64url, padding included.
func isTokenChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' {
			continue
		}
		switch c {
		case '-', '_', '+', '=', '.':
			continue
		}
		return false
	}
	return true
}

// Bounds of the per-host route table. An API has a few hundred endpoints; a path scheme the
// templating does not recognise (ids that look like words, slugs) or a client making up paths
// would otherwise give every request its own route and make route counts useless downstream.
const (
	// maxRoutesPerHost is the number of distinct routes a host keeps as they are.
	maxRoutesPerHost = 1000
	// maxCollapsedPerHost is the number of distinct collapsed routes ("/a/b/{...}") a host
	// keeps once its table is full; beyond it, new routes become "/{...}".
	maxCollapsedPerHost = 100
	// maxRouteHosts is the number of hosts with a table of their own; further hosts share one.
	maxRouteHosts = 4096
	// keptSegments is how many leading segments a collapsed route keeps.
	keptSegments = 2
	// restPlaceholder stands for the segments a collapsed route dropped.
	restPlaceholder = "{...}"
)

// routeTable bounds the number of distinct routes per host. It keeps hashes, not strings, so
// its memory is bounded by the entry counts alone: (maxRouteHosts+1) hosts of at most
// maxRoutesPerHost+maxCollapsedPerHost entries.
type routeTable struct {
	seed  maphash.Seed
	mu    sync.RWMutex
	hosts map[string]*hostRoutes
	// shared serves every host beyond maxRouteHosts.
	shared    *hostRoutes
	collapsed atomic.Int64 // routes reported collapsed, for Stats
}

type hostRoutes struct {
	mu        sync.RWMutex
	routes    map[uint64]struct{}
	collapsed map[uint64]struct{}
}

func newRouteTable() *routeTable {
	return &routeTable{seed: maphash.MakeSeed(), hosts: map[string]*hostRoutes{}, shared: newHostRoutes()}
}

func newHostRoutes() *hostRoutes {
	return &hostRoutes{routes: map[uint64]struct{}{}, collapsed: map[uint64]struct{}{}}
}

// hostsLen is the number of hosts with their own table.
func (t *routeTable) hostsLen() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.hosts)
}

func (t *routeTable) host(h string) *hostRoutes {
	t.mu.RLock()
	hr, ok := t.hosts[h]
	t.mu.RUnlock()
	if ok {
		return hr
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if hr, ok := t.hosts[h]; ok {
		return hr
	}
	if len(t.hosts) >= maxRouteHosts {
		return t.shared
	}
	hr = newHostRoutes()
	t.hosts[strings.Clone(h)] = hr
	return hr
}

// bound returns r (a templated route of host) when the host's table holds it or has room for
// it; otherwise its collapsed form, and "/{...}" once the collapsed forms are full too.
func (t *routeTable) bound(host, r string) string {
	hr := t.host(host)
	h := maphash.String(t.seed, r)
	hr.mu.RLock()
	_, known := hr.routes[h]
	full := len(hr.routes) >= maxRoutesPerHost
	hr.mu.RUnlock()
	if known {
		return r
	}
	if !full {
		hr.mu.Lock()
		if len(hr.routes) < maxRoutesPerHost {
			hr.routes[h] = struct{}{}
			hr.mu.Unlock()
			return r
		}
		hr.mu.Unlock()
	}
	t.collapsed.Add(1)
	// A route too short to collapse counts against the collapsed forms itself, so that
	// made-up two-segment paths stay bounded as well.
	c, _ := collapseRoute(r)
	ch := maphash.String(t.seed, c)
	hr.mu.Lock()
	defer hr.mu.Unlock()
	if _, ok := hr.collapsed[ch]; ok {
		return c
	}
	if len(hr.collapsed) < maxCollapsedPerHost {
		hr.collapsed[ch] = struct{}{}
		return c
	}
	return "/" + restPlaceholder
}

// collapseRoute keeps the first keptSegments segments of a route and replaces the rest with
// "{...}"; false when there is nothing to drop.
func collapseRoute(r string) (string, bool) {
	slashes := 0
	for i := 0; i < len(r); i++ {
		if r[i] != '/' {
			continue
		}
		slashes++
		if slashes == keptSegments+1 {
			if i == len(r)-1 {
				return r, false
			}
			return r[:i+1] + restPlaceholder, true
		}
	}
	return r, false
}
