package sinks_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sinks"
)

// plainReq is a request record of session s that is not evidence.
func plainReq(s string, id int) record.Record {
	return &record.Request{Kind: record.KindRequest, Session: s, RequestID: strconv.Itoa(id)}
}

// attackReq is the record of a malicious request: evidence.
func attackReq(s string, id int) record.Record {
	return &record.Request{Kind: record.KindRequest, Session: s, RequestID: strconv.Itoa(id), Malicious: true,
		Attack: &record.Attack{Source: "header:x-waf", Types: []string{"sqli"}}}
}

// finalSession is the final record of session s's part: evidence.
func finalSession(s string) record.Record {
	return &record.Session{Kind: record.KindSession, Session: s, Part: "2026-11-22", Requests: 1, Final: true, EndReason: record.EndEvicted}
}

// label names a record in the order checks: its request id, or "end:" and its session.
func label(r record.Record) string {
	if s, ok := r.(*record.Session); ok {
		return "end:" + s.Session
	}
	return r.(*record.Request).RequestID
}

func labels(f *fakeSink) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, b := range f.batches {
		for _, r := range b {
			out = append(out, label(r))
		}
	}
	return out
}

// checkAccounts asserts the two balances of an output that was offered offered records (and
// replayed none from an earlier run): every record offered was accepted or dropped at the
// offer, and every record accepted was delivered, failed, dropped later or still waits.
func checkAccounts(t *testing.T, st sinks.OutputStats, offered uint64) {
	t.Helper()
	d := st.Drops
	if got := st.Accepted + d[sinks.DropQueueFull] + d[sinks.DropFloodKey] + d[sinks.DropShutdown]; got != offered {
		t.Errorf("accepted %d + dropped at the offer %d = %d, want the %d offered (%+v)", st.Accepted, got-st.Accepted, got, offered, st)
	}
	later := d[sinks.DropEvictedForEvidence] + st.SpoolDropped
	if got := st.Delivered + st.Failed + later + uint64(st.SpoolRecords) + uint64(st.Queued); got != st.Accepted {
		t.Errorf("delivered, failed, dropped later and waiting add up to %d, want the %d accepted (%+v)", got, st.Accepted, st)
	}
	if st.Dropped != d.Total() {
		t.Errorf("Dropped %d is not the sum %d of Drops %v", st.Dropped, d.Total(), d)
	}
}

// TestFullQueueKeepsEvidence fills the queue of a stuck sink: plain records are refused once it
// is full, evidence takes the place of the oldest plain records, a final session record gives
// way to a record of an attack once no plain record is left, and a queue holding only attack
// records refuses even those. What is delivered keeps the order of the offers.
func TestFullQueueKeepsEvidence(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		stuck := &fakeSink{gate: make(chan struct{}), started: make(chan int, 10)}
		p := sinks.NewPipeline(nil, []sinks.Output{{Name: "s", Sink: stuck, QueueSize: 8, BatchSize: 1, FlushInterval: time.Hour}})
		var offered uint64
		emit := func(r record.Record) { p.Emit(r); offered++ }
		emit(plainReq("s_a", 0))
		<-stuck.started // record 0 is in the stuck Write
		for i := 1; i <= 8; i++ {
			emit(plainReq("s_a", i)) // fills the queue: 1 … 8
		}
		emit(plainReq("s_a", 9)) // refused: full of plain records
		emit(attackReq("s_b", 10))
		emit(finalSession("s_c"))
		emit(attackReq("s_b", 11)) // take the places of 1, 2, 3
		st := p.Stats()[0]
		if st.Queued != 8 || st.Drops[sinks.DropQueueFull] != 1 || st.Drops[sinks.DropEvictedForEvidence] != 3 || st.EvidenceDropped != 0 {
			t.Errorf("after evidence reached the full queue stats = %+v, want 8 queued, 1 refused, 3 evicted", st)
		}
		for i := range 5 {
			emit(attackReq("s_d", 20+i)) // 4 … 8 make room for 20 … 24
		}
		emit(finalSession("s_e"))  // refused: nothing below a final record is left
		emit(attackReq("s_d", 25)) // takes the place of the final record of s_c
		emit(attackReq("s_d", 26)) // refused: the queue holds only attack records
		emit(plainReq("s_a", 27))  // refused
		st = p.Stats()[0]
		if st.Drops[sinks.DropEvictedForEvidence] != 9 || st.Drops[sinks.DropQueueFull] != 4 || st.EvidenceDropped != 3 {
			t.Errorf("with the queue full of attack records stats = %+v, want 9 evicted, 4 refused, 3 of the drops evidence", st)
		}
		close(stuck.gate)
		go func() {
			for range stuck.started {
			}
		}()
		if err := p.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		close(stuck.started)
		want := []string{"0", "10", "11", "20", "21", "22", "23", "24", "25"}
		if got := labels(stuck); !slices.Equal(got, want) {
			t.Errorf("delivered %v, want %v", got, want)
		}
		checkAccounts(t, p.Stats()[0], offered)
	})
}

