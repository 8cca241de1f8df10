package recommend

import (
	"fmt"
	"strings"
	"testing"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions/traffic/recorded"
)

// visit is one request of the rotating-cookie traffic: its client, the session cookie it
// sends and the one its response sets ("" for none).
type visit struct {
	client, method, path, sends, sets string
}

// rotatingTraffic: three clients; A logs in, and a refresh replaces its session cookie; B
// logs in and keeps its cookie; C sends a cookie no response set. Every request also carries
// a tracker cookie and a geo header.
func rotatingTraffic() []visit {
	const a1, a2 = "a1f3c9e27b4d4e8f9a0b1c2d3e4f5061", "a2e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4"
	const b1, c1 = "b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6", "c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6"
	return []visit{
		{"A", "POST", "/login", "", a1}, {"B", "POST", "/login", "", b1},
		{"A", "GET", "/api/items", a1, ""}, {"B", "GET", "/api/items", b1, ""},
		{"C", "GET", "/api/items", c1, ""}, {"A", "GET", "/api/cart", a1, ""},
		{"A", "POST", "/api/refresh", a1, a2}, {"B", "GET", "/api/cart", b1, ""},
		{"A", "GET", "/api/items", a2, ""}, {"C", "GET", "/api/cart", c1, ""},
		{"A", "GET", "/api/orders", a2, ""}, {"B", "GET", "/api/orders", b1, ""},
		{"C", "GET", "/api/orders", c1, ""},
	}
}

func (v visit) entry() entry {
	ip := map[string]string{"A": "192.0.2.10", "B": "192.0.2.11", "C": "192.0.2.12"}[v.client]
	cookie := "_ga=GA1.2.1234567" + ip[len(ip)-2:] + ".1700000000"
	if v.sends != "" {
		cookie = "app_session=" + v.sends + "; " + cookie
	}
	e := entry{client: ip, ua: "browser/1", method: v.method, url: "https://shop.example" + v.path,
		headers: [][2]string{{"cookie", cookie}, {"x-geo-country", "DE"}}}
	if v.sets != "" {
		e.respHeaders = [][2]string{{"set-cookie", "app_session=" + v.sets + "; Path=/; HttpOnly"}}
	}
	return e
}

// truth computes, by brute force from the visits, every number the explanation of the key
// "the cookie a response sets, else the cookie the request sends" must state.
type truth struct {
	works, values, covered, recurring, clients, oneValue, maxValues, shared int
	rotations, stayed, unstitched                                           int
	originSent, originDecided, carrierSent, carrierDecided                  int
	lifeSeconds, clientSeconds                                              int
	trackerRequests, trackerValues                                          int
}

func bruteForce(vs []visit) truth {
	var t truth
	count := map[string]int{}
	perClient := map[string]map[string]int{}
	owners := map[string]map[string]bool{}
	first, last := map[string]int{}, map[string]int{}
	chainOf := map[string]string{} // value -> first value of its chain
	trackers := map[string]bool{}
	for i, v := range vs {
		if _, ok := first[v.client]; !ok {
			first[v.client] = i
		}
		last[v.client] = i
		trackers[v.client] = true
		key := v.sends
		if v.sets != "" {
			key = v.sets
			t.originSent++
			t.originDecided++
		}
		if v.sends != "" {
			t.carrierSent++
			if v.sets == "" {
				t.carrierDecided++
			}
		}
		if v.sends != "" && v.sets != "" && v.sends != v.sets {
			t.rotations++
			chainOf[v.sets] = chainOf[v.sends]
		}
		if _, ok := chainOf[key]; !ok {
			chainOf[key] = key
		}
		t.works++
		count[key]++
		if perClient[v.client] == nil {
			perClient[v.client] = map[string]int{}
		}
		perClient[v.client][key]++
		if owners[key] == nil {
			owners[key] = map[string]bool{}
		}
		owners[key][v.client] = true
	}
	t.values, t.clients = len(count), len(perClient)
	for k, n := range count {
		if n >= 2 {
			t.recurring++
			t.covered += n
		}
		if len(owners[k]) > 1 {
			t.shared++
		}
	}
	for c, vals := range perClient {
		if len(vals) == 1 {
			t.oneValue++
		}
		t.maxValues = max(t.maxValues, len(vals))
		best, chains := 0, map[string]int{}
		for v, n := range vals {
			best = max(best, n)
			chains[chainOf[v]] += n
		}
		t.unstitched += best
		mainChain := 0
		for _, n := range chains {
			mainChain = max(mainChain, n)
		}
		t.stayed += mainChain
		// Requests are one second apart and every client's main chain spans its traffic.
		t.lifeSeconds += last[c] - first[c]
		t.clientSeconds += last[c] - first[c]
	}
	t.trackerRequests, t.trackerValues = len(vs), len(trackers)
	return t
}

