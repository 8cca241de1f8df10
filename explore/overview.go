package explore

import (
	"net/http"
	"time"

	"github.com/apisessions/apisessions/store"
)

// overviewParams are the query parameters of GET /api/v1/overview.
var overviewParams = []string{"from", "to", "sessions_by"}

const (
	// defaultOverview is the period of an overview without from: the day before to.
	defaultOverview = 24 * time.Hour
	// maxOverview bounds the period of an overview; its cost grows with the requests in it.
	maxOverview = 366 * 24 * time.Hour
)

// overview answers GET /api/v1/overview: the store's overview of [from, to), by default the
// last 24 hours. It is a heavy query (limit.go): it reads every request row of the period.
func (h *Handler) overview(w http.ResponseWriter, r *http.Request) error {
	q, err := parseQuery(r.URL.Query(), overviewParams, 1)
	if err != nil {
		return err
	}
	from, to := q.filter.From, q.filter.To
	if to.IsZero() {
		to = h.now()
	}
	if from.IsZero() {
		from = to.Add(-defaultOverview)
	}
	if !from.Before(to) {
		return bad("from (%s) is not before to (%s); give a period, e.g. from=2026-11-22T00:00:00Z&to=2026-11-23T00:00:00Z",
			from.Format(time.RFC3339Nano), to.Format(time.RFC3339Nano))
	}
	if to.Sub(from) > maxOverview {
		return bad("the period from %s to %s is longer than 366 days; give a shorter one",
			from.Format(time.RFC3339Nano), to.Format(time.RFC3339Nano))
	}
	by := store.SessionsBy(r.URL.Query().Get("sessions_by"))
	switch by {
	case "", store.ByMalicious, store.ByRisk:
	default:
		return bad("sessions_by %s is not an order of sessions; use sessions_by=%s or sessions_by=%s",
			quote(string(by)), store.ByMalicious, store.ByRisk)
	}
	release, err := h.heavy.acquire(r.Context(), clientOf(r), false)
	if err != nil {
		return err
	}
	defer release()
	o, err := h.store.Overview(r.Context(), store.OverviewQuery{From: from, To: to, SessionsBy: by})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, o)
	return nil
}
