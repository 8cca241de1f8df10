package ui

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// findChrome returns the Chromium to drive: $CHROME_PATH, else the first browser on PATH or in
// Debian's place.
func findChrome() string {
	if p := os.Getenv("CHROME_PATH"); p != "" {
		return p
	}
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// startBrowser starts one headless Chromium for the test and returns its context; tabs are
// made from it with newTab.
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	bin := findChrome()
	if bin == "" {
		t.Skip("no Chromium found (looked at $CHROME_PATH, /usr/bin/chromium, chromium-browser, google-chrome); " +
			"install Debian's chromium package to run the browser tests")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 1000),
		// The network is closed: without these Chromium keeps trying to reach Google's hosts.
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
	})
	// The first Run starts the browser; it must not carry a timeout, which would stop the browser.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	return bctx
}

// tab is one browser tab that records JavaScript dialogs and uncaught exceptions.
type tab struct {
	t   *testing.T
	ctx context.Context

	mu         sync.Mutex
	dialogs    []string
	exceptions []string
}

func newTab(t *testing.T, bctx context.Context) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(bctx)
	t.Cleanup(cancel)
	tb := &tab{t: t, ctx: ctx}
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("open a tab: %v", err)
	}
	if err := chromedp.Listen(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *page.EventJavascriptDialogOpening:
			tb.mu.Lock()
			tb.dialogs = append(tb.dialogs, ev.Message)
			tb.mu.Unlock()
			// Close it, or the page would wait for a person forever.
			go func() {
				_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
			}()
		case *runtime.EventExceptionThrown:
			tb.mu.Lock()
			d := ev.ExceptionDetails
			msg := fmt.Sprintf("%s at %s:%d:%d", d.Text, d.URL, d.LineNumber+1, d.ColumnNumber+1)
			if d.Exception != nil {
				msg += ": " + d.Exception.Description
			}
			tb.exceptions = append(tb.exceptions, msg)
			tb.mu.Unlock()
		}
	}); err != nil {
		t.Fatalf("listen to the tab: %v", err)
	}
	t.Cleanup(func() {
		tb.mu.Lock()
		defer tb.mu.Unlock()
		if len(tb.dialogs) > 0 {
			t.Errorf("the page opened dialogs %q: data from traffic ran as code", tb.dialogs)
		}
		if len(tb.exceptions) > 0 {
			t.Errorf("the page threw %q", tb.exceptions)
		}
	})
	return tb
}

const stepTimeout = 10 * time.Second

func (tb *tab) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		tb.t.Fatalf("%s: %v", what, err)
	}
}

// wait polls a JavaScript predicate until it holds.
func (tb *tab) wait(what, predicate string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](predicate, chromedp.WithPollingTimeout(stepTimeout))); err != nil {
		state, _ := evalIn[string](tb.ctx, `document.body.dataset.state + ' ' + location.href + ' ' + document.getElementById('banner').textContent`)
		tb.t.Fatalf("waiting until %s (%s): %v; page state: %s", what, predicate, err, state)
	}
}

func evalIn[T any](ctx context.Context, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr))
}

