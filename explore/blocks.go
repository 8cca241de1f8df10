package explore

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/apisessions/apisessions/protect/manual"
)

// Blocker holds the manual blocks (implemented by *protect.Engine).
type Blocker interface {
	Block(kind, id string, dur time.Duration, reason, by string) (manual.Block, error)
	// Unblock lifts a block; err says the change holds on this server only.
	Unblock(kind, id, by string) (bool, error)
	Blocked(kind, id string) (manual.Block, bool)
	Audit(kind, id string) []manual.AuditEntry
}

// Bounds on what a block request may carry.
const (
	maxBlockRequest = 4096
	maxReason       = 512
	maxUserID       = 1024
)

// writeToken is one named write token, kept as its digest.
type writeToken struct {
	name   string
	digest [32]byte
}

// blockRequest is the body of POST …/block.
type blockRequest struct {
	For    string `json:"for"`
	Reason string `json:"reason"`
}

// blockAnswer is what the block paths answer: the block in force (null when none) and the
// audit log of the session or user.
type blockAnswer struct {
	Block *manual.Block       `json:"block"`
	Audit []manual.AuditEntry `json:"audit"`
	// Done says, after a DELETE, whether a block was in force.
	Done *bool `json:"unblocked,omitempty"`
}

// registerBlocks adds the block paths of sessions and users.
func (h *Handler) registerBlocks(mux *http.ServeMux) {
	for _, k := range []struct{ kind, param string }{{manual.KindSession, "session"}, {manual.KindUser, "user"}} {
		base := "/api/v1/" + k.param + "s/{" + k.param + "}/block"
		mux.HandleFunc("GET "+base, h.blocks(false, k.kind, k.param, false, h.getBlock))
		mux.HandleFunc("POST "+base, h.blocks(true, k.kind, k.param, false, h.postBlock))
		mux.HandleFunc("DELETE "+base, h.blocks(true, k.kind, k.param, false, h.deleteBlock))
	}
	// A user named "." or ".." cannot be a path segment: clients resolve it away, "%2E%2E"
	// too (a browser follows the URL standard), so the user may come in the query instead.
	const byQuery = "/api/v1/users/block"
	mux.HandleFunc("GET "+byQuery, h.blocks(false, manual.KindUser, "user", true, h.getBlock))
	mux.HandleFunc("POST "+byQuery, h.blocks(true, manual.KindUser, "user", true, h.postBlock))
	mux.HandleFunc("DELETE "+byQuery, h.blocks(true, manual.KindUser, "user", true, h.deleteBlock))
}

// blocks wraps a block path: security headers, the token (a write token for writes, whose
// name is passed on), the id (the path's param, or with inQuery the query's) checked, errors
// as JSON.
func (h *Handler) blocks(write bool, kind, param string, inQuery bool, fn func(w http.ResponseWriter, r *http.Request, kind, id, by string) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Cache-Control", "no-store")
		by, isWriter := h.writer(r)
		switch {
		case write && len(h.writeTokens) == 0:
			writeError(w, http.StatusForbidden, "this server takes no writes; set server.write_tokens_file to name the tokens that may block and unblock")
			return
		case write && !isWriter:
			hd.Set("WWW-Authenticate", `Bearer realm="apisessions"`)
			writeError(w, http.StatusUnauthorized, "a write token is required; send Authorization: Bearer <a token of server.write_tokens_file>")
			return
		case !write && h.hasTok && !isWriter && !h.authorized(r):
			hd.Set("WWW-Authenticate", `Bearer realm="apisessions"`)
			writeError(w, http.StatusUnauthorized, "a valid token is required; send Authorization: Bearer <the token in server.api_token_file>")
			return
		}
		if h.blocker == nil {
			writeError(w, http.StatusServiceUnavailable, "manual blocks are not available on this server")
			return
		}
		id := r.PathValue(param)
		if inQuery {
			id = r.URL.Query().Get(param)
		}
		if msg := checkID(kind, id); msg != "" {
			writeError(w, http.StatusBadRequest, msg)
			return
		}
		if err := fn(w, r, kind, id, by); err != nil {
			var ae *apiError
			if errors.As(err, &ae) {
				writeError(w, ae.status, ae.msg)
				return
			}
			writeError(w, http.StatusInternalServerError, "the block failed; see the server log")
		}
	}
}

