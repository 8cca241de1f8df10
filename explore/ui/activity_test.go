package ui

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/replay"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// recorder keeps the request records an engine emits.
type recorder struct {
	mu   sync.Mutex
	reqs []*record.Request
}

func (r *recorder) Emit(rec record.Record) {
	if q, ok := rec.(*record.Request); ok {
		r.mu.Lock()
		r.reqs = append(r.reqs, q)
		r.mu.Unlock()
	}
}

// engineRecords runs exchanges through the sessions engine with a configuration that hashes
// the query parameter token, and returns the request records it emitted.
func engineRecords(t *testing.T, xs []traffic.Exchange) []*record.Request {
	t.Helper()
	cfg, err := config.ParseAndValidate("test.yaml", []byte(`parameters:
  - {name: token, in: request.query, key: token, hashed: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	if _, err := replay.Replay(context.Background(), xs, replay.Options{Config: cfg, HashKey: bytes.Repeat([]byte{7}, 32), Emitter: rec}); err != nil {
		t.Fatal(err)
	}
	return rec.reqs
}

// TestBrowserQueryAndBusyPart follows a query string from the engine to the page: a hashed
// query parameter shows only in its hmac: form, in the API and in the UI. A busy part of many
// requests and routes gets a timeline of buckets and a transition list that stays short.
func TestBrowserQueryAndBusyPart(t *testing.T) {
	const secret = "SeCrEt-tok-8812"
	start := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	x := traffic.Exchange{
		RequestID: "req-q-1", Start: start, End: start.Add(20 * time.Millisecond), Method: "GET", Scheme: "https",
		Host: "shop.example.com", Path: "/api/search?q=red+shoes&token=" + secret, SourceAddress: "203.0.113.9:5511",
		RequestHeaders: []traffic.Header{{Name: "user-agent", Value: "qa/1.0"}}, ResponseSeen: true, Status: 200,
	}
	reqs := engineRecords(t, []traffic.Exchange{x})
	if len(reqs) != 1 || !strings.HasPrefix(reqs[0].Query, "q=red+shoes&token=hmac:") {
		t.Fatalf("the engine recorded %+v; want one request whose query holds the token hashed", reqs)
	}
	qSession := reqs[0].Session

	// A busy part: 620 requests over three hours, cycling through 60 routes, every 50th
	// malicious.
	busy := "s_b05y0000000000000b05"
	for i := range 620 {
		r := &record.Request{
			Kind: record.KindRequest, Session: busy, Part: fixturePart, RequestID: fmt.Sprintf("busy-%d", i),
			Time: record.At(start.Add(time.Duration(i) * 17 * time.Second)), Method: "GET", Scheme: "https",
			Host: "shop.example.com", Path: fmt.Sprintf("/api/r%02d", i%60), Route: fmt.Sprintf("/api/r%02d", i%60),
			Status: []int{200, 200, 404, 500}[i%4], ClientIP: "192.0.2.77", UserAgent: "bot/2",
			Key: record.Key{Source: record.SourceBuiltin, Name: "cookie:sid"}, Malicious: i%50 == 0,
		}
		reqs = append(reqs, r)
	}
	srv := serveHTTP(t, stack(t, "", reqs))

	body := string(fetch(t, srv.URL+"/api/v1/sessions/"+qSession+"/"+reqs[0].Part))
	if strings.Contains(body, secret) || !strings.Contains(body, `"query":"q=red+shoes\u0026token=hmac:`) {
		t.Fatalf("the part answer is %s; want the query with the token hashed and never the token", body)
	}

	bctx := startBrowser(t)
	tb := newTab(t, bctx)
	tb.do("open the part with the query", chromedp.Navigate(srv.URL+"/?session="+qSession+"&part="+reqs[0].Part))
	tb.wait("the part view is drawn", ready("part"))
	shown := eval[string](tb, `document.querySelector('#request-rows tr.req .query').textContent`)
	if !strings.HasPrefix(shown, "?q=red+shoes&token=hmac:") {
		t.Fatalf("the request row shows the query %q, want it with the token hashed", shown)
	}
	tb.do("open the request's details", click("#request-rows tr.req"))
	if got := eval[string](tb, `document.querySelector('#request-rows .query-full').textContent`); "?"+got != shown {
		t.Fatalf("the details show the query %q, want %q", got, shown[1:])
	}
	if strings.Contains(eval[string](tb, `document.body.textContent`), secret) {
		t.Fatal("the page shows the token in clear")
	}

	tb.do("open the busy part", chromedp.Navigate(srv.URL+"/?session="+busy+"&part="+fixturePart))
	tb.wait("the busy part is drawn", ready("part"))
	// 620 requests over 2 h 55 min: more than a mark each allows, so 2-minute buckets.
	if got := eval[string](tb, `document.getElementById('timeline-chart').dataset.mode + ' ' +
		document.querySelectorAll('#timeline-chart .tl-mark').length + ' ' +
		document.querySelectorAll('#timeline-chart .tl-bucket').length + ' ' +
		document.querySelectorAll('#timeline-chart .tl-bucket.mal').length + ' ' +
		Array.from(document.querySelectorAll('#timeline-chart .tl-bucket'), (b) => Number(b.dataset.requests)).reduce((a, b) => a + b, 0)`); got != "buckets 0 88 13 620" {
		t.Fatalf("the busy timeline reads %q, want 88 buckets of 2 minutes holding all 620 requests, 13 with malicious ones", got)
	}
	if n := eval[int](tb, `document.querySelectorAll('table.visually-hidden tbody tr').length`); n != 88 {
		t.Fatalf("the timeline's table lists %d intervals, want 88", n)
	}
	if got := eval[string](tb, `document.querySelectorAll('#transitions li').length + ' ' + document.getElementById('transitions-more').textContent`); got != "12 48 more transitions (487 steps)" {
		t.Fatalf("the busy transitions read %q, want 12 listed and the other 48 of 60 counted with their 619-132 steps", got)
	}
}
