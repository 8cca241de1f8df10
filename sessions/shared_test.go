package sessions

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions/record"
)

// fakeShared answers part numbering from a script of states; unknown makes every call
// unknown (Redis unreachable).
type fakeShared struct {
	mu      sync.Mutex
	next    PartState // what ObservePart answers
	peek    PartState // what PeekPart answers
	found   bool
	unknown bool
	calls   []PartQuery
	batches int
	largest int // the most updates one call of ObserveParts carried
	reads   int
}

func (f *fakeShared) ObserveParts(_ context.Context, us []PartUpdate) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.batches++
	f.largest = max(f.largest, len(us))
	for i := range us {
		f.calls = append(f.calls, us[i].Q)
		us[i].State, us[i].OK = f.next, !f.unknown
	}
}

func (f *fakeShared) PeekPart(context.Context, string) (PartState, bool, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	return f.peek, f.found, !f.unknown
}

// TestSharedPartsDecide: the shared state names the part; a different name ends the local
// part first; an unknown answer leaves the decision to the local rule.
func TestSharedPartsDecide(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.Sessions.IdleTimeout = config.Duration(30 * time.Minute)
	em := &fakeEmitter{}
	sh := &fakeShared{}
	e, err := newEngine(cfg, Settings{Emitter: em, HashKey: testKey, SharedParts: sh}, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	end := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC).Unix()
	req := func(d time.Duration) *record.Request {
		r := e.observe(at(exchange("GET", "/", "x-session-id", "s1"), t0.Add(d)))
		e.work.flush() // a part worker names the part
		return r
	}

	sh.next = PartState{Day: "2026-12-03", DayEnd: end, Seq: 2}
	if r := req(0); r.Part != "2026-12-03.2" {
		t.Errorf("first request: part %s; want the shared 2026-12-03.2", r.Part)
	}
	if q := sh.calls[0]; q.Day != "2026-12-03" || q.DayEnd != end || q.Idle != 30*time.Minute || !q.T.Equal(t0) {
		t.Errorf("the query sent = %+v; want t0, its day and day end, the idle timeout", q)
	}
	if r := req(time.Minute); r.Part != "2026-12-03.2" || len(em.sessions()) != 0 {
		t.Errorf("same shared part: part %s, session records %v; want 2026-12-03.2 and none", r.Part, em.sessions())
	}

	// Another replica saw an idle gap: the local part ends (idle) and one of the new name opens.
	sh.next.Seq = 3
	if r := req(2 * time.Minute); r.Part != "2026-12-03.3" {
		t.Errorf("after a split elsewhere: part %s; want 2026-12-03.3", r.Part)
	}
	ss := em.sessions()
	if len(ss) != 1 || ss[0].Part != "2026-12-03.2" || !ss[0].Final || ss[0].EndReason != record.EndIdle || ss[0].Requests != 2 {
		t.Errorf("want one final idle record of 2026-12-03.2 with 2 requests, got %+v", ss)
	}

	// Redis unreachable: the local rule decides on the local part (no gap, same part).
	sh.unknown = true
	if r := req(3 * time.Minute); r.Part != "2026-12-03.3" {
		t.Errorf("fail open within the part: part %s; want the local 2026-12-03.3", r.Part)
	}
	if r := req(2 * time.Hour); r.Part != "2026-12-03.4" {
		t.Errorf("fail open after an idle gap: part %s; want the local 2026-12-03.4", r.Part)
	}
}

