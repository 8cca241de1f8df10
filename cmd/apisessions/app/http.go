package app

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"net/netip"
	"strings"

	"github.com/apisessions/apisessions/config"
)

// routes is the HTTP listener: health and readiness for probes, /metrics unless it has a
// listener of its own, and the explore API and UI, all behind the Host check.
func (s *server) routes(cfg *config.Config, apiToken string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	if cfg.Server.MetricsListen == "" {
		mux.Handle("GET /metrics", requireToken(apiToken, s.metrics.Handler(s.logger.With("component", "metrics"))))
	}
	if s.explore != nil {
		// The explore API under /api/ and the web UI everywhere else.
		mux.Handle("/", s.explore)
	}
	return newHostGuard(cfg.Server.AllowedHosts, mux)
}

// metricsRoutes is the listener of server.metrics_listen: /metrics alone, without token or
// Host check (the page holds counts, never traffic values).
func (s *server) metricsRoutes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.metrics.Handler(s.logger.With("component", "metrics")))
	return mux
}

func (s *server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz answers 200 when the gRPC server and every sink are ready, else 503 with the reason.
func (s *server) readyz(w http.ResponseWriter, _ *http.Request) {
	if !s.ready.Load() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": "grpc server is not serving"})
		return
	}
	if err := s.pipeline.Ready(); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// requireToken wraps next so that it answers only requests carrying "Authorization: Bearer
// <token>"; with no token configured it returns next as it is.
func requireToken(token string, next http.Handler) http.Handler {
	if token == "" {
		return next
	}
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
		if !ok || !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="apisessions"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "a valid token is required; send Authorization: Bearer <the token in server.api_token_file>, or set server.metrics_listen to scrape without one"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// hostGuard refuses requests whose Host is neither a loopback name nor allowed by
// server.allowed_hosts. A web page can make a browser send requests to a loopback or private
// address under the page's own host name (DNS rebinding) and read the answers as same-origin;
// those requests carry the page's Host, which is how they are recognised.
//
// /healthz and /readyz answer any Host: kubelet probes name the pod IP, and the answers say
// only whether the process runs and is ready.
type hostGuard struct {
	prefixes []netip.Prefix
	names    []string
	next     http.Handler
}

// newHostGuard compiles server.allowed_hosts (validated by config): IP prefixes, IP addresses
// (with or without brackets) and host name globs.
func newHostGuard(allowed []string, next http.Handler) *hostGuard {
	g := &hostGuard{next: next}
	for _, h := range allowed {
		if p, err := netip.ParsePrefix(h); err == nil {
			g.prefixes = append(g.prefixes, p.Masked())
			continue
		}
		if a, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
			a = a.Unmap()
			g.prefixes = append(g.prefixes, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		g.names = append(g.names, h)
	}
	return g
}

// maxShownHost bounds the Host value echoed in a refusal.
const maxShownHost = 256

func (g *hostGuard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" || g.allows(r.Host) {
		g.next.ServeHTTP(w, r)
		return
	}
	host := r.Host
	if len(host) > maxShownHost {
		host = host[:maxShownHost] + "..."
	}
	writeJSON(w, http.StatusMisdirectedRequest, map[string]string{"error": "this server does not answer for host " +
		quoteHost(host) + "; open it as localhost or 127.0.0.1 (e.g. through ssh -L or kubectl port-forward), or add the name to server.allowed_hosts"})
}

// allows reports whether authority (a Host value, port optional) may be answered.
func (g *hostGuard) allows(authority string) bool {
	host := config.StripPort(authority)
	if host == "" {
		return false
	}
	if config.LoopbackHost(host) {
		return true
	}
	if a, err := netip.ParseAddr(host); err == nil {
		a = a.Unmap()
		for _, p := range g.prefixes {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
	for _, n := range g.names {
		if config.HostMatch(n, host) {
			return true
		}
	}
	return false
}

func quoteHost(h string) string {
	b, _ := json.Marshal(h)
	return string(b)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