// TestExplanationNumbersAreTrue checks each number the explanation states against the
// numbers computed from the input by brute force.
func TestExplanationNumbersAreTrue(t *testing.T) {
	t.Parallel()
	vs := rotatingTraffic()
	es := make([]entry, len(vs))
	for i, v := range vs {
		es[i] = v.entry()
	}
	rep, out := recommend(t, readHAR(t, es), Options{})
	checkSnippet(t, rep)
	if len(rep.Keys) == 0 || rep.Keys[0].Members[0].Param.Key != "app_session" {
		t.Fatalf("the app_session cookie is not the first key:\n%s", out)
	}
	tr := bruteForce(vs)
	n := len(vs)
	wants := []string{
		fmt.Sprintf("why: returned by POST /login in the app_session cookie it sets (%d responses, %d deciding), later sent in the app_session cookie of %d requests (%d deciding)",
			tr.originSent, tr.originDecided, tr.carrierSent, tr.carrierDecided),
		fmt.Sprintf("coverage     %.3f  %d of %d requests carry a value seen in at least 2 requests", float64(tr.covered)/float64(n), tr.covered, n),
		fmt.Sprintf("stability    %.3f  %d of the %d requests where the key works carry their client's main value", float64(tr.stayed)/float64(tr.works), tr.stayed, tr.works),
		// Every request of the traffic carries the key, so each client's requests from its
		// first use on are all keyed.
		fmt.Sprintf("follow       1.000  %d of the %d requests its clients sent from their first use of a value on carry it", tr.works, tr.works),
		fmt.Sprintf("distinctness %.3f  %d of %d values used by one client only", float64(tr.values-tr.shared)/float64(tr.values), tr.values-tr.shared, tr.values),
		fmt.Sprintf("per client   %d of %d clients used exactly one value; at most %d values for one client", tr.oneValue, tr.clients, tr.maxValues),
		fmt.Sprintf("lifetime     %.3f  the clients' main values span %d s of their %d s of traffic", float64(tr.lifeSeconds)/float64(tr.clientSeconds), tr.lifeSeconds, tr.clientSeconds),
		"evidence     1.000  a response issues the value before requests send it back",
		fmt.Sprintf("rotation     a response replaced the value its request carried %d time; each client's values", tr.rotations),
		fmt.Sprintf("are followed as one chain (without that, %d of the %d requests carry their client's", tr.unstitched, tr.works),
		"values       32 bytes long",
		fmt.Sprintf("- the _ga cookie: %s; in %d requests, %d distinct values", ReasonTracker, tr.trackerRequests, tr.trackerValues),
		// Every request carries the suggested key, none a built-in identifier.
		fmt.Sprintf("0 of %d requests carry neither a built-in identifier nor a suggested key", n),
	}
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Errorf("the explanation does not state %q:\n%s", w, out)
		}
	}
	k := rep.Keys[0]
	got := truth{works: k.Works, values: k.Values, covered: k.Covered, recurring: k.RecurringValues, clients: k.Clients,
		oneValue: k.OneValueClients, maxValues: k.MaxClientValues, shared: k.SharedValues, rotations: k.Rotations,
		stayed: k.Stayed, unstitched: k.StayedUnstitched, lifeSeconds: int(k.LifeSeconds), clientSeconds: int(k.ClientSeconds)}
	want := tr
	want.originSent, want.originDecided, want.carrierSent, want.carrierDecided, want.trackerRequests, want.trackerValues = 0, 0, 0, 0, 0, 0
	if got != want {
		t.Errorf("key numbers %+v; brute force %+v", got, want)
	}
	if !strings.Contains(out, "its values rotate (1 time): stitching follows them as one session") {
		t.Errorf("the snippet does not propose stitching for the rotating cookie:\n%s", out)
	}
	for _, p := range rep.Parameters() {
		if p.Key == "_ga" || p.Key == "x-geo-country" {
			t.Errorf("a tracker or geo place is in the snippet: %+v", p)
		}
	}
}

