package sessions

import (
	"bytes"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"testing"
	"time"
	"unsafe"

	"github.com/apisessions/apisessions/sessions/record"
)

// TestPartMatchesReference feeds the same requests to a live part and to the map-based
// reference it replaced (refPart) and requires the same session record, byte for byte, after
// every request. The traffic ranges from a browser's few values to a client cycling through
// made-up methods, statuses, addresses and user agents past every cap, with requests out of
// order, ties in time, and times a century before the part's day.
func TestPartMatchesReference(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		seeds   int
		steps   int
		variety int // distinct values per field drawn beyond the common ones
	}{
		{name: "a browser's few values", seeds: 50, steps: 12, variety: 0},
		{name: "some odd values", seeds: 50, steps: 40, variety: 8},
		{name: "past every cap", seeds: 20, steps: 300, variety: 100},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for seed := range tc.seeds {
				comparePartWithReference(t, tc.name, uint64(seed), tc.steps, tc.variety)
			}
		})
	}
}

func comparePartWithReference(t *testing.T, name string, seed uint64, steps, variety int) {
	t.Helper()
	tb, err := newTable(1)
	if err != nil {
		t.Fatal(err)
	}
	sh := tb.shards[0]
	rules := &partRules{loc: time.UTC}
	g := &hitGen{r: rand.New(rand.NewPCG(seed, 7)), variety: variety, day: time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)}
	first := g.hit(true)
	p := sh.newPart("s_0123456789abcdef0123", &first, rules, 1)
	ref := newRefPart(&first)
	for i := range steps {
		h := first
		if i > 0 {
			h = g.hit(false)
		}
		p.add(&h, &sh.in)
		ref.add(&h)
		got := p.sessionRecord(i%2 == 0, record.EndIdle)
		want := ref.sessionRecord(p.session, p.name, i%2 == 0, record.EndIdle)
		if gb, wb := got.AppendJSON(nil), want.AppendJSON(nil); !bytes.Equal(gb, wb) {
			t.Fatalf("%s, seed %d, request %d (%s %q, status %d, at %s): the part's record differs from the reference's\n got %s\nwant %s",
				name, seed, i, h.method, h.ip, h.status, h.t.Format(time.RFC3339Nano), gb, wb)
		}
		if !got.FirstSeen.Equal(want.FirstSeen.Time) || !got.LastSeen.Equal(want.LastSeen.Time) {
			t.Fatalf("%s, seed %d, request %d: first/last seen %v/%v, want %v/%v to the nanosecond", name, seed, i,
				got.FirstSeen, got.LastSeen, want.FirstSeen, want.LastSeen)
		}
	}
}

// hitGen draws requests of one part's day.
type hitGen struct {
	r       *rand.Rand
	variety int
	day     time.Time // midnight starting the part's day
}

func (g *hitGen) pick(common []string, prefix string) string {
	if g.variety > 0 && g.r.IntN(3) == 0 {
		return fmt.Sprintf("%s%d", prefix, g.r.IntN(g.variety))
	}
	return common[g.r.IntN(len(common))]
}

func (g *hitGen) hit(first bool) hit {
	r := g.r
	// The first request opens the part, so it falls in the day; later ones may come before it
	// (out of order, even by a century), never after the day.
	t := g.day.Add(time.Duration(r.Int64N(int64(24 * time.Hour))))
	switch n := r.IntN(10); {
	case first:
	case n == 0:
		t = g.day.AddDate(-100, 0, 0).Add(time.Duration(r.Int64N(int64(time.Hour))))
	case n < 3:
		t = g.day.Add(time.Duration(r.IntN(4)) * time.Hour) // ties
	}
	statuses := []int{0, 200, 200, 201, 304, 404, 500, 599, 600, 999, 1000, -1, 70000}
	status := statuses[r.IntN(len(statuses))]
	if g.variety > 0 && r.IntN(3) == 0 {
		status = 100 + r.IntN(g.variety*12)
	}
	return hit{
		t:         t,
		key:       record.Key{Source: record.SourceParam, Name: g.pick([]string{"login_token", "auth_token"}, "k")},
		user:      g.pick([]string{"", "", "alice", "bob", "hmac:00112233445566778899aabbccddeeff"}, "user"),
		role:      g.pick([]string{"", "", "admin", "buyer"}, "role"),
		ip:        g.pick([]string{"", "203.0.113.7", "2001:db8::1"}, "10.0.0."),
		userAgent: g.pick([]string{"", "curl/8.0", "Mozilla/5.0 (X11; Linux x86_64)"}, "ua-"),
		method:    g.pick([]string{"GET", "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE", "other", "get", "PROPFIND", ""}, "M"),
		status:    status,
		bytesIn:   r.Int64N(1 << 20),
		bytesOut:  r.Int64N(1 << 20),
		flows:     flowMask(r.IntN(256)) & flowMask(r.IntN(256)),
		malicious: r.IntN(8) == 0,
	}
}