// writer returns the name of the write token r carries.
func (h *Handler) writer(r *http.Request) (string, bool) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || len(h.writeTokens) == 0 {
		return "", false
	}
	d := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	name, found := "", false
	// Every token is compared, so the time taken does not say which one matched.
	for _, t := range h.writeTokens {
		if subtle.ConstantTimeCompare(d[:], t.digest[:]) == 1 {
			name, found = t.name, true
		}
	}
	return name, found
}

// checkID returns what is wrong with a session id or a user, "" when nothing.
func checkID(kind, id string) string {
	if kind == manual.KindSession {
		if len(id) != 22 || !strings.HasPrefix(id, "s_") || strings.ContainsFunc(id[2:], func(r rune) bool { return !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') }) {
			return fmt.Sprintf("%s is not a session id; write it as records show it: s_ and 20 lowercase hex characters", quote(id))
		}
		return ""
	}
	if id == "" || len(id) > maxUserID || !utf8.ValidString(id) || strings.ContainsFunc(id, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return fmt.Sprintf("%s is not a user; write it as records show it (at most %d bytes of text)", quote(id), maxUserID)
	}
	return ""
}

func (h *Handler) getBlock(w http.ResponseWriter, _ *http.Request, kind, id, _ string) error {
	writeJSON(w, http.StatusOK, h.blockState(kind, id))
	return nil
}

func (h *Handler) blockState(kind, id string) blockAnswer {
	a := blockAnswer{Audit: h.blocker.Audit(kind, id)}
	if b, ok := h.blocker.Blocked(kind, id); ok {
		a.Block = &b
	}
	if a.Audit == nil {
		a.Audit = []manual.AuditEntry{}
	}
	return a
}

func (h *Handler) postBlock(w http.ResponseWriter, r *http.Request, kind, id, by string) error {
	var req blockRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBlockRequest))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return &apiError{status: http.StatusBadRequest, msg: `the body is not {"for": "1h", "reason": "…"} (at most 4 KiB of JSON)`}
	}
	dur, err := time.ParseDuration(req.For)
	if err != nil || dur <= 0 {
		return &apiError{status: http.StatusBadRequest, msg: `"for" is not a duration; write e.g. "30m", "1h" or "72h"`}
	}
	if dur > manual.MaxFor {
		return &apiError{status: http.StatusBadRequest, msg: fmt.Sprintf(`"for" is at most %s (366 days)`, manual.MaxFor)}
	}
	if len(req.Reason) > maxReason || !utf8.ValidString(req.Reason) || strings.ContainsFunc(req.Reason, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return &apiError{status: http.StatusBadRequest, msg: fmt.Sprintf(`"reason" must be one line of at most %d bytes of text`, maxReason)}
	}
	if _, err := h.blocker.Block(kind, id, dur, req.Reason, by); err != nil {
		if errors.Is(err, manual.ErrNotShared) {
			h.log.Warn("manual block not shared", "kind", kind, "by", by, "error", err.Error())
			return &apiError{status: http.StatusServiceUnavailable, msg: "the block holds on this server only: " + err.Error() + "; try again"}
		}
		return &apiError{status: http.StatusBadRequest, msg: err.Error()}
	}
	h.log.Info("manual block", "kind", kind, "id", id, "for", dur.String(), "by", by)
	writeJSON(w, http.StatusOK, h.blockState(kind, id))
	return nil
}

func (h *Handler) deleteBlock(w http.ResponseWriter, _ *http.Request, kind, id, by string) error {
	done, err := h.blocker.Unblock(kind, id, by)
	if err != nil {
		h.log.Warn("manual unblock not shared", "kind", kind, "by", by, "error", err.Error())
		return &apiError{status: http.StatusServiceUnavailable, msg: "the unblock holds on this server only: " + err.Error() + "; try again"}
	}
	h.log.Info("manual unblock", "kind", kind, "id", id, "by", by, "was_blocked", done)
	a := h.blockState(kind, id)
	a.Done = &done
	writeJSON(w, http.StatusOK, a)
	return nil
}
