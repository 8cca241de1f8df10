package sessions

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// benchParts lists the numbers of live parts BenchmarkLivePartMemory creates. A million takes
// a minute and about a GiB; run it alone so the process's RSS is the parts':
//
//	go test -run '^$' -bench LivePartMemory -benchtime 1x -parts 1000000 ./sessions/
var benchParts = flag.String("parts", "10000,100000", "comma-separated numbers of live parts for BenchmarkLivePartMemory")

// discardEmitter drops every record, so that only the live parts stay in memory.
type discardEmitter struct{}

func (discardEmitter) Emit(record.Record) {}

// BenchmarkLivePartMemory measures what a live part costs with the target configuration: the
// defaults plus the keys of examples/apisessions.yaml (max_live_parts raised to 2N so that
// nothing is evicted). It creates N parts through the engine with the demo shop's traffic (partTraffic)
// and reports the heap they hold (HeapAlloc after a GC, minus the engine's own before the
// first part, divided by N) as B/part, and the process's resident and peak resident memory.
func BenchmarkLivePartMemory(b *testing.B) {
	for _, f := range strings.Split(*benchParts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			b.Fatalf("-parts: %q is not a positive number", f)
		}
		b.Run(fmt.Sprintf("parts=%d", n), func(b *testing.B) {
			var perPart float64
			for b.Loop() {
				perPart = livePartBytes(b, n)
			}
			b.ReportMetric(perPart, "B/part")
			b.ReportMetric(float64(procStatusKiB(b, "VmRSS"))/1024, "RSS-MiB")
			b.ReportMetric(float64(procStatusKiB(b, "VmHWM"))/1024, "peakRSS-MiB")
		})
	}
}

// BenchmarkPartUpdate is the part stage alone, the compact part against the map-based one it
// replaced (refPart): a request that opens a part, and one that joins a part that has seen
// the usual values already.
func BenchmarkPartUpdate(b *testing.B) {
	tb, err := newTable(1)
	if err != nil {
		b.Fatal(err)
	}
	sh := tb.shards[0]
	rules := &partRules{loc: time.UTC}
	t0 := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	hits := make([]hit, 4)
	for i, m := range []string{"POST", "GET", "POST", "GET"} {
		hits[i] = hit{
			t: t0.Add(time.Duration(i) * time.Second), key: record.Key{Source: record.SourceParam, Name: "auth_token"},
			user: "user12345", ip: "203.0.113.7", userAgent: benchUserAgents[0], method: m,
			status: []int{200, 200, 201, 304}[i], bytesIn: 60, bytesOut: 80, flows: flowMask(i & 1),
		}
	}
	b.Run("open/maps", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			// The day and name of the part, as the compact part computes them.
			day, _ := rules.dayOf(hits[0].t)
			_ = partName(day, 1)
			newRefPart(&hits[0]).add(&hits[0])
		}
	})
	b.Run("open/compact", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sh.newPart("s_0123456789abcdef0123", &hits[0], rules, 1).add(&hits[0], &sh.in)
		}
	})
	b.Run("join/maps", func(b *testing.B) {
		p := newRefPart(&hits[0])
		for i := range hits {
			p.add(&hits[i])
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			p.add(&hits[i%len(hits)])
			i++
		}
	})
	b.Run("join/compact", func(b *testing.B) {
		p := sh.newPart("s_0123456789abcdef0123", &hits[0], rules, 1)
		for i := range hits {
			p.add(&hits[i], &sh.in)
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			p.add(&hits[i%len(hits)], &sh.in)
			i++
		}
	})
}