// TestPartsShareStrings checks that parts of one shard share their day, key, user agent and
// role, and keep their own copies of what they do not share with others.
func TestPartsShareStrings(t *testing.T) {
	t.Parallel()
	tb, err := newTable(1)
	if err != nil {
		t.Fatal(err)
	}
	sh := tb.shards[0]
	// The table is direct-mapped: with a seed that puts the user agent and the role in one
	// slot (1 in 256), the role would replace the user agent. Take one that does not.
	for maphash.String(sh.in.seed, "curl/8.0")%internSlots == maphash.String(sh.in.seed, "admin")%internSlots {
		sh.in.seed = maphash.MakeSeed()
	}
	rules := &partRules{loc: time.UTC}
	// Each request has its own copy of every string, as requests read from the wire do.
	fresh := func(s string) string { return string([]byte(s)) }
	mk := func() hit {
		return hit{
			t:   time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC),
			key: record.Key{Source: fresh(record.SourceParam), Name: fresh("auth_token")}, ip: fresh("203.0.113.7"),
			userAgent: fresh("curl/8.0"), role: fresh("admin"), user: fresh("alice"), method: "GET", status: 200,
		}
	}
	h1, h2 := mk(), mk()
	p1 := sh.newPart("s_1", &h1, rules, 1)
	p1.add(&h1, &sh.in)
	p2 := sh.newPart("s_2", &h2, rules, 1)
	p2.add(&h2, &sh.in)
	same := func(a, b string) bool { return unsafe.StringData(a) == unsafe.StringData(b) }
	checks := []struct {
		name  string
		share bool
		a, b  string
	}{
		{name: "day", share: true, a: p1.name, b: p2.name},
		{name: "user agent", share: true, a: p1.seen[1], b: p2.seen[1]},
		{name: "role", share: true, a: p1.role, b: p2.role},
		{name: "client address", share: false, a: p1.seen[0], b: p2.seen[0]},
		{name: "user", share: false, a: p1.user, b: p2.user},
	}
	for _, c := range checks {
		if same(c.a, c.b) != c.share {
			t.Errorf("two parts share their %s: %v, want %v", c.name, same(c.a, c.b), c.share)
		}
		if same(c.a, h1.userAgent) || same(c.a, h1.role) || same(c.a, h1.user) {
			t.Errorf("a part's %s points into a request's memory", c.name)
		}
	}
	if p1.key != p2.key {
		t.Errorf("two parts grouped by one key hold two copies of it")
	}
}

func TestShareKeyBounded(t *testing.T) {
	t.Parallel()
	keys := make(map[record.Key]*record.Key)
	for i := range maxSharedKeys + 10 {
		k := record.Key{Source: record.SourceParam, Name: fmt.Sprint("p", i)}
		if got := shareKey(keys, k); *got != k {
			t.Fatalf("shareKey(%v) = %v", k, *got)
		}
	}
	if len(keys) != maxSharedKeys {
		t.Errorf("the shard shares %d keys, want the bound %d", len(keys), maxSharedKeys)
	}
	over := record.Key{Source: record.SourceParam, Name: "over"}
	if a, b := shareKey(keys, over), shareKey(keys, over); a == b || *a != over || *b != over {
		t.Errorf("past the bound a key should be copied for each part, got %p %v and %p %v", a, *a, b, *b)
	}
}
