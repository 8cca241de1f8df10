package state

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions"
)

// TestCoalescedAnswersReachTheirCallers runs observes and peeks of distinct sessions from
// many goroutines at once, so that they share pipelines, and checks that each caller gets
// the state of its own session and that the rounds were coalesced.
func TestCoalescedAnswersReachTheirCallers(t *testing.T) {
	t.Parallel()
	c, _ := newTestClient(t, testRedis(t), nil)
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	p := c.Parts()
	at := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	dayEnd := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC).Unix()
	const callers, each = 64, 20
	var wg sync.WaitGroup
	for g := range callers {
		wg.Go(func() {
			for i := range each {
				id := fmt.Sprintf("s_%d_%d", g, i)
				// Each session's seq is its own i+1, so a swapped answer shows.
				var st sessions.PartState
				for n := range i + 1 {
					q := sessions.PartQuery{T: at.Add(time.Duration(n) * time.Hour), Day: "2026-12-03", DayEnd: dayEnd, Idle: time.Minute}
					var ok bool
					if st, ok = p.ObservePart(context.Background(), id, q); !ok {
						t.Errorf("ObservePart(%s) is unknown; want the shared answer", id)
						return
					}
				}
				got, found, ok := p.PeekPart(context.Background(), id)
				if !ok || !found || got != st || got.Seq != i+1 {
					t.Errorf("PeekPart(%s) = %+v found=%v ok=%v; want seq %d, the state %+v its last observe returned", id, got, found, ok, i+1, st)
				}
			}
		})
	}
	wg.Wait()
	if st := c.Stats(); st.Errors != [NumOps]uint64{} || st.Late != [NumOps]uint64{} {
		t.Errorf("stats %+v; want no errors and nothing late", st)
	}
}

// TestCoalescedTimeout points the client at a server that accepts and never answers: every
// caller, leader or queued, returns unknown within its timeout, each is counted once, and
// the breaker opens after tripAfter rounds, not after tripAfter callers of one round.
func TestCoalescedTimeout(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { conn.Close() })
		}
	}()
	r := config.Default().State.Redis
	r.Address = ln.Addr().String()
	r.Timeout = config.Duration(100 * time.Millisecond)
	c, _ := newTestClient(t, r, nil)
	const callers = 16
	var wg sync.WaitGroup
	start := time.Now()
	for g := range callers {
		wg.Go(func() {
			if _, _, ok := c.Parts().PeekPart(context.Background(), fmt.Sprint("s_", g)); ok {
				t.Error("PeekPart from a server that never answers is known; want unknown")
			}
		})
	}
	wg.Wait()
	// Each caller waits at most its timeout; the queued ones start theirs while the first
	// round is in flight, so the whole lasts under two timeouts (plus the machine's noise).
	if d := time.Since(start); d > 2*r.Timeout.Std()+500*time.Millisecond {
		t.Errorf("the callers took %v; want each bounded by its timeout of %v", d, r.Timeout.Std())
	}
	st := c.Stats()
	if st.Errors[OpPeek] != callers {
		t.Errorf("%d peek errors counted; want one per caller, %d", st.Errors[OpPeek], callers)
	}
	// The 16 callers went out in two rounds (the first alone, the rest queued behind it).
	if !st.Up {
		t.Errorf("breaker open after %d failed rounds; want it open only after %d rounds, whatever they carried", c.streak.Load(), tripAfter)
	}
}

// TestCoalescedRedisCut cuts the connection to Redis while rounds are in flight: every
// caller returns (known or unknown, never hung, never another's answer) and Redis is used
// again once it is back.
func TestCoalescedRedisCut(t *testing.T) {
	t.Parallel()
	c, px, _ := cutClient(t, 500*time.Millisecond, true)
	at := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	q := sessions.PartQuery{T: at, Day: "2026-12-03", DayEnd: at.Add(14 * time.Hour).Unix()}
	var wg sync.WaitGroup
	cut := make(chan struct{})
	for g := range 32 {
		wg.Go(func() {
			for i := range 200 {
				if g == 0 && i == 20 {
					close(cut)
				}
				id := fmt.Sprintf("s_%d_%d", g, i)
				if st, ok := c.Parts().ObservePart(context.Background(), id, q); ok && st.Seq != 1 {
					t.Errorf("ObservePart(%s) answered seq %d for a new session; want 1", id, st.Seq)
				}
			}
		})
	}
	<-cut
	px.Cut()
	wg.Wait()
	if c.Stats().Errors[OpObserve] == 0 {
		t.Error("no observe failed with Redis cut mid-run; want the cut rounds counted")
	}
	px.Restore()
	if !c.probe() {
		t.Fatal("the probe did not bring Redis back")
	}
	if _, ok := c.Parts().ObservePart(context.Background(), "s_after", q); !ok {
		t.Error("ObservePart after Redis came back is unknown; want the shared answer")
	}
}

// TestLateAnswerDropped: an answer whose caller stopped waiting is dropped and counted.
func TestLateAnswerDropped(t *testing.T) {
	t.Parallel()
	c, _ := newTestClient(t, testRedis(t), nil)
	b := c.NewBatch(OpPeek)
	b.ReadPart("s_late")
	cl := &call{b: b, done: make(chan error, 1)}
	cl.state.Store(abandoned)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c.round(ctx, []*call{cl})
	if got := c.Stats().Late[OpPeek]; got != 1 {
		t.Errorf("%d late peeks counted; want 1", got)
	}
	if len(cl.done) != 0 {
		t.Error("the late answer was handed to a caller that left; want it dropped")
	}
	if err := b.err(); err != nil && !errors.Is(err, redis.Nil) {
		t.Errorf("the round failed: %v", err)
	}
}