func TestDemotion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		key  candKey
		want string
	}{
		{"Google Analytics", candKey{in: "request.cookie", key: "_ga"}, ReasonTracker},
		{"Google Analytics property", candKey{in: "request.cookie", key: "_ga_MP49LGP298"}, ReasonTracker},
		{"gat with suffix", candKey{in: "request.cookie", key: "_gat_UA-1"}, ReasonTracker},
		{"Facebook pixel", candKey{in: "request.cookie", key: "_fbp"}, ReasonTracker},
		{"Hotjar", candKey{in: "request.cookie", key: "_hjSessionUser_1"}, ReasonTracker},
		{"Amplitude", candKey{in: "request.cookie", key: "AMP_abc"}, ReasonTracker},
		{"Mixpanel", candKey{in: "request.cookie", key: "mp_481649_mixpanel"}, ReasonTracker},
		{"Segment", candKey{in: "request.cookie", key: "ajs_anonymous_id"}, ReasonTracker},
		{"Optimizely", candKey{in: "request.cookie", key: "optimizelyEndUserId"}, ReasonTracker},
		{"Akamai bot manager", candKey{in: "request.cookie", key: "_abck"}, ReasonBotManager},
		{"Akamai bot manager set", candKey{in: "response.cookie", key: "ak_bmsc"}, ReasonBotManager},
		{"Akamai bm_sz", candKey{in: "request.cookie", key: "bm_sz"}, ReasonBotManager},
		{"Cloudflare", candKey{in: "request.cookie", key: "__cf_bm"}, ReasonBotManager},
		{"Imperva", candKey{in: "request.cookie", key: "incap_ses_198_592261"}, ReasonBotManager},
		{"F5 affinity", candKey{in: "request.cookie", key: "BIGipServerPOOL-www"}, ReasonAffinity},
		{"geo header", candKey{in: "response.header", key: "x-geo-info"}, ReasonGeo},
		{"country header", candKey{in: "request.header", key: "cf-ipcountry"}, ReasonGeo},
		{"locale cookie", candKey{in: "request.cookie", key: "locale"}, ReasonGeo},
		{"location cookie", candKey{in: "request.cookie", key: "location-data"}, ReasonGeo},
		{"counter", candKey{in: "response.body", path: "$.data.requestCount"}, ReasonCounter},
		{"account is a user attribute, not a counter", candKey{in: "request.header", key: "x-account-id"}, ReasonUser},
		{"sequence", candKey{in: "request.header", key: "x-seq"}, ReasonCounter},
		{"cache buster", candKey{in: "request.query", key: "_"}, ReasonCounter},
		{"last access", candKey{in: "request.cookie", key: "WMF-Last-Access"}, ReasonCounter},
		{"user id cookie", candKey{in: "request.cookie", key: "DYN_USER_ID"}, ReasonUser},
		{"user id in a body", candKey{in: "response.body", path: "$.user.id"}, ReasonUser},
		{"session cookie", candKey{in: "request.cookie", key: "JSESSIONID"}, ""},
		{"user session cookie", candKey{in: "request.cookie", key: "enwikimwuser-sessionId"}, ""},
		{"login token", candKey{in: "response.body", path: "$.token"}, ""},
		{"custom session header", candKey{in: "request.header", key: "x-app-session"}, ""},
		{"plain first-party cookie", candKey{in: "request.cookie", key: "shop_cart"}, ""},
		{"visitor id", candKey{in: "request.cookie", key: "visitorId"}, ReasonTracker},
		{"Cloudflare", candKey{in: "request.cookie", key: "cf_ob_info"}, ReasonBotManager},
	}
	for _, tc := range tests {
		if got := demotion(tc.key); got != tc.want {
			t.Errorf("%s: demotion(%v) = %q; want %q", tc.name, tc.key, got, tc.want)
		}
	}
}

// TestSessionCookieAboveBotManagers replays the pattern of a real capture where the old
// ranking put a geo header and Akamai's cookies above JSESSIONID.
func TestSessionCookieAboveBotManagers(t *testing.T) {
	t.Parallel()
	xs, _, err := recorded.ReadFile("../replay/testdata/corpus/bot-manager-and-geo.har", recorded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rep, out := recommend(t, xs, Options{})
	checkSnippet(t, rep)
	if len(rep.Keys) == 0 || rep.Keys[0].Members[len(rep.Keys[0].Members)-1].Param.Key != "JSESSIONID" {
		t.Errorf("JSESSIONID is not the first key:\n%s", out)
	}
	for _, p := range rep.Parameters() {
		if p.Group && p.Key != "JSESSIONID" {
			t.Errorf("a grouping key other than JSESSIONID is suggested: %+v\n%s", p, out)
		}
	}
	for _, want := range []string{"the _abck cookie: " + ReasonBotManager, "the ak_bmsc cookie: " + ReasonBotManager,
		"the bm_sz cookie: " + ReasonBotManager, "the _ga cookie: " + ReasonTracker} {
		if !strings.Contains(out, want) {
			t.Errorf("the report does not list %q:\n%s", want, out)
		}
	}
	found := false
	for _, c := range rep.Context {
		found = found || c.Param.Key == "DYN_USER_ID" && c.Param.Type == config.TypeUser
	}
	if !found {
		t.Errorf("the DYN_USER_ID cookie is not offered as a user context parameter:\n%s", out)
	}
}
