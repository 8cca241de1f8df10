package sessions

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/internal/testutil"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// testKey is the hash key of every test engine, so expected ids can be computed independently.
var testKey = []byte("0123456789abcdef0123456789abcdef")

// fakeEmitter records what the engine emits.
type fakeEmitter struct {
	mu   sync.Mutex
	recs []record.Record
}

func (f *fakeEmitter) Emit(r record.Record) {
	f.mu.Lock()
	f.recs = append(f.recs, r)
	f.mu.Unlock()
}

func (f *fakeEmitter) take() []record.Record {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.recs
	f.recs = nil
	return out
}

func (f *fakeEmitter) sessions() []*record.Session {
	var out []*record.Session
	for _, r := range f.take() {
		if s, ok := r.(*record.Session); ok {
			out = append(out, s)
		}
	}
	return out
}

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// testConfig is the default configuration with extra parameters.
func testConfig(t testing.TB, params ...config.Parameter) *config.Config {
	cfg := config.Default()
	cfg.Parameters = params
	// A small lookup cache keeps the many short-lived test engines cheap.
	cfg.Sessions.LookupCacheMB = 1
	return cfg
}

// newTestEngine starts an engine on cfg with a recording emitter and a settable clock, without
// the sweeper's ticker: tests call e.sweep with the times they choose.
func newTestEngine(t testing.TB, cfg *config.Config) (*Engine, *fakeEmitter, *clock) {
	t.Helper()
	em := &fakeEmitter{}
	clk := &clock{t: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)}
	e, err := newEngine(cfg, Settings{Emitter: em, Now: clk.Now, HashKey: testKey}, false)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(e.Close)
	return e, em, clk
}

func hmacHex(key []byte, v string, n int) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(v))
	return hex.EncodeToString(m.Sum(nil)[:n])
}

// derivedKey is HMAC-SHA256(testKey, label), as docs/records.md defines Ks, Kp and Kf.
func derivedKey(label string) []byte {
	m := hmac.New(sha256.New, testKey)
	m.Write([]byte(label))
	return m.Sum(nil)
}

// wantID is the session id of a grouping value, computed independently of the engine:
// "s_" + hex of the first 10 bytes of HMAC-SHA256(Ks, value).
func wantID(v string) string { return "s_" + hmacHex(derivedKey("apisessions/session/v1"), v, 10) }

// wantFallbackID is the session id of a fallback join, computed independently.
func wantFallbackID(join string) string {
	return "s_" + hmacHex(derivedKey("apisessions/fallback/v1"), join, 10)
}

// wantHashed is the hashed form of a parameter value, computed independently: "hmac:" + hex
// of the first 16 bytes of HMAC-SHA256(Kp, value).
func wantHashed(v string) string { return "hmac:" + hmacHex(derivedKey("apisessions/param/v1"), v, 16) }

// exchange builds a request; headers are name, value pairs.
func exchange(method, path string, headers ...string) *traffic.Exchange {
	x := &traffic.Exchange{
		RequestID:     "req-1",
		Start:         time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC),
		Method:        method,
		Scheme:        "https",
		Host:          "api.example.com",
		Path:          path,
		SourceAddress: "203.0.113.7:51234",
	}
	x.End = x.Start.Add(15 * time.Millisecond)
	for i := 0; i+1 < len(headers); i += 2 {
		x.RequestHeaders = append(x.RequestHeaders, traffic.Header{Name: headers[i], Value: headers[i+1]})
	}
	return x
}

// withJSONBody sets a JSON request body.
func withJSONBody(x *traffic.Exchange, body string) *traffic.Exchange {
	x.RequestHeaders = append(x.RequestHeaders, traffic.Header{Name: "content-type", Value: "application/json"})
	x.RequestBody = []byte(body)
	x.RequestBytes = int64(len(body))
	return x
}

// withResponse adds a response; a non-empty body is JSON. headers are name, value pairs.
func withResponse(x *traffic.Exchange, status int, body string, headers ...string) *traffic.Exchange {
	x.ResponseSeen = true
	x.Status = status
	for i := 0; i+1 < len(headers); i += 2 {
		x.ResponseHeaders = append(x.ResponseHeaders, traffic.Header{Name: headers[i], Value: headers[i+1]})
	}
	if body != "" {
		x.ResponseHeaders = append(x.ResponseHeaders, traffic.Header{Name: "content-type", Value: "application/json"})
		x.ResponseBody = []byte(body)
		x.ResponseBytes = int64(len(body))
	}
	return x
}

// at sets the request's start (and end 15ms later).
func at(x *traffic.Exchange, t time.Time) *traffic.Exchange {
	x.Start, x.End = t, t.Add(15*time.Millisecond)
	return x
}

// jwt builds a token with the given claims.
func jwt(t testing.TB, claims map[string]any) string {
	t.Helper()
	b, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	return testutil.JWT(string(b))
}

// readRepoFile reads a file of the repository, relative to its root.
func readRepoFile(t testing.TB, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", rel))
	if err != nil {
		t.Fatalf("read %s: %v", rel, err)
	}
	return string(b)
}
