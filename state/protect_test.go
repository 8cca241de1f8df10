package state

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/apisessions/apisessions/protect"
	"github.com/apisessions/apisessions/protect/manual"
)

func TestSharedBuckets(t *testing.T) {
	t.Parallel()
	r := testRedis(t)
	c1, _ := newTestClient(t, r, nil)
	c2, _ := newTestClient(t, r, nil)
	p1, p2 := c1.Protection(), c2.Protection()
	ctx := context.Background()
	take := func(p *Protection, route string) protect.Take {
		t.Helper()
		takes := []protect.Take{{Rule: "r", Route: route, PerSecond: 1.0 / 60, Burst: 2}}
		if _, _, ok := p.Decide(ctx, "s_00000000000000000001", false, takes); !ok {
			t.Fatal("Redis did not answer")
		}
		return takes[0]
	}
	// Two clients (two replicas) share one bucket of 2.
	if a, b := take(p1, ""), take(p2, ""); !a.OK || !b.OK {
		t.Fatalf("first two takes: %+v %+v", a, b)
	}
	if x := take(p1, ""); x.OK || x.Left >= 1 {
		t.Errorf("third take: %+v", x)
	}
	// Per route, another bucket.
	if x := take(p2, "/api/items/{id}"); !x.OK {
		t.Errorf("route bucket: %+v", x)
	}
	// The part read goes in the same round trip.
	takes := []protect.Take{{Rule: "other", PerSecond: 1, Burst: 1}}
	if _, found, ok := p1.Decide(ctx, "s_00000000000000000002", true, takes); !ok || found || !takes[0].OK {
		t.Errorf("part read with a take: found %v ok %v take %+v", found, ok, takes[0])
	}
}

func TestSharedBucketsRedisDown(t *testing.T) {
	t.Parallel()
	c, proxy, _ := cutClient(t, 200*time.Millisecond, false)
	proxy.Cut()
	takes := []protect.Take{{Rule: "r", PerSecond: 1, Burst: 1}}
	if _, _, ok := c.Protection().Decide(context.Background(), "s_00000000000000000003", true, takes); ok {
		t.Fatal("a cut Redis answered")
	}
	if c.Stats().Errors[OpPeek] == 0 {
		t.Error("the failed round trip is not counted")
	}
}

