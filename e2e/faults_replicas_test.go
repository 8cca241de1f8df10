package e2e

import (
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apisessions/apisessions/internal/testutil"
)

// The faults of several replicas (docs/scale-out.md, "Faults"): a replica killed, PostgreSQL
// and Redis cut off mid-run. They share oracleTraffic, oracleSend and oracleStore with the
// oracle, and cut servers through a testutil.CutProxy so that the real ones stay up for other tests.

// storeSeries is the series of the store sink's apisessions_sink_records_total by outcome.
func storeSeries(outcome string) string {
	return `apisessions_sink_records_total{outcome="` + outcome + `",sink="store"}`
}

const storeSpoolRecords = `apisessions_sink_spool_records{sink="store"}`

// rr sends the requests round-robin.
func rr(i int) int { return i }

// tookRoundRobin lists the request ids each of n replicas takes when oracleSend sends waves
// round-robin (rr): the i-th request of the call goes to replica i mod n.
func tookRoundRobin(waves [][]oracleExchange, n int) [][]string {
	took := make([][]string, n)
	i := 0
	for _, w := range waves {
		for _, e := range w {
			took[i%n] = append(took[i%n], e.x.RequestID)
			i++
		}
	}
	return took
}

// faultsDrained waits until each process's store sink has delivered every record it accepted
// (a restarted one delivers its earlier run's spool too, which it never accepted) and holds
// none in its queue or spool, and has lost none.
func faultsDrained(t *testing.T, procs ...*faultsProc) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for _, p := range procs {
		for {
			for _, o := range []string{"dropped", "failed"} {
				if n := p.metric(t, storeSeries(o)); n != 0 {
					t.Fatalf("the store sink of %s has %v records %s", p.httpAddr, n, o)
				}
			}
			accepted, delivered := p.metric(t, storeSeries("accepted")), p.metric(t, storeSeries("delivered"))
			if delivered >= accepted && p.metric(t, storeSpoolRecords) == 0 &&
				p.metric(t, `apisessions_sink_records_queued{sink="store"}`) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the store sink of %s delivered %v of %v records; %v in its spool",
					p.httpAddr, delivered, accepted, p.metric(t, storeSpoolRecords))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// faultsPoll waits until cond holds, failing with what after within.
func faultsPoll(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// faultsAcknowledged is how many request records the process's store sink has acknowledged at
// least: records it delivered (committed in the store) or that its spool holds (written and
// fsynced), less every session record it accepted, which the store sink counts as delivered
// but does not keep. A record only in the in-memory queue is not acknowledged. The figures come
// from one scrape once the process is quiet (two scrapes alike, nothing queued): read apart
// while records still moved, a request counted between the reads of accepted and
// apisessions_sessions_requests_total would count as acknowledged before it was.
func faultsAcknowledged(t *testing.T, p *faultsProc) int {
	t.Helper()
	series := []string{storeSeries("accepted"), "apisessions_sessions_requests_total", storeSeries("delivered"),
		storeSpoolRecords, `apisessions_sink_records_queued{sink="store"}`, storeSeries("dropped")}
	var v, prev []float64
	faultsPoll(t, 30*time.Second, "the killed replica's sink is quiet", func() bool {
		prev, v = v, p.metrics(t, series...)
		return prev != nil && slices.Equal(v, prev) && v[4] == 0
	})
	if v[5] != 0 {
		t.Fatalf("the store sink dropped %v records", v[5])
	}
	sessionRecords := v[0] - v[1]
	return int(v[2] + v[3] - sessionRecords)
}

// storedIDs counts each request id the store behind httpAddr holds.
func storedIDs(t *testing.T, httpAddr string) map[string]int {
	t.Helper()
	ids := map[string]int{}
	for _, p := range oracleStore(t, httpAddr) {
		for _, id := range p.Requests {
			ids[id]++
		}
	}
	return ids
}

// postgresProxy cuts the PostgreSQL server of s's database.
func postgresProxy(t *testing.T, s shared) *testutil.CutProxy {
	t.Helper()
	u, err := url.Parse(s.dsn)
	if err != nil {
		t.Fatal(err)
	}
	return testutil.NewCutProxy(t, u.Host)
}

// TestFaultReplicaKilled: of three replicas sharing PostgreSQL and Redis, one is killed with
// SIGKILL mid-run while its own connection to PostgreSQL is cut, so that it acknowledged records
// both ways (delivered, and spooled). The two others take the rest of the traffic without a
// failed stream; the killed one, started again on its data directory, replays its spool. The
// store then holds every request the two took exactly once, and at least every request the
// killed one acknowledged, none twice.
func TestFaultReplicaKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("drives three servers with 2,400 requests; make test-slow runs it")
	}
	waves := oracleTraffic(17, 120, 2400)
	key := oracleKey(t)
	sh := newShared(t)
	pg := postgresProxy(t, sh)
	sink, state := sh.sides(t, nil, nil)
	victimSink, _ := sh.sides(t, pg, nil)
	all := append(oracleStart(t, 2, key, sink, state), oracleStart(t, 1, key, victimSink, state)...)
	survivors, victim := all[:2], all[2]
	third, half := len(waves)/3, len(waves)/2

	var took [2][]string // by the survivors, by the victim (all[2])
	note := func(ids [][]string) {
		for i, l := range ids {
			by := 0
			if i == 2 {
				by = 1
			}
			took[by] = append(took[by], l...)
		}
	}
	oracleSend(t, waves[:third], all, rr)
	note(tookRoundRobin(waves[:third], 3))
	faultsDrained(t, victim.proc)
	pg.Cut()
	oracleSend(t, waves[third:half], all, rr)
	note(tookRoundRobin(waves[third:half], 3))
	faultsPoll(t, 30*time.Second, "the victim spools", func() bool { return victim.proc.metric(t, storeSpoolRecords) > 0 })
	acked := faultsAcknowledged(t, victim.proc)
	victim.proc.kill(t)
	pg.Restore()

	oracleSend(t, waves[half:], survivors, rr)
	note(tookRoundRobin(waves[half:], 2))
	back := victim.proc.restart(t)
	faultsDrained(t, survivors[0].proc, survivors[1].proc, back)

	ids := storedIDs(t, survivors[0].proc.httpAddr)
	for id, n := range ids {
		if n != 1 {
			t.Errorf("request %s is stored %d times", id, n)
		}
	}
	for _, id := range took[0] {
		if ids[id] == 0 {
			t.Errorf("request %s, taken by a replica that kept running, is not stored", id)
		}
	}
	kept := 0
	for _, id := range took[1] {
		if ids[id] > 0 {
			kept++
		}
	}
	if kept < acked {
		t.Errorf("the killed replica acknowledged at least %d requests; %d of them are stored", acked, kept)
	}
	replayed := back.metric(t, storeSeries("replayed"))
	if replayed == 0 {
		t.Error("the killed replica, started again, replayed nothing from its spool")
	}
	t.Logf("survivors took %d requests; the killed replica took %d, acknowledged at least %d, "+
		"replayed %v records from its spool once started again; %d of its requests are stored",
		len(took[0]), len(took[1]), acked, replayed, kept)
}

