package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/apisessions/apisessions/extproc/protomsg"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// The oracle: several replicas sharing one store and one live state must store exactly what
// one replica stores on the same traffic. oracleConfig is both sides' configuration; %SINK%
// and %STATE% are the store sink and the state section of each side.
const oracleConfig = `
sessions:
  idle_timeout: 30m
  day_boundary: UTC
parameters:
  - name: login_token
    in: response.body
    path: $.token
    group: true
    hashed: true
  - name: query_token
    in: request.query
    key: token
    group: true
    hashed: true
  - name: api_key
    in: request.header
    key: x-api-key
    group: true
    hashed: true
  - name: user
    in: request.header
    key: x-user
    type: user
  - name: role
    in: request.header
    key: x-role
    type: role
attacks:
  response_header: x-waf-verdict
hashing:
  key_file: %DIR%/hash.key
sinks:
%SINK%
%STATE%
`

// oracleExchange is one generated request: the exchange and the session it belongs to.
type oracleExchange struct {
	session int
	x       *traffic.Exchange
}

// oracleTraffic generates requests over sessions, as waves: wave i holds at most one request
// of each session (two, ended in reverse order, when a session sends two at once), in
// request-time order within a session. Sessions log in and carry the token the login's
// response issued, send an API key, nothing (grouped by address and user agent), or log in for
// a session cookie that responses rotate now and then (stitching: the login joins the
// client's anonymous session, each new value continues it); they
// pause past the idle timeout now and then, and cross midnight (UTC): the times start at
// 22:00 two days from now, ahead of the servers' clocks, so that only the requests' own times
// decide parts (a sweeper never ends a part whose last request is in its future).
func oracleTraffic(seed uint64, sessions, requests int) [][]oracleExchange {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	day := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, 2)
	base := day.Add(22 * time.Hour)
	perSession := make([][]*traffic.Exchange, sessions)
	routes := []string{"/api/items", "/api/items/17", "/api/orders", "/api/orders/9/pay", "/api/profile", "/api/search?q=x"}
	methods := []string{"GET", "GET", "GET", "POST", "PUT", "DELETE"}
	statuses := []int{200, 200, 200, 201, 204, 400, 403, 404, 500}
	n := 0
	for s := range sessions {
		kind := s % 4
		token := fmt.Sprintf("tok-%d-%d", seed, s)
		cookie, rotations := "", 0
		t := base.Add(time.Duration(rng.IntN(120)) * time.Minute)
		count := requests / sessions
		if s < requests%sessions {
			count++
		}
		for i := range count {
			n++
			x := &traffic.Exchange{
				RequestID:     fmt.Sprintf("req-%d-%d-%d", seed, s, i),
				Start:         t,
				Method:        methods[rng.IntN(len(methods))],
				Scheme:        "https",
				Host:          "api.example",
				Path:          routes[rng.IntN(len(routes))],
				SourceAddress: fmt.Sprintf("198.51.%d.%d:40000", s/250, s%250+1),
				RequestHeaders: protomsg.Pairs("user-agent", fmt.Sprintf("client/%d", s%40),
					"x-role", []string{"viewer", "editor", "admin"}[rng.IntN(3)]),
				ResponseSeen:    true,
				Status:          statuses[rng.IntN(len(statuses))],
				ResponseHeaders: protomsg.Pairs("content-type", "application/json"),
				ResponseBody:    []byte(`{"ok":true}`),
				RequestBytes:    int64(rng.IntN(2000)),
			}
			x.ResponseBytes = int64(len(x.ResponseBody))
			if rng.IntN(5) == 0 {
				x.RequestHeaders = append(x.RequestHeaders, traffic.Header{Name: "x-user", Value: fmt.Sprintf("user-%d", rng.IntN(sessions))})
			}
			if rng.IntN(40) == 0 {
				x.ResponseHeaders = append(x.ResponseHeaders, traffic.Header{Name: "x-waf-verdict", Value: []string{"sqli", "xss"}[rng.IntN(2)]})
			}
			switch {
			case kind == 0 && i == 0:
				x.Method, x.Path = "POST", "/login"
				x.ResponseBody = []byte(`{"token":"` + token + `"}`)
				x.ResponseBytes = int64(len(x.ResponseBody))
			case kind == 0:
				sep := "?"
				if strings.Contains(x.Path, "?") {
					sep = "&"
				}
				x.Path += sep + "token=" + token
			case kind == 1:
				x.RequestHeaders = append(x.RequestHeaders, traffic.Header{Name: "x-api-key", Value: token})
			case kind == 3:
				if cookie != "" {
					x.RequestHeaders = append(x.RequestHeaders, traffic.Header{Name: "cookie", Value: "PHPSESSID=" + cookie})
				}
				if i == 0 || rng.IntN(3) == 0 {
					rotations++
					cookie = fmt.Sprintf("%s-%08x-%d", token, rng.Uint32(), rotations)
					x.ResponseHeaders = append(x.ResponseHeaders, traffic.Header{Name: "set-cookie", Value: "PHPSESSID=" + cookie + "; Path=/; HttpOnly"})
				}
			}
			perSession[s] = append(perSession[s], x)
			switch r := rng.IntN(100); {
			case r < 4: // a pause longer than the idle timeout
				t = t.Add(time.Duration(40+rng.IntN(60)) * time.Minute)
			case r < 10: // two requests at nearly the same time
				t = t.Add(time.Duration(rng.IntN(900)) * time.Millisecond)
			default:
				t = t.Add(time.Duration(1+rng.IntN(180)) * time.Second)
			}
		}
	}
	var waves [][]oracleExchange
	next := make([]int, sessions)
	for left := n; left > 0; {
		var w []oracleExchange
		for s, xs := range perSession {
			if next[s] >= len(xs) {
				continue
			}
			w = append(w, oracleExchange{s, xs[next[s]]})
			next[s]++
			left--
			// The next request of the session, if within a second, goes in the same wave:
			// the two streams end in either order, as out-of-order stream ends do.
			// (Not across midnight: an earlier request that arrives after the next day's first
			// joins the part it finds open, which depends on the order.)
			// Nor after a response that issues a value: the next request carries it, and
			// follows its link only once that response was seen.
			if next[s] < len(xs) && xs[next[s]].Start.Sub(xs[next[s]-1].Start) < time.Second && !issues(xs[next[s]-1]) &&
				xs[next[s]].Start.Truncate(24*time.Hour).Equal(xs[next[s]-1].Start.Truncate(24*time.Hour)) {
				w = append(w, oracleExchange{s, xs[next[s]]})
				next[s]++
				left--
			}
		}
		rng.Shuffle(len(w), func(i, j int) { w[i], w[j] = w[j], w[i] })
		waves = append(waves, w)
	}
	return waves
}

