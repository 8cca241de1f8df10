package ui

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/explore"
	"github.com/apisessions/apisessions/protect"
	"github.com/apisessions/apisessions/sessions"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/store"
)

type discard struct{}

func (discard) Emit(record.Record) {}

// blockStack is stack with manual blocks held by the protection engine, as the binary
// assembles it, and the named write tokens.
func blockStack(t *testing.T, writeTokens map[string]string) http.Handler {
	t.Helper()
	st, err := store.Open(store.Options{Dir: t.TempDir(), NoRetentionJob: true})
	if err != nil {
		t.Fatalf("open the store: %v", err)
	}
	t.Cleanup(func() { st.Close(context.Background()) })
	var batch []record.Record
	for _, r := range fixtureRequests() {
		batch = append(batch, r)
	}
	if err := st.Write(context.Background(), batch); err != nil {
		t.Fatalf("write the recorded traffic to the store: %v", err)
	}
	cfg := config.Default()
	se, err := sessions.New(cfg, sessions.Settings{Emitter: discard{}, HashKey: []byte(strings.Repeat("k", 32))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(se.Close)
	pe := protect.New(cfg.Protection, se, time.Now)
	return explore.New(explore.Options{Store: st, UI: Handler(), Blocks: pe, WriteTokens: writeTokens})
}

func TestBrowserRiskAndBlocks(t *testing.T) {
	bctx := startBrowser(t)
	const writeToken = "write-token-0123456789"
	srv := serveHTTP(t, blockStack(t, map[string]string{"ops": writeToken}))

	t.Run("the list shows and filters by risk; the detail gives the reasons", func(t *testing.T) {
		t.Parallel()
		tb := newTab(t, bctx)
		tb.do("open the session list", chromedp.Navigate(srv.URL+"/?view=sessions"))
		tb.wait("the list is drawn", ready("list")+` && document.querySelectorAll('#session-rows tr').length === 3`)
		// evil: malicious (40) and a dry-run verdict (20); alice: one 403 (10); bob: nothing.
		if got := texts(tb, "#session-rows .risk-cell"); !equal(got, []string{"60", "0", "10"}) {
			t.Fatalf("risk column %q, want 60, 0, 10 (evil, bob, alice)", got)
		}
		tb.do("filter by minimum risk", fill("#list-filters-min_risk", "50"), click("#list-filters button[type=submit]"))
		tb.wait("only the risky part is listed", ready("list")+` && location.search.includes('min_risk=50') && document.querySelectorAll('#session-rows tr').length === 1`)
		if got := eval[string](tb, `document.querySelector('#session-rows tr').dataset.session`); got != evilSession {
			t.Fatalf("min_risk=50 lists %q, want %q", got, evilSession)
		}
		tb.do("open alice's part", chromedp.Navigate(srv.URL+"/?session="+aliceSession+"&part="+fixturePart))
		tb.wait("the part is drawn", ready("part"))
		if got := eval[string](tb, `document.getElementById('part-risk-score').textContent`); got != "10" {
			t.Fatalf("part risk %q, want 10", got)
		}
		if got := texts(tb, "#part-risk-reasons li"); !equal(got, []string{"denied +10"}) {
			t.Fatalf("risk reasons %q, want denied +10", got)
		}
	})

	t.Run("block a session from the UI, see it in the audit log, unblock it", func(t *testing.T) {
		t.Parallel()
		tb := newTab(t, bctx)
		tb.do("open alice's part", chromedp.Navigate(srv.URL+"/?session="+aliceSession+"&part="+fixturePart))
		tb.wait("the part is drawn with its protection", ready("part")+` && !!document.getElementById('block-session-button')`)
		if got := eval[string](tb, `document.querySelector('#block-user .block-state').textContent`); !strings.Contains(got, "user is not blocked") {
			t.Fatalf("the user's state reads %q", got)
		}
		tb.do("open the block dialog", click("#block-session-button"))
		tb.wait("the dialog asks for duration, reason and a write token",
			`document.getElementById('block-dialog').open && !document.getElementById('block-token-field').hidden`)
		const reason = `scraping <img src=x onerror=alert(9)>`
		tb.do("block with a wrong token", fill("#block-for", "2h"), fill("#block-reason", reason),
			fill("#block-token", "not-the-token"), click("#block-submit"))
		tb.wait("the refusal is shown in the dialog", `!document.getElementById('block-error').hidden`)
		if got := eval[string](tb, `document.getElementById('block-error').textContent`); !strings.Contains(got, "write token is required") {
			t.Fatalf("the dialog says %q, want that a write token is required", got)
		}
		tb.do("block with the write token", fill("#block-token", writeToken), click("#block-submit"))
		tb.wait("the part shows the block", ready("part")+` && !document.getElementById('block-dialog').open && !!document.getElementById('unblock-session')`)
		if got := eval[string](tb, `document.querySelector('#block-session .block-state').textContent`); !strings.Contains(got, "by ops: "+reason) {
			t.Fatalf("the block reads %q, want who and why", got)
		}
		rows := texts(tb, "#audit tbody tr")
		if len(rows) != 1 || !strings.Contains(rows[0], "block session") || !strings.Contains(rows[0], "ops") || !strings.Contains(rows[0], reason) {
			t.Fatalf("audit log %q, want the block by ops with its reason", rows)
		}
		if strings.Contains(eval[string](tb, `location.href`), writeToken) {
			t.Fatal("the write token leaked into the page URL")
		}
		if got := eval[string](tb, `sessionStorage.getItem('apisessions.write_token')`); got != writeToken {
			t.Fatalf("sessionStorage holds %q, want the write token", got)
		}

		tb.do("unblock", click("#unblock-session"))
		tb.wait("the dialog asks only to confirm", `document.getElementById('block-dialog').open && document.getElementById('block-token-field').hidden && document.getElementById('block-fields').hidden`)
		tb.do("confirm", click("#block-submit"))
		tb.wait("the part shows no block", ready("part")+` && !document.getElementById('block-dialog').open && !!document.getElementById('block-session-button')`)
		rows = texts(tb, "#audit tbody tr")
		if len(rows) != 2 || !strings.Contains(rows[0], "unblock session") || !strings.Contains(rows[1], "block session") {
			t.Fatalf("audit log %q, want the unblock, then the block", rows)
		}
	})

	t.Run("a user named .. is blocked as itself, not as a path", func(t *testing.T) {
		t.Parallel()
		tb := newTab(t, bctx)
		tb.do("open the session list", chromedp.Navigate(srv.URL+"/?view=sessions"))
		tb.wait("the list is drawn", ready("list"))
		// The UI's own API client, as the block dialog calls it: a path segment "..", even
		// escaped, would be resolved away by the browser (/api/v1/block) before it is sent.
		eval[bool](tb, `(() => {
			window.dots = null;
			const src = document.querySelector('script[type=module]').src.replace(/app\.js$/, 'api.js');
			import(src).then(async (api) => {
				api.setWriteToken('`+writeToken+`');
				await api.setBlock('user', '..', '1h', 'dots');
				const two = await api.getBlock('user', '..'), one = await api.getBlock('user', '.');
				window.dots = JSON.stringify({two: two.block && two.block.reason, one: !!one.block});
			}).catch((e) => { window.dots = 'error: ' + e.message; });
			return true;
		})()`)
		tb.wait("the block is answered", `window.dots !== null`)
		if got := eval[string](tb, `window.dots`); got != `{"two":"dots","one":false}` {
			t.Fatalf("blocking the user .. gave %s; want it blocked with its reason, and the user . not", got)
		}
	})

	t.Run("a server without manual blocks shows no protection, and no stray text", func(t *testing.T) {
		t.Parallel()
		psrv := serveHTTP(t, stack(t, "", fixtureRequests()))
		tb := newTab(t, bctx)
		tb.do("open alice's part", chromedp.Navigate(psrv.URL+"/?session="+aliceSession+"&part="+fixturePart))
		tb.wait("the part is drawn", ready("part"))
		if eval[bool](tb, `!!document.getElementById('protection')`) {
			t.Error("a protection section without manual blocks")
		}
		if got := eval[[]string](tb, `Array.from(document.getElementById('main').childNodes).filter((n) => n.nodeType !== 1).map((n) => n.textContent)`); len(got) != 0 {
			t.Errorf("the part view has text outside its sections: %q", got)
		}
	})

	t.Run("a server that takes no writes says so", func(t *testing.T) {
		t.Parallel()
		nsrv := serveHTTP(t, blockStack(t, nil))
		tb := newTab(t, bctx)
		tb.do("open alice's part", chromedp.Navigate(nsrv.URL+"/?session="+aliceSession+"&part="+fixturePart))
		tb.wait("the part is drawn with its protection", ready("part")+` && !!document.getElementById('block-user-button')`)
		tb.do("block the user", click("#block-user-button"))
		tb.wait("the dialog opens", `document.getElementById('block-dialog').open`)
		tb.do("send", fill("#block-token", "any"), click("#block-submit"))
		tb.wait("the API's 403 is shown", `!document.getElementById('block-error').hidden`)
		if got := eval[string](tb, `document.getElementById('block-error').textContent`); !strings.Contains(got, "this server takes no writes") {
			t.Fatalf("the dialog says %q, want the API's message", got)
		}
	})
}