// TestFaultPostgresOutage: PostgreSQL cut off from three replicas mid-run (open connections die,
// new ones are refused) while traffic goes on. The replicas spool what they cannot write and,
// once PostgreSQL is back, replay it: the store ends with every request once and every part
// as one replica with SQLite stores the same traffic.
func TestFaultPostgresOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("drives four servers with 2,400 requests each way; make test-slow runs it")
	}
	waves := oracleTraffic(19, 120, 2400)
	total := len(tookRoundRobin(waves, 1)[0])
	key := oracleKey(t)
	want := oracleOneReplica(t, waves, key, total)

	sh := newShared(t)
	pg := postgresProxy(t, sh)
	sink, state := sh.sides(t, pg, nil)
	three := oracleStart(t, 3, key, sink, state)
	third := len(waves) / 3
	oracleSend(t, waves[:third], three, rr)
	// Mid-run: each replica has written to the store (and may be writing) when it is cut off.
	for _, r := range three {
		faultsPoll(t, 30*time.Second, "a replica writes", func() bool { return r.proc.metric(t, storeSeries("delivered")) > 0 })
	}
	pg.Cut()
	oracleSend(t, waves[third:2*third], three, rr)
	for _, r := range three {
		faultsPoll(t, 30*time.Second, "a replica spools", func() bool { return r.proc.metric(t, storeSpoolRecords) > 0 })
	}
	pg.Restore()
	oracleSend(t, waves[2*third:], three, rr)
	procs := make([]*faultsProc, len(three))
	for i, r := range three {
		procs[i] = r.proc
	}
	faultsDrained(t, procs...)
	for _, p := range procs {
		if p.metric(t, storeSeries("replayed")) == 0 {
			t.Errorf("replica %s replayed nothing from its spool", p.httpAddr)
		}
		t.Logf("replica %s: of %v records accepted, %v spooled, %v replayed; %v write retries", p.httpAddr,
			p.metric(t, storeSeries("accepted")), p.metric(t, storeSeries("spooled")), p.metric(t, storeSeries("replayed")),
			p.metric(t, `apisessions_sink_write_retries_total{sink="store"}`))
	}
	oracleStored(t, three[0].proc.httpAddr, total)
	oracleCompare(t, want, oracleStore(t, three[0].proc.httpAddr))
}