func eval[T any](tb *tab, expr string) T {
	tb.t.Helper()
	v, err := evalIn[T](tb.ctx, expr)
	if err != nil {
		tb.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// ready is the predicate of a drawn view.
func ready(view string) string {
	return fmt.Sprintf(`document.body.dataset.state === 'ready' && document.body.dataset.view === %q`, view)
}

// texts returns the text of every element the selector matches.
func texts(tb *tab, selector string) []string {
	tb.t.Helper()
	return eval[[]string](tb, fmt.Sprintf(`Array.from(document.querySelectorAll(%q), (e) => e.textContent)`, selector))
}

// fill types a value into a field, replacing what it held.
func fill(selector, value string) chromedp.Action[chromedp.Void] {
	return chromedp.Steps(chromedp.Clear(chromedp.CSS(selector)), chromedp.SendKeys(chromedp.CSS(selector), value))
}

func click(selector string) chromedp.Action[chromedp.Void] {
	return chromedp.Click(chromedp.CSS(selector))
}

// serveHTTP starts an HTTP server for h on a free port.
func serveHTTP(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// fetch reads an API answer the way a client outside the browser would.
func fetch(t *testing.T, url string) []byte {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, res.StatusCode, err)
	}
	return b
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestBrowser(t *testing.T) {
	bctx := startBrowser(t)
	srv := serveHTTP(t, stack(t, "", fixtureRequests()))

	t.Run("explore a session: filter, open, filter inside, copy link, download CSV", func(t *testing.T) {
		t.Parallel()
		tb := newTab(t, bctx)
		// limit=2 in the page URL is carried to the API, so "Load more" has a second page to fetch.
		tb.do("open the UI", chromedp.Navigate(srv.URL+"/?limit=2"))
		tb.wait("the first page of the list is drawn", ready("list")+` && document.querySelectorAll('#session-rows tr').length === 2`)
		tb.do("load more", click("#load-more"))
		tb.wait("the second page is appended", `document.querySelectorAll('#session-rows tr').length === 3 && document.getElementById('load-more').hidden`)
		if got, want := eval[[]string](tb, `Array.from(document.querySelectorAll('#session-rows tr'), (tr) => tr.dataset.session)`),
			[]string{evilSession, bobSession, aliceSession}; !equal(got, want) {
			t.Fatalf("the list shows parts %q, want the newest first: %q", got, want)
		}

		tb.do("filter the list by user and status class",
			fill("#list-filters-user", "alice"), fill("#list-filters-status", "4xx"),
			click("#list-filters button[type=submit]"))
		tb.wait("the filtered list is drawn", ready("list")+` && location.search.includes('user=alice') && document.querySelectorAll('#session-rows tr').length === 1`)
		if got := texts(tb, "#session-rows td.user"); !equal(got, []string{"alice"}) {
			t.Fatalf("the filtered list shows users %q, want only alice", got)
		}
		if got := texts(tb, "#list-chips .chip-value"); !equal(got, []string{"alice", "4xx"}) {
			t.Fatalf("the list shows active filters %q, want alice and 4xx", got)
		}

		tb.do("open alice's session", click("#session-rows a.session-link"))
		tb.wait("the part view is drawn", ready("part"))
		if got := eval[string](tb, `document.getElementById('part-session').textContent`); got != aliceSession {
			t.Fatalf("the part view shows session %q, want %q", got, aliceSession)
		}
		// The list's status filter applies inside a part too, so it carries over.
		if got := texts(tb, "#request-rows tr.req td:nth-child(4)"); !equal(got, []string{"403"}) {
			t.Fatalf("the opened part shows statuses %q, want only the 403 that the list filter selects", got)
		}
		tb.do("show all requests", click("#show-all"))
		tb.wait("every request is shown", ready("part")+` && document.querySelectorAll('#request-rows tr.req').length === 4`)
		tb.do("apply the list filters inside the part", click("#apply-list-filters"))
		tb.wait("the list filters apply again", ready("part")+` && document.querySelectorAll('#request-rows tr.req').length === 1`)
		tb.do("show all again", click("#show-all"))
		tb.wait("every request is shown again", ready("part")+` && document.querySelectorAll('#request-rows tr.req').length === 4`)

		tb.do("filter inside the part by method", fill("#part-filters-method", "POST"), click("#part-filters button[type=submit]"))
		tb.wait("only POST requests are shown", ready("part")+` && location.search.includes('in.method=POST') && document.querySelectorAll('#request-rows tr.req').length === 2`)
		if got := texts(tb, "#request-rows .method"); !equal(got, []string{"POST", "POST"}) {
			t.Fatalf("the filtered timeline shows methods %q, want two POSTs", got)
		}
		ids := eval[[]string](tb, `Array.from(document.querySelectorAll('#request-rows tr.req'), (tr) => tr.dataset.requestId)`)
		if !equal(ids, []string{"req-a-1", "req-a-3"}) {
			t.Fatalf("the filtered timeline shows requests %q, want req-a-1 and req-a-3 in time order", ids)
		}
		if got := texts(tb, "#request-rows tr.req:first-child .param.grouping .param-name"); !equal(got, []string{"login_token"}) {
			t.Fatalf("the highlighted grouping parameter is %q, want login_token", got)
		}
		if got := texts(tb, "#stat-flows .pct"); len(got) != 4 || got[0] != "25%" {
			t.Fatalf("the flow shares read %q, want four flows at 25%% each", got)
		}

		tb.do("copy the link", click("#copy-link"))
		link := eval[string](tb, `document.getElementById('share-link').value`)
		if !strings.HasPrefix(link, srv.URL+"/?") || !strings.Contains(link, "in.method=POST") || !strings.Contains(link, "session="+aliceSession) {
			t.Fatalf("the copied link %q does not name the view", link)
		}
		other := newTab(t, bctx)
		other.do("follow the copied link", chromedp.Navigate(link))
		other.wait("the linked view is drawn", ready("part")+` && document.querySelectorAll('#request-rows tr.req').length === 2`)
		if got := eval[[]string](other, `Array.from(document.querySelectorAll('#request-rows tr.req'), (tr) => tr.dataset.requestId)`); !equal(got, ids) {
			t.Fatalf("the copied link shows requests %q, want the same view: %q", got, ids)
		}
		if got := eval[string](other, `document.getElementById('part-filters-method').value`); got != "POST" {
			t.Fatalf("the copied link's filter form holds method %q, want POST", got)
		}

		got := downloaded(t, tb, "CSV", "#download-csv")
		want := fetch(t, srv.URL+"/api/v1/sessions/"+aliceSession+"/"+fixturePart+"/requests.csv?method=POST")
		if !bytes.Equal(got, want) {
			t.Fatalf("the downloaded CSV is\n%s\nwant the API's export of the POST requests:\n%s", got, want)
		}
		lines := strings.Split(strings.TrimSpace(string(got)), "\n")
		if len(lines) != 3 || !strings.HasPrefix(lines[0], "time,request_id,method,") ||
			!strings.Contains(lines[1], "req-a-1") || !strings.Contains(lines[2], "req-a-3") {
			t.Fatalf("the downloaded CSV is\n%s\nwant a header and the rows of req-a-1 and req-a-3", got)
		}
	})

	t.Run("hostile values from traffic show as text", func(t *testing.T) {
		t.Parallel()
		tb := newTab(t, bctx)
		tb.do("open the hostile part", chromedp.Navigate(srv.URL+"/?session="+evilSession+"&part="+fixturePart))
		tb.wait("the part view is drawn", ready("part"))
		tb.do("open the request's details", click("#request-rows tr.req"))
		if got := texts(tb, "#part-user-agents li"); !equal(got, []string{xssUA}) {
			t.Fatalf("the header shows user agents %q, want the literal %q", got, xssUA)
		}
		if got := texts(tb, "#request-rows .details .ua"); !equal(got, []string{xssUA}) {
			t.Fatalf("the request details show user agent %q, want the literal %q", got, xssUA)
		}
		if got := eval[string](tb, `document.getElementById('part-user').textContent`); got != `<script>alert(2)</script>` {
			t.Fatalf("the user shows as %q, want the literal markup", got)
		}
		if got := eval[string](tb, `document.querySelector('#request-rows pre.body').textContent`); got != `<script>alert(6)</script>` {
			t.Fatalf("the attack body shows as %q, want the literal markup", got)
		}
		if got := eval[string](tb, `document.querySelector('#request-rows .badge.dry').textContent`); got != `rate_limit · <img src=x onerror=alert(7)> (dry run)` {
			t.Fatalf("the protection badge shows %q, want the verdict as text", got)
		}
		if got := eval[string](tb, `document.querySelector('#request-rows tr.req .continued').textContent`); got != "continued from s_<img src=x onerror=alert(7)> (<b>login</b>)" {
			t.Fatalf("the timeline shows %q for continued_from, want the literal text", got)
		}
		// The one SVG is the timeline chart, which holds only the elements the UI draws.
		if n := eval[int](tb, `document.querySelectorAll('img, svg:not(.chart), iframe, object, embed, b, i, u, script:not([src]), svg.chart :not(title, desc, g, line, text, circle, polygon, rect, path)').length`); n != 0 {
			t.Fatalf("the page holds %d elements that only markup from traffic could have made", n)
		}
		if got := eval[[]string](tb, `Array.from(document.querySelectorAll('#timeline-chart .tl-mark'), (m) => m.tagName + ' ' + m.getAttribute('class') + ' ' + m.querySelector('title').textContent)`); len(got) != 1 ||
			!strings.HasPrefix(got[0], "polygon tl-mark mal tl-c5 ") || !strings.HasSuffix(got[0], " · 500 · /search · malicious") {
			t.Fatalf("the hostile part's timeline marks are %q, want one malicious triangle of a 5xx with its route as text", got)
		}
		tb.do("go to the list", click("#back-to-list"))
		tb.wait("the list is drawn", ready("list")+` && document.querySelectorAll('#session-rows tr').length === 3`)
		if n := eval[int](tb, `document.querySelectorAll('img, svg, script:not([src])').length`); n != 0 {
			t.Fatalf("the list holds %d elements that only markup from traffic could have made", n)
		}
	})

	t.Run("pivot from a part to the sessions sharing an IP, a user agent, a JA4", func(t *testing.T) {
		t.Parallel()
		tb := newTab(t, bctx)
		tb.do("open alice's part", chromedp.Navigate(srv.URL+"/?session="+aliceSession+"&part="+fixturePart))
		tb.wait("the part view is drawn", ready("part"))
		// Four requests, few enough for a mark each; three steps between them, once each.
		if got := eval[string](tb, `document.getElementById('timeline-chart').dataset.mode + ' ' + document.querySelectorAll('#timeline-chart .tl-mark').length + ' ' + document.querySelectorAll('#timeline-chart .tl-mark.mal').length`); got != "marks 4 0" {
			t.Fatalf("the timeline reads %q, want marks mode with 4 marks, none malicious", got)
		}
		if got := eval[[]string](tb, `Array.from(document.querySelectorAll('#timeline-chart .tl-mark'), (m) => m.getAttribute('class'))`); !equal(got, []string{"tl-mark tl-c2", "tl-mark tl-c2", "tl-mark tl-c2", "tl-mark tl-c4"}) {
			t.Fatalf("the timeline marks have classes %q, want three 2xx and a 4xx", got)
		}
		if got := eval[string](tb, `document.querySelector('#timeline-chart desc').textContent`); !strings.HasPrefix(got, "4 requests from 2026-11-22 09:00:00.100 to 2026-11-22 09:02:00.400") {
			t.Fatalf("the timeline's description reads %q", got)
		}
		if got := texts(tb, "#transitions li"); !equal(got, []string{
			"/api/login → /api/users/{id}×1", "/api/orders → /api/admin/users×1", "/api/users/{id} → /api/orders×1"}) {
			t.Fatalf("the transitions read %q, want the three steps of alice's part, by route", got)
		}
		if got := eval[string](tb, `document.getElementById('rate').textContent`); !strings.Contains(got, "peak 2 in one minute") {
			t.Fatalf("the rate reads %q, want a peak of 2 in one minute", got)
		}

		tb.do("click the client IP", click("#part-ips a.pivot"))
		tb.wait("the list of parts from that IP is drawn", ready("list")+` && location.search === '?ip=203.0.113.7'`)
		if got := eval[[]string](tb, `Array.from(document.querySelectorAll('#session-rows tr'), (tr) => tr.dataset.session)`); !equal(got, []string{aliceSession}) {
			t.Fatalf("the IP pivot lists %q, want alice's part alone", got)
		}
		if got := texts(tb, "#list-chips .chip-value"); !equal(got, []string{"203.0.113.7"}) {
			t.Fatalf("the list shows active filters %q, want the IP", got)
		}

		tb.do("open bob's part from a pivot-free link", chromedp.Navigate(srv.URL+"/?session="+bobSession+"&part="+fixturePart))
		tb.wait("bob's part is drawn", ready("part"))
		if got := eval[string](tb, `document.querySelector('#timeline-chart').dataset.mode + ' ' + document.getElementById('transitions-none').textContent`); got != "marks A single request: no transitions." {
			t.Fatalf("a single request's activity reads %q", got)
		}
		tb.do("open the request's details", click("#request-rows tr.req"))
		tb.do("click its JA4", click("#request-rows tr.detail a[data-pivot=ja4]"))
		tb.wait("the list of parts with that JA4 is drawn", ready("list")+` && location.search.includes('ja4=')`)
		if got := eval[[]string](tb, `Array.from(document.querySelectorAll('#session-rows tr'), (tr) => tr.dataset.session)`); !equal(got, []string{evilSession, bobSession}) {
			t.Fatalf("the JA4 pivot lists %q, want the hostile part and bob's, newest first", got)
		}
		tb.do("clear the filter", click(`#list-chips [data-filter=ja4] .chip-remove`))
		tb.wait("every part is listed again", ready("list")+` && location.search === '?view=sessions' && document.querySelectorAll('#session-rows tr').length === 3`)

		tb.do("click the hostile user agent in the list", click(`#session-rows tr[data-session="`+evilSession+`"] a[data-pivot=ua]`))
		tb.wait("the list of parts with that user agent is drawn", ready("list")+` && location.search.includes('ua=')`)
		if got := eval[[]string](tb, `Array.from(document.querySelectorAll('#session-rows tr'), (tr) => tr.dataset.session)`); !equal(got, []string{evilSession}) {
			t.Fatalf("the user agent pivot lists %q, want the hostile part", got)
		}
		if got := texts(tb, "#list-chips .chip-value"); !equal(got, []string{xssUA}) {
			t.Fatalf("the list's active filter reads %q, want the literal user agent", got)
		}
		if n := eval[int](tb, `document.querySelectorAll('img, svg, script:not([src])').length`); n != 0 {
			t.Fatalf("the list holds %d elements that only markup from traffic could have made", n)
		}
	})

	t.Run("explore from a request id, then remove the filter", func(t *testing.T) {
		t.Parallel()
		tb := newTab(t, bctx)
		tb.do("open the UI", chromedp.Navigate(srv.URL+"/"))
		tb.wait("the overview is drawn", ready("overview"))
		tb.do("search a request id", fill("#rid-input", "req-a-3"), click("#rid-form button[type=submit]"))
		tb.wait("its part opens filtered to it", ready("part")+` && location.search.includes('in.request_id=req-a-3')`)
		if got := eval[[]string](tb, `Array.from(document.querySelectorAll('#request-rows tr.req'), (tr) => tr.dataset.requestId)`); !equal(got, []string{"req-a-3"}) {
			t.Fatalf("the part shows requests %q, want only req-a-3", got)
		}
		tb.do("remove the request id filter", click(`#part-chips [data-filter=request_id] .chip-remove`))
		tb.wait("the whole part is shown", ready("part")+` && document.querySelectorAll('#request-rows tr.req').length === 4`)
		tb.do("search an unknown id", fill("#rid-input", "nope"), click("#rid-form button[type=submit]"))
		tb.wait("the error is shown", `!document.getElementById('banner').hidden`)
		if got := eval[string](tb, `document.getElementById('banner').textContent`); !strings.Contains(got, "No request") {
			t.Fatalf("the banner reads %q, want that no request has that id", got)
		}
	})

	t.Run("a token prompt when the API answers 401, then a HAR download with the token", func(t *testing.T) {
		t.Parallel()
		const token = "s3cret-token"
		lsrv := serveHTTP(t, stack(t, token, fixtureRequests()))
		tb := newTab(t, bctx)
		tb.do("open the UI", chromedp.Navigate(lsrv.URL+"/?view=sessions"))
		tb.wait("the token prompt opens", `document.getElementById('token-dialog').open`)
		tb.do("enter the token", chromedp.SendKeys(chromedp.CSS("#token-input"), token), click("#token-form button[type=submit]"))
		tb.wait("the list is drawn", ready("list")+` && document.querySelectorAll('#session-rows tr').length === 3`)
		if strings.Contains(eval[string](tb, `location.href`), token) {
			t.Fatal("the token leaked into the page URL")
		}
		if got := eval[string](tb, `sessionStorage.getItem('apisessions.token')`); got != token {
			t.Fatalf("sessionStorage holds %q, want the token", got)
		}

		// The HAR download sends the token in a header: the link itself carries none.
		tb.do("open alice's part", chromedp.Navigate(lsrv.URL+"/?session="+aliceSession+"&part="+fixturePart))
		tb.wait("the part view is drawn", ready("part"))
		if href := eval[string](tb, `document.getElementById('download-har').getAttribute('href')`); href != "/api/v1/sessions/"+aliceSession+"/"+fixturePart+"/session.har" {
			t.Fatalf("the HAR link is %q", href)
		}
		got := downloaded(t, tb, "HAR", "#download-har")
		req, _ := http.NewRequest(http.MethodGet, lsrv.URL+"/api/v1/sessions/"+aliceSession+"/"+fixturePart+"/session.har", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if !bytes.Equal(got, want) || !bytes.Contains(got, []byte(`"creator":{"name":"apisessions"`)) {
			t.Fatalf("the downloaded HAR is\n%s\nwant the API's export:\n%s", got, want)
		}
	})
}

// downloaded clicks the download button sel and returns the file the browser saved.
func downloaded(t *testing.T, tb *tab, what, sel string) []byte {
	t.Helper()
	dir := t.TempDir()
	dctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	progress := chromedp.Events(dctx, browser.DownloadProgress)
	tb.do("download the "+what,
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Call(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
				Behavior: browser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: dir, EventsEnabled: ptr(true),
			})
			return err
		}),
		click(sel))
	for ev, err := range progress {
		if err != nil {
			t.Fatalf("waiting for the %s download: %v", what, err)
		}
		if ev.State == browser.DownloadProgressStateCanceled {
			t.Fatalf("the %s download was cancelled", what)
		}
		if ev.State == browser.DownloadProgressStateCompleted {
			got, err := os.ReadFile(filepath.Join(dir, ev.GUID))
			if err != nil {
				t.Fatal(err)
			}
			return got
		}
	}
	t.Fatalf("the %s download did not complete", what)
	return nil
}

