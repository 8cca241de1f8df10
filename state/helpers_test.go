package state

import (
	"bytes"
	"context"
	"log/slog"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/internal/testutil"
	"github.com/apisessions/apisessions/sessions"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic"
)

var testKey = bytes.Repeat([]byte("k"), sessions.MinHashKeyBytes)

// testRedis is the configuration of a client of the test Redis under a prefix of the test's own.
func testRedis(t testing.TB) config.Redis {
	t.Helper()
	addr, prefix := testutil.RedisPrefix(t)
	r := config.Default().State.Redis
	r.Address, r.KeyPrefix = addr, prefix
	// The machine running the tests is shared and slow at times: a generous timeout keeps
	// the comparison from falling back to local decisions.
	r.Timeout = config.Duration(time.Second)
	return r
}

// newTestClient starts a client for r logging into the returned buffer.
func newTestClient(t testing.TB, r config.Redis, now func() time.Time) (*Client, *syncBuffer) {
	t.Helper()
	var logs syncBuffer
	c, err := New(r, Settings{Logger: slog.New(slog.NewJSONHandler(&logs, nil)), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, &logs
}

// cutClient is a client of the test Redis reached through a proxy that the test can cut, with
// the given timeout, started unless start is false, and its logs.
func cutClient(t testing.TB, timeout time.Duration, start bool) (*Client, *testutil.CutProxy, *syncBuffer) {
	t.Helper()
	r := testRedis(t)
	px := testutil.NewCutProxy(t, r.Address)
	r.Address = px.Addr
	r.Timeout = config.Duration(timeout)
	c, logs := newTestClient(t, r, nil)
	if start {
		if err := c.Start(context.Background()); err != nil {
			t.Fatalf("Start through the proxy: %v", err)
		}
	}
	return c, px, logs
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// recorder keeps the records an engine emits.
type recorder struct {
	mu   sync.Mutex
	recs []record.Record
}

func (r *recorder) Emit(rec record.Record) {
	r.mu.Lock()
	r.recs = append(r.recs, rec)
	r.mu.Unlock()
}

// newTestEngine starts an engine grouping by the x-user header, whose sweeper's clock stays
// before every generated request, so that parts end only by the requests' own times.
func newTestEngine(t testing.TB, idle time.Duration, shared sessions.SharedParts) (*sessions.Engine, *recorder) {
	t.Helper()
	cfg := config.Default()
	cfg.Sessions.IdleTimeout = config.Duration(idle)
	cfg.Sessions.LookupCacheMB = 1
	cfg.Parameters = []config.Parameter{{Name: "user", In: config.InRequestHeader, Key: "x-user", Group: true}}
	rec := &recorder{}
	e, err := sessions.New(cfg, sessions.Settings{
		Emitter: rec, HashKey: testKey, SharedParts: shared,
		Now: func() time.Time { return time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC) },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e, rec
}

// request is an exchange of user at t.
func request(user string, t time.Time) *traffic.Exchange {
	return &traffic.Exchange{
		RequestID: "r", Start: t, End: t.Add(time.Millisecond), Method: "GET", Scheme: "https",
		Host: "api.example.com", Path: "/orders", SourceAddress: "203.0.113.7:5000",
		RequestHeaders: []traffic.Header{{Name: "x-user", Value: user}},
	}
}

func testingProcs() int { return runtime.GOMAXPROCS(0) }