// livePartBytes creates n parts in a new engine and returns the heap bytes each one holds.
func livePartBytes(b *testing.B, n int) float64 {
	cfg, err := config.Load("../examples/apisessions.yaml")
	if err != nil {
		b.Fatal(err)
	}
	// Each of the table's shards holds its share of max_live_parts; twice n leaves room for
	// the shards that get more than their share, so that no part is evicted.
	cfg.Sessions.MaxLiveParts = 2 * n
	clk := &clock{t: time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)}
	e, err := newEngine(cfg, Settings{Emitter: discardEmitter{}, Now: clk.Now, HashKey: testKey}, false)
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	before := heapAlloc()
	for i := range n {
		for _, x := range partTraffic(i) {
			e.Observe(x)
		}
	}
	after := heapAlloc()
	if live := e.parts.len(); live != n {
		b.Fatalf("%d live parts, want %d", live, n)
	}
	return float64(int64(after)-int64(before)) / float64(n)
}

func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// procStatusKiB reads a kB figure of /proc/self/status (Linux); 0 where there is none.
func procStatusKiB(b *testing.B, name string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+":"); ok {
			kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				b.Fatalf("/proc/self/status %s: %v", name, err)
			}
			return kib
		}
	}
	return 0
}

// benchUserAgents are the browsers of the demo shop's visitors: many parts share each.
var benchUserAgents = []string{
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
	"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
	"Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
	"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
	"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.6478.71 Mobile Safari/537.36",
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0",
}

// partTraffic is the demo shop's traffic of visitor i, as examples/apisessions.yaml reads
// it: three visitors in four log in (a login answered with a token, then that token in
// x-auth-token: five requests, four routes, the auth flow, statuses 200, 201 and 304 or 404),
// the fourth browses anonymously (three requests grouped by the fallback ip + user agent).
// One logged-in visitor in eight changes address and one in eight browser half-way (an
// anonymous visitor who did would be a new session).
func partTraffic(i int) []*traffic.Exchange {
	ip1 := fmt.Sprintf("10.%d.%d.%d:40000", i>>16&255, i>>8&255, i&255)
	ip2 := fmt.Sprintf("172.16.%d.%d:40000", i>>8&255, i&255)
	ua1 := benchUserAgents[i%len(benchUserAgents)]
	ua2 := ua1
	if i%8 == 5 {
		ua2 = benchUserAgents[(i+1)%len(benchUserAgents)]
	}
	if i%8 != 1 {
		ip2 = ip1
	}
	t := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Millisecond)
	req := func(k int, method, path, ua string, headers ...string) *traffic.Exchange {
		x := at(exchange(method, path, append([]string{"user-agent", ua}, headers...)...), t.Add(time.Duration(k)*time.Second))
		x.Host = "shop.example.com"
		x.RequestID = fmt.Sprintf("req-%d-%d", i, k)
		x.SourceAddress = ip1
		if k >= 2 {
			x.SourceAddress = ip2
		}
		return x
	}
	product := strconv.Itoa(1000 + i%500)
	if i%4 == 3 {
		return []*traffic.Exchange{
			withResponse(req(0, "GET", "/", ua1), 200, ""),
			withResponse(req(1, "GET", "/api/products/"+product, ua1), 200, `{"id":`+product+`,"price":12.5}`),
			withResponse(req(2, "GET", "/api/products/9"+product, ua2), 404, `{"error":"not found"}`),
		}
	}
	token := fmt.Sprintf("tok-%08x", uint32(i)*2654435761)
	user := "user" + strconv.Itoa(i)
	last := 304
	if i%2 == 0 {
		last = 404
	}
	return []*traffic.Exchange{
		withResponse(withJSONBody(req(0, "POST", "/api/login", ua1), `{"username":"`+user+`","password":"secret"}`), 200, `{"token":"`+token+`"}`),
		withResponse(req(1, "GET", "/api/products/"+product, ua1, "x-auth-token", token), 200, `{"id":`+product+`,"price":12.5}`),
		withResponse(withJSONBody(req(2, "POST", "/api/cart", ua2, "x-auth-token", token), `{"product_id":`+product+`,"qty":1}`), 201, `{"items":1}`),
		withResponse(req(3, "GET", "/api/me", ua2, "x-auth-token", token), 200, `{"username":"`+user+`"}`),
		withResponse(req(4, "GET", "/api/orders/"+product, ua2, "x-auth-token", token), last, ""),
	}
}