func TestSharedBlocks(t *testing.T) {
	t.Parallel()
	r := testRedis(t)
	c1, _ := newTestClient(t, r, nil)
	c2, _ := newTestClient(t, r, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changed := make(chan string, 4)
	go c2.Protection().WatchBlocks(ctx, func(kind, id string) { changed <- kind + ":" + id })
	time.Sleep(100 * time.Millisecond) // the subscription is made

	now := time.Now().UTC()
	b := manual.Block{Kind: manual.KindUser, ID: "mallory", Until: now.Add(time.Hour), Reason: "r", By: "ops", At: now}
	if err := c1.Protection().PutBlock(ctx, b, manual.AuditEntry{At: now, By: "ops", Action: "block", Kind: b.Kind, ID: b.ID}); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-changed:
		if got != "user:mallory" {
			t.Errorf("message %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no message for the block")
	}
	got, found, err := c2.Protection().Block(ctx, manual.KindUser, "mallory")
	if err != nil || !found || got.By != "ops" || !got.Until.Equal(b.Until) {
		t.Errorf("block read by the other client: %+v %v %v", got, found, err)
	}
	all, err := c2.Protection().Blocks(ctx)
	if err != nil || len(all) != 1 {
		t.Errorf("blocks: %+v %v", all, err)
	}
	if err := c2.Protection().DeleteBlock(ctx, manual.KindUser, "mallory", manual.AuditEntry{At: now, By: "soc", Action: "unblock", Kind: manual.KindUser, ID: "mallory"}); err != nil {
		t.Fatal(err)
	}
	if _, found, _ := c1.Protection().Block(ctx, manual.KindUser, "mallory"); found {
		t.Error("still blocked after the delete")
	}
	a, err := c1.Protection().Audit(ctx, manual.KindUser, "mallory")
	if err != nil || len(a) != 2 || a[0].By != "ops" || a[1].By != "soc" {
		t.Errorf("audit: %+v %v", a, err)
	}
}

func TestSharedWindows(t *testing.T) {
	t.Parallel()
	r := testRedis(t)
	c1, _ := newTestClient(t, r, nil)
	c2, _ := newTestClient(t, r, nil)
	p1, p2 := c1.Protection(), c2.Protection()
	ctx := context.Background()
	run := func(p *Protection, op protect.WindowOp) protect.WindowOp {
		t.Helper()
		ops := []protect.WindowOp{op}
		if _, _, ok := p.DecideWindows(ctx, "s_00000000000000000009", false, nil, ops); !ok {
			t.Fatal("Redis did not answer")
		}
		return ops[0]
	}
	add := func(p *Protection, member string) int {
		return run(p, protect.WindowOp{Kind: protect.WinAdd, What: "enum", Subject: "session:s1", Route: "/o/{id}", Member: member, Within: time.Minute, Horizon: time.Minute, Limit: 4}).N
	}
	// Two replicas add to one window of distinct ids; a repeated id counts once.
	if a, b, c := add(p1, "1/"), add(p2, "2/"), add(p1, "2/"); a != 1 || b != 2 || c != 2 {
		t.Errorf("distinct ids: %d %d %d, want 1 2 2", a, b, c)
	}
	for i := range 10 {
		add(p2, string(rune('a'+i)))
	}
	if n := add(p1, "z"); n != 4 {
		t.Errorf("a window bounded to 4 members holds %d", n)
	}
	// A sequence advanced by one replica completes on the other, in order only.
	seq := func(p *Protection, mask uint32) bool {
		return run(p, protect.WindowOp{Kind: protect.WinSequence, What: "seq", Subject: "session:s2", Mask: mask, Steps: 2, Within: time.Minute}).Fired
	}
	if seq(p1, 2) || seq(p2, 1) || !seq(p1, 2) || seq(p2, 2) {
		t.Error("sequence: want only step 2 after step 1 to fire")
	}
	// Requires: fired without the step, not after it.
	req := func(p *Protection, check, step bool) bool {
		return run(p, protect.WindowOp{Kind: protect.WinRequires, What: "req", Subject: "session:s3", Check: check, Step: step, Within: time.Minute}).Fired
	}
	if !req(p1, true, false) || req(p2, false, true) || req(p1, true, false) {
		t.Error("requires: want a fire before the step only")
	}
	// Login outcomes recorded by one replica are counted by the other through the session's
	// last username.
	if err := p1.Record(ctx, []protect.WindowOp{
		{Kind: protect.WinAdd, What: "login:sessions", Subject: "user:hmac:aa", Member: "session:s4", Within: time.Minute, Horizon: time.Minute, Limit: 10},
		{Kind: protect.WinAdd, What: "login:sessions", Subject: "user:hmac:aa", Member: "session:s5", Within: time.Minute, Horizon: time.Minute, Limit: 10},
		{Kind: protect.WinSet, What: "login:last", Subject: "session:s5", Member: "user:hmac:aa", Horizon: time.Minute},
	}); err != nil {
		t.Fatal(err)
	}
	if n := run(p2, protect.WindowOp{Kind: protect.WinCount, What: "login:sessions", Via: "session:s5", Within: time.Minute}).N; n != 2 {
		t.Errorf("sessions of the last username: %d, want 2", n)
	}
	if n := run(p2, protect.WindowOp{Kind: protect.WinCount, What: "login:sessions", Via: "session:nobody", Within: time.Minute}).N; n != 0 {
		t.Errorf("a session without a login: %d", n)
	}
}

// TestSharedWindowMembersHashed checks that the members of a shared window are short hashes:
// an enumerated id or a username comes from the request and may be long or secret, and Redis
// holds up to a window's limit of them per subject.
func TestSharedWindowMembersHashed(t *testing.T) {
	t.Parallel()
	r := testRedis(t)
	c, _ := newTestClient(t, r, nil)
	p := c.Protection()
	ctx := context.Background()
	long := strings.Repeat("id-7f3a-secret-", 2000)
	ops := []protect.WindowOp{
		{Kind: protect.WinAdd, What: "enum", Subject: "session:s1", Route: "/o/{id}", Member: long, Within: time.Minute, Horizon: time.Minute, Limit: 4},
		{Kind: protect.WinAdd, What: "enum", Subject: "session:s1", Route: "/o/{id}", Member: long + "x", Within: time.Minute, Horizon: time.Minute, Limit: 4},
		{Kind: protect.WinAdd, What: "enum", Subject: "session:s1", Route: "/o/{id}", Member: long, Within: time.Minute, Horizon: time.Minute, Limit: 4},
	}
	if _, _, ok := p.DecideWindows(ctx, "s_00000000000000000009", false, nil, ops); !ok {
		t.Fatal("Redis did not answer")
	}
	if ops[2].N != 2 {
		t.Errorf("two distinct ids, one repeated, count %d; want 2", ops[2].N)
	}
	if err := p.Record(ctx, []protect.WindowOp{{Kind: protect.WinAdd, What: "login:users", Subject: "ip:192.0.2.1",
		Member: "user:alice@example.com", Within: time.Minute, Horizon: time.Minute, Limit: 10}}); err != nil {
		t.Fatal(err)
	}
	keys, err := c.rdb.Keys(ctx, c.prefix+"win:*").Result()
	if err != nil || len(keys) != 2 {
		t.Fatalf("window keys %q (%v); want 2", keys, err)
	}
	for _, k := range keys {
		members, err := c.rdb.ZRange(ctx, k, 0, -1).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range members {
			if len(m) > 32 || strings.Contains(m, "secret") || strings.Contains(m, "alice") {
				t.Errorf("key %s holds the member %.40q (%d bytes); want a short hash", k, m, len(m))
			}
		}
	}
}
