package explore

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/apisessions/apisessions/protect/manual"
)

// tableBlocker is a Blocker over the manual blocks table, as the protection engine keeps it.
type tableBlocker struct{ t *manual.Table }

func (b tableBlocker) Block(kind, id string, dur time.Duration, reason, by string) (manual.Block, error) {
	now := time.Now()
	bl := manual.Block{Kind: kind, ID: id, Until: now.Add(dur), Reason: reason, By: by, At: now}
	if err := b.t.Set(bl, now); err != nil {
		return manual.Block{}, err
	}
	b.t.Record(manual.AuditEntry{At: now, By: by, Action: "block", Kind: kind, ID: id, Until: bl.Until, Reason: reason})
	return bl, nil
}

func (b tableBlocker) Unblock(kind, id, by string) (bool, error) {
	_, ok := b.t.Remove(kind, id)
	b.t.Record(manual.AuditEntry{At: time.Now(), By: by, Action: "unblock", Kind: kind, ID: id})
	return ok, nil
}

func (b tableBlocker) Blocked(kind, id string) (manual.Block, bool) {
	return b.t.Get(kind, id, time.Now())
}

func (b tableBlocker) Audit(kind, id string) []manual.AuditEntry { return b.t.AuditOf(kind, id) }

func do(t *testing.T, h http.Handler, method, path, token, body string) answer {
	t.Helper()
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return answer{status: w.Code, header: w.Header(), body: w.Body.String()}
}

func TestManualBlocksAPI(t *testing.T) {
	t.Parallel()
	const (
		read    = "read-token-0123456789"
		write   = "write-token-0123456789"
		session = "s_0123456789abcdef0123"
	)
	tbl := manual.NewTable(10)
	h := New(Options{Store: testStore(t, "sqlite"), Token: read, Blocks: tableBlocker{tbl}, WriteTokens: map[string]string{"ops": write}})
	path := "/api/v1/sessions/" + session + "/block"

	// Writes need a write token; the read token is not one.
	for _, tok := range []string{"", read, "wrong"} {
		if a := do(t, h, "POST", path, tok, `{"for":"1h"}`); a.status != http.StatusUnauthorized {
			t.Errorf("POST with token %q: %d %s", tok, a.status, a.body)
		}
	}
	for _, c := range []struct{ path, body, want string }{
		{path, `{"for":"soon"}`, `"for" is not a duration`},
		{path, `{"for":"-1h"}`, `"for" is not a duration`},
		{path, `{"for":"1h","extra":1}`, "the body is not"},
		{path, `{"for":"1h","reason":"a\nb"}`, `"reason" must be one line`},
		{path, `{"for":"1h","reason":"` + strings.Repeat("x", 600) + `"}`, `"reason" must be one line`},
		{path, `{"for":"10000h"}`, "at most"},
		{path, strings.Repeat(" ", 5000) + `{"for":"1h"}`, "the body is not"},
		{"/api/v1/sessions/s_NOTHEX/block", `{"for":"1h"}`, "is not a session id"},
		{"/api/v1/users/%01x/block", `{"for":"1h"}`, "is not a user"},
	} {
		a := do(t, h, "POST", c.path, write, c.body)
		if a.status != http.StatusBadRequest || !strings.Contains(errorOf(t, a), c.want) {
			t.Errorf("POST %s %.40q: %d %s, want 400 with %q", c.path, c.body, a.status, a.body, c.want)
		}
	}
	if _, ok := tbl.Get(manual.KindSession, session, time.Now()); ok {
		t.Fatal("a refused request blocked the session")
	}

	a := do(t, h, "POST", path, write, `{"for":"1h","reason":"scraping <script>"}`)
	var got blockAnswer
	if a.status != 200 || json.Unmarshal([]byte(a.body), &got) != nil || got.Block == nil || got.Block.By != "ops" || got.Block.Reason != "scraping <script>" {
		t.Fatalf("POST: %d %s", a.status, a.body)
	}
	if strings.Contains(a.body, "<script>") {
		t.Error("the answer carries < unescaped")
	}
	// The read token reads the block, and the part's detail shows it.
	if a := do(t, h, "GET", path, read, ""); a.status != 200 || !strings.Contains(a.body, `"by":"ops"`) {
		t.Errorf("GET: %d %s", a.status, a.body)
	}
	if a := do(t, h, "GET", "/api/v1/sessions/"+session+"/block", "", ""); a.status != http.StatusUnauthorized {
		t.Errorf("GET without a token: %d", a.status)
	}
	a = do(t, h, "DELETE", path, write, "")
	if a.status != 200 || !strings.Contains(a.body, `"unblocked":true`) || !strings.Contains(a.body, `"action":"unblock"`) {
		t.Errorf("DELETE: %d %s", a.status, a.body)
	}
	if _, ok := tbl.Get(manual.KindSession, session, time.Now()); ok {
		t.Error("still blocked after DELETE")
	}
	if a := do(t, h, "POST", "/api/v1/users/alice@example.com/block", write, `{"for":"30m"}`); a.status != 200 {
		t.Errorf("user block: %d %s", a.status, a.body)
	}
	if _, ok := tbl.Get(manual.KindUser, "alice@example.com", time.Now()); !ok {
		t.Error("the user is not blocked")
	}
	// A user named ".." cannot be a path segment (clients resolve it, escaped or not): the
	// query names it instead, and only it.
	if a := do(t, h, "POST", "/api/v1/users/block?user=..", write, `{"for":"30m","reason":"dots"}`); a.status != 200 || !strings.Contains(a.body, `"id":".."`) {
		t.Errorf("POST …/users/block?user=..: %d %s", a.status, a.body)
	}
	if _, ok := tbl.Get(manual.KindUser, "..", time.Now()); !ok {
		t.Error("the user .. is not blocked")
	}
	if _, ok := tbl.Get(manual.KindUser, ".", time.Now()); ok {
		t.Error("the user . is blocked too")
	}
	if a := do(t, h, "GET", "/api/v1/users/block?user=..", read, ""); a.status != 200 || !strings.Contains(a.body, `"reason":"dots"`) {
		t.Errorf("GET …/users/block?user=..: %d %s", a.status, a.body)
	}
	if a := do(t, h, "POST", "/api/v1/users/block", write, `{"for":"30m"}`); a.status != http.StatusBadRequest || !strings.Contains(errorOf(t, a), "is not a user") {
		t.Errorf("POST …/users/block without a user: %d %s", a.status, a.body)
	}

	// The part's detail carries the session's block state.
	a = do(t, h, "GET", "/api/v1/sessions/s_aaaa/2026-11-22", read, "")
	if a.status != 200 || !strings.Contains(a.body, `"protection":{"block":null,"audit":[]}`) {
		t.Errorf("part detail: %d %.300s", a.status, a.body)
	}

	// Without write tokens the server takes no writes at all.
	ro := New(Options{Store: testStore(t, "sqlite"), Blocks: tableBlocker{tbl}})
	if a := do(t, ro, "POST", path, write, `{"for":"1h"}`); a.status != http.StatusForbidden || !strings.Contains(errorOf(t, a), "server.write_tokens_file") {
		t.Errorf("POST without write tokens: %d %s", a.status, a.body)
	}
}
