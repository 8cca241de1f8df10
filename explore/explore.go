// Package explore serves the explore API (/api/v1/…) over the store: the overview of a period,
// the session list with its filters and cursor, one session part with its statistics and
// requests, the CSV and HAR exports of a part (har.go) and the lookup of a request by its id.
// It mounts the web UI (explore/ui) at "/".
//
// Every answer is JSON ({"error": "..."} for errors, saying what to fix) except the CSV. When a
// token is set, every /api/ path wants "Authorization: Bearer <token>"; the UI's page and
// scripts carry no data and load without it, then ask for the token.
//
// Every query has a deadline. A list whose filters no index answers scans the store's parts
// (store.ListPlan.Scans): it gets a short deadline of its own, and scans and exports, the heavy
// queries, are limited per client address and scans in all (limit.go), so that they never take
// every read connection from the other queries.
//
// The overview (overview.go) summarises a period for the UI's landing view: requests over
// time, the routes and sessions with most malicious requests and errors, new users and user
// agents. It reads every request of the period, so it counts as a heavy query.
//
// The block paths (blocks.go) read and change the manual blocks of sessions and users; they
// take writes only with a named write token (server.write_tokens_file).
//
// It imports the store, the record shape and protect/manual; never the sessions engine, the
// protection engine, gRPC or the sinks.
package explore

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/apisessions/apisessions/internal/secretfile"
	"github.com/apisessions/apisessions/protect/manual"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/store"
)

// Store is what the API reads; *store.Store implements it.
type Store interface {
	PlanList(ctx context.Context, q store.ListQuery) (*store.ListPlan, error)
	Part(ctx context.Context, session, part string, q store.PartQuery) (*store.PartView, error)
	EachRequest(ctx context.Context, session, part string, f store.Filter, fn func(*record.Request) error) error
	Request(ctx context.Context, requestID string) (*store.Found, error)
	Overview(ctx context.Context, q store.OverviewQuery) (*store.Overview, error)
	Readers() int
}

var _ Store = (*store.Store)(nil)

// Options configure New.
type Options struct {
	// Store answers the queries; nil answers 503 on every /api/ path (no store sink configured).
	Store Store
	// Token, when not empty, is required as a bearer token on /api/ paths.
	Token string
	// UI is served at "/" (every path outside /api/); nil answers 404 there.
	UI http.Handler
	// Logger already names the component; nil discards.
	Logger *slog.Logger
	// QueryTimeout bounds one query (default 30 s).
	QueryTimeout time.Duration
	// ScanTimeout bounds a list query that scans (store.ListPlan.Scans); past it the query is
	// interrupted and answered 503 (default 100 ms, what a list the indexes answer may take).
	ScanTimeout time.Duration
	// HeavyPerClient bounds the heavy queries, scans and CSV exports, that one client address
	// runs at once (default 2).
	HeavyPerClient int
	// Scans bounds the scans that run at once (default: one less than the store's read
	// connections, at least 1).
	Scans int
	// Blocks holds the manual blocks of sessions and users; nil answers 503 on their paths.
	Blocks Blocker
	// Version is the program's version, written into HAR exports (log.creator.version).
	Version string
	// WriteTokens are the named tokens (name → token) writes require; without any the API
	// takes no writes. A write token also reads.
	WriteTokens map[string]string
}

// Handler serves the API and the UI.
type Handler struct {
	store   Store
	token   [32]byte
	hasTok  bool
	ui      http.Handler
	log     *slog.Logger
	timeout time.Duration
	// scanTimeout bounds a scan.
	scanTimeout time.Duration
	heavy       *heavy
	mux         *http.ServeMux
	blocker     Blocker
	// now is the clock of the overview's default period.
	now         func() time.Time
	writeTokens []writeToken
	version     string
}