// TestFloodKeyLosesItsOwnRecords has one session key flood a sink that is behind (its write
// stuck, or the sink down and the queue spilling to a spool) while twenty others send a few
// records each: the flood's plain records are refused, counted as flood_key, and the others'
// records all get through.
func TestFloodKeyLosesItsOwnRecords(t *testing.T) {
	t.Parallel()
	for _, withSpool := range []bool{false, true} {
		t.Run("spool="+strconv.FormatBool(withSpool), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			synctest.Test(t, func(t *testing.T) {
				sk := &switchSink{err: errors.New("down")}
				sk.down.Store(true)
				out := sinks.Output{Name: "s", Sink: sk, QueueSize: 2000, BatchSize: 100, FlushInterval: time.Second,
					Retry: sinks.RetryPolicy{InitialInterval: time.Minute, MaxInterval: time.Minute}}
				if withSpool {
					out.Spool = openSpool(t, dir, 64<<20)
				}
				p := sinks.NewPipeline(nil, []sinks.Output{out})
				// The first batch fails; the sink is behind from then on.
				for i := range 100 {
					p.Emit(plainReq("s_first", i))
				}
				synctest.Wait()
				id, others := 1000, 0
				var offered uint64 = 100
				for i := range 3000 {
					p.Emit(plainReq("s_flood", id))
					id++
					offered++
					if i%15 == 0 {
						p.Emit(plainReq("s_"+strconv.Itoa(i%20), id))
						id++
						others++
						offered++
					}
				}
				synctest.Wait()
				st := p.Stats()[0]
				// The sink counts as behind once its queue is half full (without a spool) or
				// spilling: from then on the flood loses its records.
				flood := st.Drops[sinks.DropFloodKey]
				if flood < 1000 || st.Dropped != flood {
					t.Errorf("stats = %+v, want over 1000 of the 3000 flood records dropped as flood_key and nothing else", st)
				}
				sk.down.Store(false)
				time.Sleep(2 * time.Minute)
				synctest.Wait()
				delivered := map[string]int{}
				sk.mu.Lock()
				for _, b := range sk.batches {
					for _, r := range b {
						delivered[r.SessionID()]++
					}
				}
				sk.mu.Unlock()
				got := 0
				for s, n := range delivered {
					if s != "s_flood" && s != "s_first" {
						got += n
					}
				}
				if got != others {
					t.Errorf("%d records of the other keys delivered, want all %d", got, others)
				}
				if err := p.Shutdown(context.Background()); err != nil {
					t.Fatal(err)
				}
				checkAccounts(t, p.Stats()[0], offered)
			})
		})
	}
}