// oracleOneReplica is what one replica with SQLite stores of the waves.
func oracleOneReplica(t *testing.T, waves [][]oracleExchange, key string, total int) map[string]oraclePart {
	t.Helper()
	one := oracleStart(t, 1, key, "  - type: store\n", "")
	oracleSend(t, waves, one, rr)
	oracleStored(t, one[0].proc.httpAddr, total)
	return oracleStore(t, one[0].proc.httpAddr)
}

// newSessions is traffic of sessions other than oracleTraffic's of any seed: other tokens (by
// the seed) and other client addresses, for sessions grouped by address and user agent.
func newSessions(seed uint64, sessions, requests int) [][]oracleExchange {
	waves := oracleTraffic(seed, sessions, requests)
	for _, w := range waves {
		for _, e := range w {
			e.x.SourceAddress = strings.Replace(e.x.SourceAddress, "198.51.", "203.0.", 1)
		}
	}
	return waves
}

// TestFaultRedisOutage: Redis cut off from three replicas mid-run. They fail open: every
// request is decided locally, counted, logged at most once a minute, and stored once. Once
// Redis is back they take it into the path again by themselves within seconds, and the parts
// of sessions that begin then are numbered in Redis again: stored as one replica stores them.
// (Parts of sessions that spanned the outage may differ: docs/configuration.md, Shared state.)
func TestFaultRedisOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("drives four servers with 3,000 requests each way; make test-slow runs it")
	}
	before := oracleTraffic(23, 100, 2000)
	after := newSessions(29, 50, 1000)
	all := append(append([][]oracleExchange{}, before...), after...)
	total := len(tookRoundRobin(all, 1)[0])
	key := oracleKey(t)
	want := oracleOneReplica(t, all, key, total)

	sh := newShared(t)
	rd := testutil.NewCutProxy(t, sh.redisAddr)
	sink, state := sh.sides(t, nil, rd)
	three := oracleStart(t, 3, key, sink, state)
	half := len(before) / 2
	oracleSend(t, before[:half], three, rr)
	rd.Cut()
	oracleSend(t, before[half:], three, rr)
	for _, r := range three {
		p := r.proc
		if up := p.metric(t, "apisessions_state_up"); up != 0 {
			t.Errorf("replica %s: apisessions_state_up is %v with Redis cut off", p.httpAddr, up)
		}
		if stateFailures(t, p) == 0 {
			t.Errorf("replica %s counted no failed round trip", p.httpAddr)
		}
	}
	rd.Restore()
	for _, r := range three {
		p := r.proc
		took := faultsPoll(t, 10*time.Second, "apisessions_state_up back to 1", func() bool {
			return p.metric(t, "apisessions_state_up") == 1
		})
		t.Logf("replica %s: Redis in the path again %s after it answered (up to then: %v failed, %v skipped)",
			p.httpAddr, took.Round(time.Millisecond), stateFailures(t, p),
			p.metric(t, `apisessions_state_skipped_total{op="observe"}`))
	}
	oracleSend(t, after, three, rr)
	for _, r := range three {
		faultsDrained(t, r.proc)
		if n := strings.Count(r.proc.stderr.String(), `"msg":"Redis round trip failed; deciding locally"`); n != 1 {
			t.Errorf("replica %s logged %d failure lines in an outage shorter than a minute, want 1", r.proc.httpAddr, n)
		}
	}
	oracleStored(t, three[0].proc.httpAddr, total)
	got := oracleStore(t, three[0].proc.httpAddr)
	faultsOnce(t, got, total)
	oracleCompare(t, partsOf(want, "req-29-"), partsOf(got, "req-29-"))
}

// stateFailures is the number of round trips to Redis that failed, of either op.
func stateFailures(t *testing.T, p *faultsProc) float64 {
	t.Helper()
	return p.metric(t, `apisessions_state_errors_total{op="peek"}`) + p.metric(t, `apisessions_state_errors_total{op="observe"}`)
}

// faultsOnce checks that the parts hold total requests, each request id once.
func faultsOnce(t *testing.T, parts map[string]oraclePart, total int) {
	t.Helper()
	ids := map[string]int{}
	for _, p := range parts {
		for _, id := range p.Requests {
			if ids[id]++; ids[id] == 2 {
				t.Errorf("request %s is stored more than once", id)
			}
		}
	}
	if len(ids) != total {
		t.Errorf("the store holds %d distinct requests, want %d", len(ids), total)
	}
}

// partsOf keeps the parts whose requests' ids begin with prefix (the traffic of one seed).
func partsOf(parts map[string]oraclePart, prefix string) map[string]oraclePart {
	out := map[string]oraclePart{}
	for id, p := range parts {
		if len(p.Requests) > 0 && strings.HasPrefix(p.Requests[0], prefix) {
			out[id] = p
		}
	}
	return out
}