// TestSharedPeek: Peek names the part from the shared state by the same rule, and from the
// local table when the state is unknown.
func TestSharedPeek(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.Sessions.IdleTimeout = config.Duration(30 * time.Minute)
	sh := &fakeShared{}
	e, err := newEngine(cfg, Settings{HashKey: testKey, SharedParts: sh}, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	end := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
	last := int64(t0.Sub(end)) // t0 as nanoseconds from the day's end
	tests := []struct {
		name    string
		st      PartState
		found   bool
		unknown bool
		at      time.Time
		want    string
	}{
		{name: "no state: part 1 of the day", at: t0, want: "2026-12-03"},
		{name: "within idle: the shared part", st: PartState{Day: "2026-12-03", DayEnd: end.Unix(), Seq: 4, LastSeen: last}, found: true, at: t0.Add(29 * time.Minute), want: "2026-12-03.4"},
		{name: "out of order: the shared part", st: PartState{Day: "2026-12-03", DayEnd: end.Unix(), Seq: 4, LastSeen: last}, found: true, at: t0.Add(-5 * time.Hour), want: "2026-12-03.4"},
		{name: "after an idle gap: the next part", st: PartState{Day: "2026-12-03", DayEnd: end.Unix(), Seq: 4, LastSeen: last}, found: true, at: t0.Add(31 * time.Minute), want: "2026-12-03.5"},
		{name: "the next day: its part 1", st: PartState{Day: "2026-12-03", DayEnd: end.Unix(), Seq: 4, LastSeen: last}, found: true, at: end, want: "2026-12-04"},
		{name: "unknown: the local table (empty)", unknown: true, at: t0.Add(time.Second), want: "2026-12-03"},
	}
	for _, tc := range tests {
		sh.mu.Lock()
		sh.peek, sh.found, sh.unknown = tc.st, tc.found, tc.unknown
		sh.mu.Unlock()
		if _, part, _ := e.Peek(at(exchange("GET", "/", "x-session-id", "s1"), tc.at)); part != tc.want {
			t.Errorf("%s: Peek names %s; want %s", tc.name, part, tc.want)
		}
	}
}

// TestSharedPeekReadsOncePerRequest: the response headers answer groups the request again;
// for the same session and request time the read of the request headers answer serves.
func TestSharedPeekReadsOncePerRequest(t *testing.T) {
	t.Parallel()
	sh := &fakeShared{}
	e, err := newEngine(testConfig(t), Settings{HashKey: testKey, SharedParts: sh}, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	x := at(exchange("POST", "/", "x-session-id", "s1"), t0)
	e.Peek(x)
	withJSONBody(x, `{"a":1}`)
	e.Peek(x)
	if sh.reads != 1 {
		t.Errorf("two peeks of one request read the shared state %d times; want 1", sh.reads)
	}
	e.Peek(at(exchange("GET", "/", "x-session-id", "s1"), t0.Add(time.Millisecond)))
	e.Peek(at(exchange("GET", "/", "x-session-id", "s2"), t0))
	if sh.reads != 3 {
		t.Errorf("peeks of another request time and another session read %d times in all; want 3", sh.reads)
	}
}

// TestSharedPeekLocalFirst: a request that joins the local live part is named by it without a
// read of the shared state; after a gap longer than the idle timeout the shared state is read.
func TestSharedPeekLocalFirst(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.Sessions.IdleTimeout = config.Duration(30 * time.Minute)
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	end := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
	sh := &fakeShared{next: PartState{Day: "2026-12-03", DayEnd: end.Unix(), Seq: 2, LastSeen: int64(t0.Sub(end))}}
	e, err := newEngine(cfg, Settings{HashKey: testKey, SharedParts: sh}, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	e.observe(at(exchange("GET", "/", "x-session-id", "s1"), t0))
	e.work.flush()
	if _, part, _ := e.Peek(at(exchange("GET", "/", "x-session-id", "s1"), t0.Add(29*time.Minute))); part != "2026-12-03.2" || sh.reads != 0 {
		t.Errorf("within the idle timeout: Peek names %s after %d shared reads; want the local 2026-12-03.2 and none", part, sh.reads)
	}
	sh.mu.Lock()
	sh.peek, sh.found = PartState{Day: "2026-12-03", DayEnd: end.Unix(), Seq: 2, LastSeen: int64(t0.Add(20 * time.Minute).Sub(end))}, true
	sh.mu.Unlock()
	// Another replica saw a request at t0+20m: the shared state says the part goes on.
	if _, part, _ := e.Peek(at(exchange("GET", "/", "x-session-id", "s1"), t0.Add(45*time.Minute))); part != "2026-12-03.2" || sh.reads != 1 {
		t.Errorf("after a local gap: Peek names %s after %d shared reads; want the shared 2026-12-03.2 after 1", part, sh.reads)
	}
}

// blockingShared answers like fakeShared once release is closed.
type blockingShared struct {
	fakeShared
	release chan struct{}
}

func (b *blockingShared) ObserveParts(ctx context.Context, us []PartUpdate) {
	<-b.release
	b.fakeShared.ObserveParts(ctx, us)
}

// TestPartWorkers: requests queued while a round trip is out go together in the next one, in
// the order their streams ended; a full queue decides locally and counts it; Close lets the
// queued requests finish; no request record is lost on the way.
func TestPartWorkers(t *testing.T) {
	t.Parallel()
	em := &fakeEmitter{}
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	end := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
	sh := &blockingShared{release: make(chan struct{})}
	sh.next = PartState{Day: "2026-12-03", DayEnd: end.Unix(), Seq: 1}
	e, err := newEngine(testConfig(t), Settings{Emitter: em, HashKey: testKey, SharedParts: sh}, false)
	if err != nil {
		t.Fatal(err)
	}
	// One session: one worker. The first request holds the worker in ObserveParts; the rest
	// queue behind it until the queue is full.
	// The worker holds between 1 and partBatch requests in the batch that waits.
	n := partQueue + partBatch + 50
	for i := range n {
		e.observe(at(exchange("GET", "/", "x-session-id", "s1"), t0.Add(time.Duration(i)*time.Millisecond)))
	}
	full := e.Stats().SharedQueueFull
	if lo, hi := int64(n-partQueue-partBatch), int64(n-partQueue); full < lo || full > hi {
		t.Errorf("SharedQueueFull = %d with %d requests, a queue of %d and a batch of up to %d waiting; want %d to %d", full, n, partQueue, partBatch, lo, hi)
	}
	close(sh.release)
	e.Close()
	var reqs []*record.Request
	for _, r := range em.take() {
		if q, ok := r.(*record.Request); ok {
			reqs = append(reqs, q)
		}
	}
	if len(reqs) != n {
		t.Fatalf("%d request records emitted; want all %d", len(reqs), n)
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if int64(len(sh.calls)) != int64(n)-full {
		t.Errorf("%d requests sent to the shared state; want %d (all but the %d decided locally)", len(sh.calls), int64(n)-full, full)
	}
	// A batch is cut at partBatch requests, or earlier when its linger ends while it fills (a
	// worker descheduled for 2 ms on a loaded machine): so the test bounds the size of every
	// call and asks that most of the queue went in large batches, not an exact count.
	if sh.largest > partBatch {
		t.Errorf("one call of ObserveParts carried %d requests; want at most %d", sh.largest, partBatch)
	}
	if sh.batches > len(sh.calls)/32 {
		t.Errorf("%d calls of ObserveParts for %d queued requests; want them batched (up to %d in one)", sh.batches, len(sh.calls), partBatch)
	}
	for i := 1; i < len(sh.calls); i++ {
		if sh.calls[i].T.Before(sh.calls[i-1].T) {
			t.Fatalf("request %d sent before request %d: a session's requests must keep their order", i, i-1)
		}
	}
	for _, q := range reqs {
		if q.Part != "2026-12-03" {
			t.Fatalf("request record of %v in part %q; want 2026-12-03", q.Time, q.Part)
		}
	}
}