func ptr[T any](v T) *T { return &v }

// TestScreenshot refreshes docs/ui.png, docs/overview.png and docs/list.png: APISESSIONS_SCREENSHOT=1 go test -run TestScreenshot ./explore/ui/
func TestScreenshot(t *testing.T) {
	if os.Getenv("APISESSIONS_SCREENSHOT") != "1" {
		t.Skip("set APISESSIONS_SCREENSHOT=1 to refresh docs/ui.png, docs/overview.png and docs/list.png")
	}
	bctx := startBrowser(t)
	demo := demoRequests()
	srv := serveHTTP(t, stack(t, "", demo))
	tb := newTab(t, bctx)
	tb.do("open the demo part", chromedp.EmulateViewport(1440, 1200),
		chromedp.Navigate(srv.URL+"/?session="+demo[0].Session+"&part="+demo[0].Part))
	// The requests arrive after the view is ready; the page's full height is known once they are.
	n := 0
	for _, r := range demo {
		if r.Session == demo[0].Session && r.Part == demo[0].Part {
			n++
		}
	}
	tb.wait("the part view is drawn with its requests", ready("part")+` && document.querySelectorAll('#request-rows tr.req').length === `+strconv.Itoa(n))
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("..", "..", "docs", "ui.png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
	screenshotOverview(t, bctx)
}
