package replay

import (
	"context"
	"fmt"
	"time"

	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// Server is a running apisessions that Remote sends exchanges to (extproc/remote.Conn).
type Server interface {
	// Send plays x as one ext_proc stream and returns the session, part and key the server
	// named in its answers; session is "" when it named none.
	Send(ctx context.Context, x *traffic.Exchange) (session, part string, key record.Key, err error)
}

// PartReader reads what a running server stored of a part (its explore API).
type PartReader interface {
	// StoredPart returns the part's record as stored; found is false while the store holds
	// none of its requests.
	StoredPart(ctx context.Context, session, part string) (rec *record.Session, found bool, err error)
}

// Remote sends each exchange, in the given order (see Order) and one at a time (a login must be seen before the
// requests that use its token), to srv and returns the parts the server named. The server
// writes the records to its own sinks, which are authoritative: a part here counts the
// requests whose answers named it, knows no user or flows, and a key that only a response body
// reveals (a login's token) is not in the answers, so such a request counts under the part its
// headers pointed to. The parts it returns know requests and keys only (Result.AnswersOnly);
// Stored replaces them with what the server stored.
func Remote(ctx context.Context, xs []traffic.Exchange, srv Server, o Order) (*Result, error) {
	order := replayOrder(xs, o)
	parts := map[string]*record.Session{}
	res := &Result{AnswersOnly: true}
	for _, i := range order {
		x := &xs[i]
		session, part, key, err := srv.Send(ctx, x)
		if err != nil {
			return nil, fmt.Errorf("replay: request %d (%s): %w", i+1, x.RequestID, err)
		}
		res.Requests++
		if session == "" {
			continue
		}
		k := session + "/" + part
		s := parts[k]
		if s == nil {
			s = &record.Session{Kind: record.KindSession, Session: session, Part: part, Key: key,
				FirstSeen: record.At(x.Start), LastSeen: record.At(x.Start)}
			parts[k] = s
		}
		s.Requests++
		if x.Start.Before(s.FirstSeen.Time) {
			s.FirstSeen = record.At(x.Start)
		}
		if x.Start.After(s.LastSeen.Time) {
			s.LastSeen = record.At(x.Start)
		}
	}
	for _, s := range parts {
		res.Sessions = append(res.Sessions, s)
	}
	sortSessions(res.Sessions)
	return res, nil
}

// StoredPoll is how often Stored asks the server again while its store catches up.
const StoredPoll = 200 * time.Millisecond

// Stored replaces the parts of a Remote result with the records the server stored of them:
// users, roles, flows, statuses and counts as the store has them. The server's sinks write in
// batches, so it asks again until the parts hold at least the requests sent to them, for at
// most wait. It returns how many parts the store did not hold by then; those keep what the
// answers said (and the result stays AnswersOnly).
func Stored(ctx context.Context, res *Result, r PartReader, wait time.Duration) (missing int, err error) {
	sent := 0
	for _, s := range res.Sessions {
		sent += s.Requests
	}
	deadline := time.Now().Add(wait)
	stored := make([]*record.Session, len(res.Sessions))
	for {
		n := 0
		missing = 0
		for i, s := range res.Sessions {
			rec, found, err := r.StoredPart(ctx, s.Session, s.Part)
			if err != nil {
				return 0, fmt.Errorf("replay: read part %s/%s from the server: %w", s.Session, s.Part, err)
			}
			if !found {
				missing++
				continue
			}
			stored[i] = rec
			n += rec.Requests
		}
		if n >= sent && missing == 0 || !time.Now().Before(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(StoredPoll):
		}
	}
	for i, rec := range stored {
		if rec != nil {
			res.Sessions[i] = rec
		}
	}
	res.AnswersOnly = missing > 0
	sortSessions(res.Sessions)
	return missing, nil
}
