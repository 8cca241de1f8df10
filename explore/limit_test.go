package explore

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"testing/synctest"
	"time"
)

// statusOf is the HTTP status and Retry-After an acquire error is answered with.
func statusOf(t *testing.T, err error) (int, int) {
	t.Helper()
	var ae *apiError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v is not an API answer", err)
	}
	return ae.status, ae.retryAfter
}

func TestHeavyPerClient(t *testing.T) {
	t.Parallel()
	h := newHeavy(2, 4, 500*time.Millisecond)
	ctx := context.Background()
	var releases []func()
	for range 2 {
		release, err := h.acquire(ctx, "192.0.2.1", false)
		if err != nil {
			t.Fatalf("heavy query within the client's limit: %v", err)
		}
		releases = append(releases, release)
	}
	_, err := h.acquire(ctx, "192.0.2.1", true)
	if status, retry := statusOf(t, err); status != http.StatusTooManyRequests || retry != 1 {
		t.Errorf("third heavy query of one client answered %d, Retry-After %d; want 429, 1", status, retry)
	}
	other, err := h.acquire(ctx, "192.0.2.2", true)
	if err != nil {
		t.Fatalf("another client was refused: %v", err)
	}
	other()
	releases[0]()
	again, err := h.acquire(ctx, "192.0.2.1", false)
	if err != nil {
		t.Fatalf("a client that ended a query was refused: %v", err)
	}
	again()
	releases[1]()
	if len(h.running) != 0 {
		t.Errorf("counts left after every query ended: %v", h.running)
	}
}

func TestHeavyScanSlots(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		h := newHeavy(2, 1, time.Second)
		ctx := context.Background()
		first, err := h.acquire(ctx, "192.0.2.1", true)
		if err != nil {
			t.Fatalf("first scan: %v", err)
		}
		// A CSV export takes no scan slot.
		export, err := h.acquire(ctx, "192.0.2.2", false)
		if err != nil {
			t.Fatalf("export beside a scan: %v", err)
		}
		export()

		start := time.Now()
		_, err = h.acquire(ctx, "192.0.2.2", true)
		if status, retry := statusOf(t, err); status != http.StatusServiceUnavailable || retry != 1 {
			t.Errorf("scan without a slot answered %d, Retry-After %d; want 503, 1", status, retry)
		}
		if waited := time.Since(start); waited != time.Second {
			t.Errorf("scan without a slot waited %s; want the wait bound, 1s", waited)
		}

		got := make(chan error, 1)
		go func() {
			release, err := h.acquire(ctx, "192.0.2.2", true)
			if err == nil {
				release()
			}
			got <- err
		}()
		synctest.Wait()
		time.Sleep(500 * time.Millisecond)
		first()
		if err := <-got; err != nil {
			t.Errorf("scan waiting while a slot freed: %v", err)
		}

		cctx, cancel := context.WithCancel(ctx)
		hold, _ := h.acquire(ctx, "192.0.2.3", true)
		go func() {
			_, err := h.acquire(cctx, "192.0.2.4", true)
			got <- err
		}()
		synctest.Wait()
		cancel()
		if err := <-got; !errors.Is(err, context.Canceled) {
			t.Errorf("scan whose client left while it waited: %v; want context.Canceled", err)
		}
		hold()
		if len(h.running) != 0 {
			t.Errorf("counts left after every query ended: %v", h.running)
		}
	})
}

func TestClientOf(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, remote, want string }{
		{"IPv4 with port", "192.0.2.1:5000", "192.0.2.1"},
		{"IPv6 with port", "[2001:db8::1]:5000", "2001:db8::1"},
		{"no port", "192.0.2.1", "192.0.2.1"},
	} {
		r, _ := http.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = tc.remote
		if got := clientOf(r); got != tc.want {
			t.Errorf("%s: clientOf(%q) = %q; want %q", tc.name, tc.remote, got, tc.want)
		}
	}
}
