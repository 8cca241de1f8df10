package sessions

import (
	"context"
	"time"
)

// SharedParts numbers session parts in state that replicas share (state.redis), so that
// every replica names a request's part as one replica would. The engine calls it when a
// stream ends (ObservePart) and for the inline answer's header (PeekPart). ok false means
// the shared answer is unknown (unreachable, slow, unreadable): the engine then decides
// locally, as without shared state.
type SharedParts interface {
	// ObservePart applies the part rule of the live-part table to the shared state of
	// session id for the request q, atomically, and returns the state after it.
	ObservePart(ctx context.Context, id string, q PartQuery) (st PartState, ok bool)
	// PeekPart reads the shared state of session id without changing it; found is false
	// when the session has none.
	PeekPart(ctx context.Context, id string) (st PartState, found, ok bool)
}

// PartQuery is one request as the part rule sees it.
type PartQuery struct {
	// T is when the request began.
	T time.Time
	// Day is T's day in sessions.day_boundary and DayEnd the Unix second that day ends.
	Day    string
	DayEnd int64
	// Idle is sessions.idle_timeout; 0 splits by day only.
	Idle time.Duration
}

// PartState is the shared state of a session's current part.
type PartState struct {
	// Day and Seq name the part (partName); DayEnd is the Unix second the day ends.
	Day    string
	DayEnd int64
	Seq    int
	// LastSeen is the time of the part's latest request, in nanoseconds from DayEnd.
	LastSeen int64
}

// name is the part's name.
func (st *PartState) name() string { return partName(st.Day, st.Seq) }

// peekShared names the part a request at t would join given the shared state st (found
// false: none), by the rule table.peek applies to a local part.
func (r *partRules) peekShared(st *PartState, found bool, t time.Time) string {
	if found && r.endAt(st.DayEnd, st.LastSeen, t) == "" {
		return st.name()
	}
	day, _ := r.dayOf(t)
	if found && st.Day == day {
		return partName(day, st.Seq+1)
	}
	return partName(day, 1)
}

// sharedQuery is the PartQuery of a request at t.
func (r *partRules) sharedQuery(t time.Time) PartQuery {
	day, end := r.dayOf(t)
	return PartQuery{T: t, Day: day, DayEnd: end.Unix(), Idle: r.idle}
}