// issues reports whether x's response issues an identifier (a login token, a session cookie).
func issues(x *traffic.Exchange) bool {
	if _, ok := x.ResponseHeader("set-cookie"); ok {
		return true
	}
	return strings.Contains(string(x.ResponseBody), "token")
}

// oracleReplica is one apisessions process the oracle drives.
type oracleReplica struct {
	proc   *faultsProc
	client extprocv3.ExternalProcessorClient
}

// oracleSend sends every wave to the replicas — round-robin, or at random with pick — and
// waits after each wave until the replicas have recorded all of it, so that the requests of
// one session reach the replicas in time order across waves. pick numbers the requests from 0
// at each call.
func oracleSend(t *testing.T, waves [][]oracleExchange, replicas []oracleReplica, pick func(i int) int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	opts := protomsg.Options{Mode: &filterv3.ProcessingMode{
		RequestBodyMode:  filterv3.ProcessingMode_BUFFERED,
		ResponseBodyMode: filterv3.ProcessingMode_BUFFERED,
	}}
	base := oracleEmitted(t, replicas)
	sent := 0
	for _, w := range waves {
		var wg sync.WaitGroup
		errs := make(chan error, len(w))
		sem := make(chan struct{}, 64)
		for i, e := range w {
			r := replicas[pick(sent+i)%len(replicas)]
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				if _, err := protomsg.Exchange(ctx, r.client, protomsg.Sequence(e.x, opts)); err != nil {
					errs <- fmt.Errorf("request %s: %w", e.x.RequestID, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		sent += len(w)
		oracleAwait(t, replicas, base+sent)
	}
}

// oracleAwait waits until the replicas together have emitted want request records.
func oracleAwait(t *testing.T, replicas []oracleReplica, want int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := oracleEmitted(t, replicas)
		if got >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replicas emitted %d request records, want %d", got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// oracleEmitted is the number of request records the replicas have emitted since they started.
func oracleEmitted(t *testing.T, replicas []oracleReplica) int {
	t.Helper()
	got := 0
	for _, r := range replicas {
		got += int(r.proc.metric(t, "apisessions_sessions_requests_total"))
	}
	return got
}

// oraclePart is what the store answers about one part: its session record, its stats and its
// requests' ids, through the API.
type oraclePart struct {
	Session  map[string]any
	Stats    map[string]any
	Requests []string
}

// oracleStore reads every part the store behind httpAddr holds, by session/part.
func oracleStore(t *testing.T, httpAddr string) map[string]oraclePart {
	t.Helper()
	out := map[string]oraclePart{}
	cursor := ""
	for {
		var page struct {
			Sessions []map[string]any `json:"sessions"`
			Next     string           `json:"next"`
		}
		oracleGet(t, httpAddr, "/api/v1/sessions?limit=1000&cursor="+url.QueryEscape(cursor), &page)
		for _, s := range page.Sessions {
			id := fmt.Sprintf("%v/%v", s["session"], s["part"])
			out[id] = oraclePartOf(t, httpAddr, id)
		}
		if page.Next == "" {
			return out
		}
		cursor = page.Next
	}
}

func oraclePartOf(t *testing.T, httpAddr, id string) oraclePart {
	t.Helper()
	var p oraclePart
	cursor := ""
	for {
		var page struct {
			Session  map[string]any   `json:"session"`
			Stats    map[string]any   `json:"stats"`
			Requests []map[string]any `json:"requests"`
			Next     string           `json:"next"`
		}
		oracleGet(t, httpAddr, "/api/v1/sessions/"+id+"?limit=10000&cursor="+url.QueryEscape(cursor), &page)
		p.Session, p.Stats = page.Session, page.Stats
		for _, r := range page.Requests {
			p.Requests = append(p.Requests, fmt.Sprint(r["request_id"]))
		}
		if page.Next == "" {
			sort.Strings(p.Requests)
			return p
		}
		cursor = page.Next
	}
}

func oracleGet(t *testing.T, httpAddr, path string, into any) {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", path, resp.Status, body)
	}
	if err := json.Unmarshal(body, into); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

// oracleCompare reports every part that differs between want (one replica) and got.
func oracleCompare(t *testing.T, want, got map[string]oraclePart) {
	t.Helper()
	differ := 0
	for id, w := range want {
		g, ok := got[id]
		switch {
		case !ok:
			t.Errorf("part %s: missing", id)
		case !reflect.DeepEqual(w, g):
			t.Errorf("part %s differs:\n one replica: %+v\n replicas:    %+v", id, w, g)
		default:
			continue
		}
		if differ++; differ >= 10 {
			t.Fatalf("and more; %d parts in one replica's store, %d in the replicas'", len(want), len(got))
		}
	}
	for id := range got {
		if _, ok := want[id]; !ok {
			t.Errorf("part %s: only in the replicas' store", id)
		}
	}
}

// oracleKey writes a hash key file every side of the oracle shares: the same key gives the
// same session ids.
func oracleKey(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hash.key")
	if err := os.WriteFile(path, []byte(strings.Repeat("k", 64)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// oracleStart starts n replicas on oracleConfig with the given sink and state sections.
func oracleStart(t *testing.T, n int, key, sink, state string) []oracleReplica {
	t.Helper()
	cfg := strings.NewReplacer("%DIR%/hash.key", key, "%SINK%", sink, "%STATE%", state).Replace(oracleConfig)
	var rs []oracleReplica
	for range n {
		p := startFaultsProc(t, cfg)
		rs = append(rs, oracleReplica{proc: p, client: p.client(t)})
	}
	return rs
}

// oracleStored waits until the store behind httpAddr holds want requests in all.
func oracleStored(t *testing.T, httpAddr string, want int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := 0
		cursor := ""
		for {
			var page struct {
				Sessions []struct {
					Requests int `json:"requests"`
				} `json:"sessions"`
				Next string `json:"next"`
			}
			oracleGet(t, httpAddr, "/api/v1/sessions?limit=1000&cursor="+url.QueryEscape(cursor), &page)
			for _, s := range page.Sessions {
				got += s.Requests
			}
			if cursor = page.Next; cursor == "" {
				break
			}
		}
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the store holds %d requests, want %d", got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestOracleOneReplicaIsDeterministic: the oracle's own footing. The same generated traffic
// sent to two single replicas, in a different order within each wave, is stored the same:
// what the replicas' store is compared with does not depend on timing.
func TestOracleOneReplicaIsDeterministic(t *testing.T) {
	if testing.Short() {
		t.Skip("drives two servers with 3,000 requests; make test-slow runs it")
	}
	t.Parallel()
	waves := oracleTraffic(7, 150, 3000)
	total := 0
	for _, w := range waves {
		total += len(w)
	}
	key := oracleKey(t)
	const sink = "  - type: store\n"
	var stores []map[string]oraclePart
	for i := range 2 {
		r := oracleStart(t, 1, key, sink, "")
		if i == 1 {
			for _, w := range waves {
				slices.Reverse(w)
			}
		}
		oracleSend(t, waves, r, func(int) int { return 0 })
		oracleStored(t, r[0].proc.httpAddr, total)
		stores = append(stores, oracleStore(t, r[0].proc.httpAddr))
	}
	if len(stores[0]) < 150 {
		t.Fatalf("%d parts for 150 sessions", len(stores[0]))
	}
	oracleCompare(t, stores[0], stores[1])
}