// New returns the handler. Mount it at "/" of the HTTP server (next to /healthz, /metrics).
func New(o Options) *Handler {
	h := &Handler{store: o.Store, ui: o.UI, log: o.Logger, timeout: o.QueryTimeout, scanTimeout: o.ScanTimeout, now: time.Now}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.timeout <= 0 {
		h.timeout = 30 * time.Second
	}
	if h.scanTimeout <= 0 {
		h.scanTimeout = 100 * time.Millisecond
	}
	perClient, scans := o.HeavyPerClient, o.Scans
	if perClient <= 0 {
		perClient = 2
	}
	if scans <= 0 && o.Store != nil {
		scans = o.Store.Readers() - 1
	}
	h.heavy = newHeavy(perClient, max(scans, 1), scanWait)
	if o.Token != "" {
		// Comparing fixed-size digests keeps the comparison constant-time whatever the length.
		h.token, h.hasTok = sha256.Sum256([]byte(o.Token)), true
	}
	h.blocker = o.Blocks
	h.version = cmp.Or(o.Version, "dev")
	for name, tok := range o.WriteTokens {
		h.writeTokens = append(h.writeTokens, writeToken{name: name, digest: sha256.Sum256([]byte(tok))})
	}
	mux := http.NewServeMux()
	h.registerBlocks(mux)
	mux.HandleFunc("GET /api/v1/sessions", h.api(h.list))
	mux.HandleFunc("GET /api/v1/sessions/{session}/{part}", h.api(h.part))
	mux.HandleFunc("GET /api/v1/sessions/{session}/{part}/requests.csv", h.api(h.csv))
	mux.HandleFunc("GET /api/v1/sessions/{session}/{part}/session.har", h.api(h.har))
	mux.HandleFunc("GET /api/v1/requests/{request_id}", h.api(h.request))
	mux.HandleFunc("GET /api/v1/overview", h.api(h.overview))
	mux.HandleFunc("/api/", h.api(func(w http.ResponseWriter, r *http.Request) error {
		return errNotFound("no such API path; see /api/v1/sessions")
	}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if h.ui == nil {
			http.NotFound(w, r)
			return
		}
		h.ui.ServeHTTP(w, r)
	})
	h.mux = mux
	return h
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// apiError carries an HTTP status and a message for the client.
type apiError struct {
	status int
	msg    string
	// retryAfter, when > 0, is sent as Retry-After (seconds).
	retryAfter int
}

func (e *apiError) Error() string { return e.msg }

func errNotFound(msg string) error { return &apiError{status: http.StatusNotFound, msg: msg} }

// api wraps an endpoint: security headers, the token check, the query timeout, and errors
// turned into JSON answers.
func (h *Handler) api(fn func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Cache-Control", "no-store")
		if _, writer := h.writer(r); h.hasTok && !writer && !h.authorized(r) {
			hd.Set("WWW-Authenticate", `Bearer realm="apisessions"`)
			writeError(w, http.StatusUnauthorized, "a valid token is required; send Authorization: Bearer <the token in server.api_token_file>")
			return
		}
		if h.store == nil {
			writeError(w, http.StatusServiceUnavailable, "no store sink is configured; add - {type: store} to sinks to explore sessions")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), h.timeout)
		defer cancel()
		err := fn(w, r.WithContext(ctx))
		if err == nil {
			return
		}
		var bf *badFilter
		var ae *apiError
		switch {
		case errors.As(err, &bf):
			writeError(w, http.StatusBadRequest, bf.msg)
		case errors.As(err, &ae):
			if ae.retryAfter > 0 {
				hd.Set("Retry-After", strconv.Itoa(ae.retryAfter))
			}
			writeError(w, ae.status, ae.msg)
		case errors.Is(err, store.ErrBadCursor):
			writeError(w, http.StatusBadRequest, err.Error())
		case errors.Is(err, store.ErrNotFound):
			writeError(w, http.StatusNotFound, "not found")
		case errors.Is(err, store.ErrClosed):
			writeError(w, http.StatusServiceUnavailable, "the store is shutting down; try again")
		case errors.Is(err, context.DeadlineExceeded):
			writeError(w, http.StatusServiceUnavailable, "the query took too long; narrow the filters (a shorter time interval, a user or an IP)")
		case r.Context().Err() != nil:
			// The client went away; nobody reads the answer.
		default:
			h.log.Warn("explore query failed", "path", r.URL.Path, "error", err.Error())
			writeError(w, http.StatusInternalServerError, "the query failed; see the server log")
		}
	}
}

func (h *Handler) authorized(r *http.Request) bool {
	v := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	d := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return subtle.ConstantTimeCompare(d[:], h.token[:]) == 1
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(true)
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// listAnswer is the answer of GET /api/v1/sessions.
type listAnswer struct {
	Sessions []*record.Session `json:"sessions"`
	Next     string            `json:"next"`
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) error {
	q, err := parseQuery(r.URL.Query(), listFilters, store.MaxLimit)
	if err != nil {
		return err
	}
	plan, err := h.store.PlanList(r.Context(), store.ListQuery{Filter: q.filter, Limit: q.limit, Cursor: q.cursor})
	if err != nil {
		return err
	}
	ctx := r.Context()
	if plan.Scans() {
		release, err := h.heavy.acquire(ctx, clientOf(r), true)
		if err != nil {
			return err
		}
		defer release()
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, h.scanTimeout, errScanTimeout)
		defer cancel()
	}
	p, err := plan.Run(ctx)
	if err != nil && errors.Is(context.Cause(ctx), errScanTimeout) {
		return &apiError{status: http.StatusServiceUnavailable, msg: fmt.Sprintf("no index answers this combination of "+
			"filters, and testing the session parts one by one took longer than %s; add a selective filter (user, ip, "+
			"request_id) or a shorter time interval", h.scanTimeout)}
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, listAnswer{Sessions: p.Sessions, Next: p.Next})
	return nil
}

// scanWait is how long a scan waits for one of the scan slots: several scans' time.
const scanWait = time.Second

// errScanTimeout is the cause of a scan's deadline.
var errScanTimeout = errors.New("scan timeout")

func (h *Handler) part(w http.ResponseWriter, r *http.Request) error {
	q, err := parseQuery(r.URL.Query(), partFilters, store.MaxPartLimit)
	if err != nil {
		return err
	}
	session, part := r.PathValue("session"), r.PathValue("part")
	v, err := h.store.Part(r.Context(), session, part, store.PartQuery{Filter: q.filter, Limit: q.limit, Cursor: q.cursor})
	if errors.Is(err, store.ErrNotFound) {
		return errNotFound(fmt.Sprintf("no session part %s/%s; it may have passed the retention", quote(session), quote(part)))
	}
	if err != nil {
		return err
	}
	if h.blocker == nil {
		writeJSON(w, http.StatusOK, v)
		return nil
	}
	// The part's detail says whether its session is blocked, and who blocked and unblocked it.
	b := h.blockState(manual.KindSession, session)
	writeJSON(w, http.StatusOK, struct {
		*store.PartView
		Protection blockAnswer `json:"protection"`
	}{v, b})
	return nil
}

func (h *Handler) request(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("request_id")
	fd, err := h.store.Request(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return errNotFound(fmt.Sprintf("no request with id %s; it may have passed the retention", quote(id)))
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, fd)
	return nil
}

// ReadTokenFile reads the API token from path (server.api_token_file): the whole file without
// its trailing newline. A file that group or others may read, an empty one, or a token with
// anything but visible ASCII is refused.
func ReadTokenFile(path string) (string, error) {
	return secretfile.ReadToken("api token file", path)
}
