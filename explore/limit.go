package explore

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"sync"
	"time"
)

// heavy bounds the heavy queries that run at once: the scans (store.ListPlan.Scans), the
// overviews and the CSV exports, whose work no index bounds by a page. Each client address
// runs at most perClient of them, so that one client cannot occupy the others' share; and at most
// cap(scans) scans run in all, so that a read connection always remains for the other
// queries (a scan keeps one busy until it ends; an export only while it reads a page).
type heavy struct {
	perClient int
	// wait bounds how long a scan waits for a slot; retryAfter is it in whole seconds, rounded
	// up, the Retry-After of a refusal.
	wait       time.Duration
	retryAfter int
	scans      chan struct{}

	mu sync.Mutex
	// running counts each client's heavy queries, those waiting for a slot included.
	running map[string]int
}

func newHeavy(perClient, scans int, wait time.Duration) *heavy {
	return &heavy{perClient: perClient, wait: wait, retryAfter: int(math.Ceil(wait.Seconds())),
		scans: make(chan struct{}, scans), running: map[string]int{}}
}

// acquire admits one heavy query of client (a scan when scan is true) and returns the func
// that ends it. It answers 429 when the client runs perClient heavy queries already and 503
// when no scan slot frees up within wait, both with Retry-After.
func (h *heavy) acquire(ctx context.Context, client string, scan bool) (release func(), err error) {
	h.mu.Lock()
	if h.running[client] >= h.perClient {
		h.mu.Unlock()
		return nil, &apiError{status: http.StatusTooManyRequests, retryAfter: h.retryAfter, msg: fmt.Sprintf(
			"this client already runs as many heavy queries (lists that scan, CSV exports, overviews) as it may at once, %d; "+
				"retry when one has finished", h.perClient)}
	}
	h.running[client]++
	h.mu.Unlock()
	done := func() {
		h.mu.Lock()
		if h.running[client]--; h.running[client] == 0 {
			delete(h.running, client)
		}
		h.mu.Unlock()
	}
	if !scan {
		return done, nil
	}
	release = func() { <-h.scans; done() }
	select {
	case h.scans <- struct{}{}:
		return release, nil
	default:
	}
	t := time.NewTimer(h.wait)
	defer t.Stop()
	select {
	case h.scans <- struct{}{}:
		return release, nil
	case <-t.C:
		done()
		return nil, &apiError{status: http.StatusServiceUnavailable, retryAfter: h.retryAfter,
			msg: "other clients' scans occupy the server; retry shortly, or add a filter the indexes answer (user, ip, request_id)"}
	case <-ctx.Done():
		done()
		return nil, ctx.Err()
	}
}

// clientOf is the client address of r: its remote address without the port.
func clientOf(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
