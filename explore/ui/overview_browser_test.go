package ui

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestBrowserOverview drives the landing view over the fixtures: the totals, both charts with
// their tables, the lists, a click on a top route that opens the filtered session list, and the
// period picker.
func TestBrowserOverview(t *testing.T) {
	bctx := startBrowser(t)
	srv := serveHTTP(t, stack(t, "", fixtureRequests()))
	tb := newTab(t, bctx)
	// The fixtures are recorded on 2026-11-22 between 09:00 and 11:00: a period of its own.
	tb.do("open the overview of the fixtures' morning",
		chromedp.Navigate(srv.URL+"/?view=overview&from=2026-11-22T08:00:00Z&to=2026-11-22T12:00:00Z"))
	tb.wait("the overview is drawn", ready("overview")+` && document.getElementById('chart-traffic-svg') !== null`)

	if got := texts(tb, "#overview-totals .tile-value"); !equal(got, []string{"6", "3", "1", "1"}) {
		t.Fatalf("the totals read %q; want 6 requests, 3 parts, 1 malicious, 1 error", got)
	}
	if got := eval[string](tb, `document.getElementById('overview-period').textContent`); !strings.Contains(got, "buckets of 5 minutes") {
		t.Fatalf("the period reads %q; want 5-minute buckets for four hours", got)
	}
	// The chart: 48 bars with their title and description, axes with labels, and a table of
	// the same numbers for screen readers.
	if n := eval[int](tb, `document.querySelectorAll('#chart-traffic-svg .bars .chart-bar').length`); n != 48 {
		t.Fatalf("the chart has %d bars; want 48", n)
	}
	if got := eval[string](tb, `document.querySelector('#chart-traffic-svg > title').textContent`); got != "Requests and sessions" {
		t.Fatalf("the chart's title is %q", got)
	}
	if got := eval[string](tb, `document.querySelector('#chart-traffic-svg > desc').textContent`); !strings.Contains(got, "Requests: 6 in all") {
		t.Fatalf("the chart's description is %q; want the total", got)
	}
	if got := texts(tb, "#chart-traffic-svg .x-axis text"); len(got) < 5 || got[0] != "08:00" || got[len(got)-1] != "UTC" {
		t.Fatalf("the time axis reads %q; want labels from 08:00 and the zone", got)
	}
	if got := texts(tb, "#chart-traffic-svg .y-axis text"); len(got) < 2 || got[0] != "0" {
		t.Fatalf("the count axis reads %q; want ticks from 0", got)
	}
	if eval[bool](tb, `getComputedStyle(document.getElementById('chart-traffic-table')).position !== 'absolute'`) {
		t.Fatal("the chart's table is shown before it is asked for; want it visually hidden")
	}
	rows := eval[[]string](tb, `Array.from(document.querySelectorAll('#chart-traffic-table tbody tr'), (tr) => tr.textContent)`)
	if len(rows) != 48 || rows[12] != "09:00"+"4"+"1" {
		t.Fatalf("the chart's table has %d rows, the 09:00 one %q; want 48 and 4 requests of 1 part at 09:00", len(rows), rows[12])
	}
	tb.do("show the chart as a table", click("#chart-traffic-toggle"))
	if !eval[bool](tb, `getComputedStyle(document.getElementById('chart-traffic-table')).position !== 'absolute' && getComputedStyle(document.getElementById('chart-traffic-svg')).display === 'none'`) {
		t.Fatal("the toggle did not swap the chart for its table")
	}

	if got := texts(tb, "#routes-malicious .route-link"); !equal(got, []string{"/search"}) {
		t.Fatalf("routes by malicious requests: %q; want /search", got)
	}
	if got := texts(tb, "#top-sessions .session-link .mono"); !equal(got, []string{evilSession}) {
		t.Fatalf("top sessions: %q; want the hostile one", got)
	}
	if got := texts(tb, "#new-users .user-link"); !equal(got, []string{`<script>alert(2)</script>`, "bob", "alice"}) {
		t.Fatalf("new users: %q; want the three users, latest first, the hostile one as text", got)
	}
	if got := texts(tb, "#new-fingerprints td.ua"); len(got) != 3 || got[0] != xssUA {
		t.Fatalf("new user agents: %q; want three, the hostile one first and as text", got)
	}
	if n := eval[int](tb, `document.querySelectorAll('main img, main iframe, main object, main embed, main b, main i, main u, main script').length`); n != 0 {
		t.Fatalf("the overview holds %d elements that only markup from traffic could have made", n)
	}

	// The new user agents are pivots to the parts that sent them since their first request.
	if got := eval[string](tb, `document.querySelector('#new-fingerprints .ua-link').getAttribute('href')`); !strings.Contains(got, "ua=%3Cimg+src%3Dx+onerror%3Dalert%281%29%3E") {
		t.Fatalf("the hostile user agent links to %q; want the list filtered by it (ua=)", got)
	}

	// Ranked by risk: the hostile session (a malicious request) before alice's (a refusal);
	// bob's has no risk. The period stays, the order is in the URL.
	if got := texts(tb, "#top-sessions .sessions-by a"); !equal(got, []string{"Most malicious", "Riskiest"}) {
		t.Fatalf("the orders of the top sessions read %q", got)
	}
	tb.do("rank the sessions by risk", click(`#top-sessions a[data-sessions-by="risk"]`))
	tb.wait("the riskiest sessions are drawn", ready("overview")+` && location.search.includes('sessions_by=risk') && document.getElementById('top-sessions-h').textContent === 'Riskiest sessions'`)
	if search := eval[string](tb, `location.search`); !strings.Contains(search, "from=2026-11-22T08%3A00%3A00Z") {
		t.Fatalf("ranking by risk left the period: %q", search)
	}
	if got := texts(tb, "#top-sessions .session-link .mono"); !equal(got, []string{evilSession, aliceSession}) {
		t.Fatalf("riskiest sessions: %q; want the hostile one, then alice's", got)
	}
	risks := texts(tb, "#top-sessions td.risk-cell")
	if len(risks) != 2 || risks[0] == "0" || risks[1] == "0" {
		t.Fatalf("the riskiest sessions' scores read %q; want two scores above 0", risks)
	}
	if got := eval[string](tb, `document.querySelector('#top-sessions a[aria-current]').dataset.sessionsBy`); got != "risk" {
		t.Fatalf("the current order is %q; want risk", got)
	}
	tb.do("open the riskiest session", click("#top-sessions .session-link"))
	tb.wait("the riskiest part is drawn", ready("part")+` && new URLSearchParams(location.search).get('session') === '`+evilSession+`'`)
	if got := eval[string](tb, `document.getElementById('part-risk-score').textContent`); got != risks[0] {
		t.Fatalf("the part's risk reads %q; the overview said %q", got, risks[0])
	}
	tb.do("go back to the riskiest sessions", chromedp.NavigateBack())
	tb.wait("the riskiest sessions are drawn again", ready("overview")+` && document.getElementById('top-sessions-h').textContent === 'Riskiest sessions'`)
	tb.do("rank the sessions by malicious requests again", click(`#top-sessions a[data-sessions-by="malicious"]`))
	tb.wait("the most malicious sessions are drawn", ready("overview")+` && !location.search.includes('sessions_by') && document.getElementById('top-sessions-h').textContent === 'Sessions with most malicious requests'`)

	tb.do("open the top route", click("#routes-malicious .route-link"))
	tb.wait("the filtered list is drawn", ready("list")+` && document.querySelectorAll('#session-rows tr').length === 1`)
	search := eval[string](tb, `location.search`)
	for _, want := range []string{"route=%2Fsearch", "malicious=true", "host=shop.example.com", "from=2026-11-22T08%3A00%3A00Z", "to=2026-11-22T11%3A59%3A59.999Z"} {
		if !strings.Contains(search, want) {
			t.Fatalf("the list opened with %q; want %s in it", search, want)
		}
	}
	if got := eval[string](tb, `document.querySelector('#session-rows tr').dataset.session`); got != evilSession {
		t.Fatalf("the filtered list shows %q; want the hostile session", got)
	}

	tb.do("go back to the overview", chromedp.NavigateBack())
	tb.wait("the overview is drawn again", ready("overview")+` && document.getElementById('chart-traffic-svg') !== null`)
	tb.do("pick the last hour", click(`.periods a[data-period="1h"]`))
	tb.wait("the last hour is drawn", ready("overview")+` && location.search === '?period=1h' && document.querySelector('.periods a[aria-current]').dataset.period === '1h'`)
	if got := eval[string](tb, `document.querySelector('#routes-malicious p').textContent`); got != "No malicious request in this period." {
		t.Fatalf("an hour without traffic shows %q", got)
	}
	tb.do("go back to the fixtures' morning", chromedp.Navigate(srv.URL+"/?view=overview&from=2026-11-22T08:00:00Z&to=2026-11-22T12:00:00Z"))
	tb.wait("the overview is drawn", ready("overview")+` && document.querySelectorAll('#new-fingerprints .ua-link').length === 3`)
	tb.do("pivot on curl's user agent", click(`#new-fingerprints tr:nth-child(2) .ua-link`))
	tb.wait("the list of its parts is drawn", ready("list")+` && document.querySelectorAll('#session-rows tr').length === 1`)
	if got := eval[string](tb, `new URLSearchParams(location.search).get('ua')`); got != "curl/8.5.0" {
		t.Fatalf("the user agent's pivot filters on %q; want curl/8.5.0", got)
	}
	if got := eval[string](tb, `document.querySelector('#session-rows tr').dataset.session`); got != bobSession {
		t.Fatalf("the user agent's parts: %q; want bob's", got)
	}

	tb.do("open the session list from the top bar", click("#nav-sessions"))
	tb.wait("the unfiltered list is drawn", ready("list")+` && location.search === '?view=sessions' && document.querySelectorAll('#session-rows tr').length === 3`)
}

// screenshotOverview writes docs/overview.png, the overview of a day of demo traffic, and
// docs/list.png, the afternoon's session parts with a risk score, with their pivots.
func screenshotOverview(t *testing.T, bctx context.Context) {
	srv := serveHTTP(t, stack(t, "", demoDay()))
	tb := newTab(t, bctx)
	tb.do("open the demo day's overview", chromedp.EmulateViewport(1440, 1200),
		chromedp.Navigate(srv.URL+"/?view=overview&from=2026-11-22T00:00:00Z&to=2026-11-23T00:00:00Z"))
	tb.wait("the overview is drawn", ready("overview")+` && document.getElementById('chart-traffic-svg') !== null`)
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("..", "..", "docs", "overview.png"), png, 0o644); err != nil {
		t.Fatal(err)
	}

	tb.do("open the list of the day's risky parts", chromedp.EmulateViewport(1680, 900),
		chromedp.Navigate(srv.URL+"/?from=2026-11-22T13:00:00Z&to=2026-11-22T15:59:59Z&min_risk=1"))
	tb.wait("the list is drawn", ready("list")+` && document.querySelectorAll('#session-rows tr').length > 3`)
	png, err = chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("..", "..", "docs", "list.png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}