// TestSpoolKeepsEvidence: an attack, then a flood of plain records and session ends that fills
// a small spool many times over while the sink is down. The spool deletes plain records only,
// so the attack and every final session record reach the sink once it is back, in order;
// every drop is counted.
func TestSpoolKeepsEvidence(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		sk := &switchSink{err: errors.New("down")}
		sk.down.Store(true)
		p := sinks.NewPipeline(nil, []sinks.Output{{
			Name: "s", Sink: sk, QueueSize: 1000, BatchSize: 100, Retry: sinks.DefaultRetryPolicy(),
			Spool: openSpool(t, dir, 1<<20),
		}})
		var offered uint64
		var want []string
		p.Emit(attackReq("s_attacker", 0))
		offered++
		want = append(want, "0")
		for i := 1; i <= 50_000; i++ {
			p.Emit(plainReq("s_"+strconv.Itoa(i), i))
			offered++
			if i%20 == 0 {
				p.Emit(finalSession("s_" + strconv.Itoa(i-10)))
				offered++
				want = append(want, "end:s_"+strconv.Itoa(i-10))
			}
			if i%100 == 0 {
				time.Sleep(10 * time.Millisecond) // the queue's helper moves the records to the spool
			}
		}
		synctest.Wait()
		st := p.Stats()[0]
		if st.Drops[sinks.DropSpoolFull] == 0 || st.Dropped != st.Drops[sinks.DropSpoolFull] || st.EvidenceDropped != 0 || st.SpoolBytes > 1<<20 {
			t.Errorf("during the outage stats = %+v, want plain records deleted from a spool within 1 MiB, nothing else dropped", st)
		}
		sk.down.Store(false)
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		var evidence []string
		got := labels(&sk.fakeSink)
		for _, l := range got {
			if l == "0" || l[0] == 'e' {
				evidence = append(evidence, l)
			}
		}
		if !slices.Equal(evidence, want) {
			t.Errorf("the sink received %d evidence records, want the attack and the %d session ends in order", len(evidence), len(want)-1)
		}
		if !slices.IsSortedFunc(got, byOffer) {
			t.Errorf("records reached the sink out of order")
		}
		if err := p.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		checkAccounts(t, p.Stats()[0], offered)
	})
}

// byOffer orders labels as the evidence test offers them: a session end "end:s_N" comes after
// request N+10.
func byOffer(a, b string) int {
	pos := func(l string) int {
		if n, ok := cutPrefix(l, "end:s_"); ok {
			v, _ := strconv.Atoi(n)
			return 2*(v+10) + 1
		}
		v, _ := strconv.Atoi(l)
		return 2 * v
	}
	return pos(a) - pos(b)
}

func cutPrefix(s, p string) (string, bool) {
	if len(s) >= len(p) && s[:len(p)] == p {
		return s[len(p):], true
	}
	return s, false
}

// TestSpoolFullOfEvidenceRefusesTheNewest: when evidence alone fills the spool, the newest is
// refused and counted; the oldest, the first trace of an attack, stays.
func TestSpoolFullOfEvidenceRefusesTheNewest(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		sk := &switchSink{err: errors.New("down")}
		sk.down.Store(true)
		p := sinks.NewPipeline(nil, []sinks.Output{{
			Name: "s", Sink: sk, QueueSize: 1000, BatchSize: 100, Retry: sinks.DefaultRetryPolicy(),
			Spool: openSpool(t, dir, 64<<10),
		}})
		const n = 5000
		for i := range n {
			p.Emit(attackReq("s_scanner", i))
			if i%500 == 499 {
				time.Sleep(time.Second)
			}
		}
		synctest.Wait()
		st := p.Stats()[0]
		if st.Drops[sinks.DropSpoolFull] == 0 || st.EvidenceDropped != st.Dropped || st.SpoolBytes > 64<<10 {
			t.Errorf("stats = %+v, want evidence refused by a spool within 64 KiB", st)
		}
		sk.down.Store(false)
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		got := labels(&sk.fakeSink)
		if len(got) == 0 || got[0] != "0" || uint64(len(got))+st.Dropped != n {
			t.Errorf("the sink received %d records starting %v, want the oldest ones, the others counted as dropped", len(got), got[:min(len(got), 1)])
		}
		if err := p.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		checkAccounts(t, p.Stats()[0], n)
	})
}
