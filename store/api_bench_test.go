// The benchmarks of this file measure the explore API over the store's large benchmark
// database, which is built here; they import explore, which package store never does.
package store_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/apisessions/apisessions/explore"
	"github.com/apisessions/apisessions/store"
)

// heavyList is the query of issue 12: common status class, and a path prefix past the
// directory the indexes know, so that no part matches and the scan tests every part.
const heavyList = "/api/v1/sessions?status=2xx&path=/api/items/x"

// BenchmarkListUnderScans measures the plain session list (GET /api/v1/sessions, one client,
// every 20 ms) while eight goroutines send heavyList in a loop, from one client address or
// from eight, each waiting as Retry-After asks when refused. "unlimited" lifts the limits on
// heavy queries (the scan deadline stays): the scans then hold every read connection and the
// list waits for one. Reported: the list's latency percentiles and maximum, and how the heavy
// queries were answered: heavy-429, heavy-503-busy (no scan slot, with Retry-After) and
// heavy-503-interrupted (the scan passed its deadline).
func BenchmarkListUnderScans(b *testing.B) {
	s, _ := store.OpenQueryDB(b)
	for _, tc := range []struct {
		name      string
		heavy     int // goroutines sending heavyList
		clients   int // client addresses they use
		unlimited bool
	}{
		{"quiet", 0, 1, false},
		{"one_client", 8, 1, false},
		{"eight_clients", 8, 8, false},
		{"eight_clients_unlimited", 8, 8, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			o := explore.Options{Store: s}
			if tc.unlimited {
				o.HeavyPerClient, o.Scans = 1000, 1000
			}
			h := explore.New(o)
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			var mu sync.Mutex
			answers := map[string]int{}
			for i := range tc.heavy {
				remote := fmt.Sprintf("192.0.2.%d:%d", 1+i%tc.clients, 4000+i)
				wg.Go(func() {
					for ctx.Err() == nil {
						code, retry := serve(h, remote, heavyList)
						answer := "heavy-" + strconv.Itoa(code)
						if code == http.StatusServiceUnavailable && retry > 0 {
							answer += "-busy"
						} else if code == http.StatusServiceUnavailable {
							answer += "-interrupted"
						}
						mu.Lock()
						answers[answer]++
						mu.Unlock()
						select {
						case <-ctx.Done():
						case <-time.After(retry):
						}
					}
				})
			}
			time.Sleep(100 * time.Millisecond) // the heavy queries start
			var lat []time.Duration
			for b.Loop() {
				t0 := time.Now()
				if code, _ := serve(h, "198.51.100.1:5000", "/api/v1/sessions"); code != http.StatusOK {
					b.Fatalf("session list answered %d", code)
				}
				lat = append(lat, time.Since(t0))
				time.Sleep(20 * time.Millisecond)
			}
			cancel()
			wg.Wait()
			slices.Sort(lat)
			ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
			b.ReportMetric(ms(lat[len(lat)/2]), "list-p50-ms")
			b.ReportMetric(ms(lat[len(lat)*99/100]), "list-p99-ms")
			b.ReportMetric(ms(lat[len(lat)-1]), "list-max-ms")
			for _, answer := range []string{"heavy-200", "heavy-429", "heavy-503-busy", "heavy-503-interrupted"} {
				b.ReportMetric(float64(answers[answer]), answer)
			}
		})
	}
}

// serve sends a GET of path from the client address remote and returns the status and the
// Retry-After delay (none: 0).
func serve(h http.Handler, remote, path string) (int, time.Duration) {
	r := httptest.NewRequest(http.MethodGet, path, nil)
	r.RemoteAddr = remote
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	secs, _ := strconv.Atoi(w.Header().Get("Retry-After"))
	return w.Code, time.Duration(secs) * time.Second
}
