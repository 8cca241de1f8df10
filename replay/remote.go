package replay

import (
	"context"
	"fmt"

	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// Server is a running apisessions that Remote sends exchanges to (extproc/remote.Conn).
type Server interface {
	// Send plays x as one ext_proc stream and returns the session, part and key the server
	// named in its answers; session is "" when it named none.
	Send(ctx context.Context, x *traffic.Exchange) (session, part string, key record.Key, err error)
}

// Remote sends each exchange, in the given order (see Order) and one at a time (a login must be seen before the
// requests that use its token), to srv and returns the parts the server named. The server
// writes the records to its own sinks, which are authoritative: a part here counts the
// requests whose answers named it, knows no user or flows, and a key that only a response body
// reveals (a login's token) is not in the answers, so such a request counts under the part its
// headers pointed to.
func Remote(ctx context.Context, xs []traffic.Exchange, srv Server, o Order) (*Result, error) {
	order := replayOrder(xs, o)
	parts := map[string]*record.Session{}
	res := &Result{}
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
