package state

import (
	"context"
	"testing"
	"time"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/internal/testutil"
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
	r := testRedis(t)
	proxy := testutil.NewCutProxy(t, r.Address)
	r.Address = proxy.Addr
	r.Timeout = config.Duration(200 * time.Millisecond)
	c, _ := newTestClient(t, r, nil)
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
