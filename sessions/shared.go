package sessions

import (
	"context"
	"hash/maphash"
	"sync/atomic"
	"time"
)

// SharedParts numbers session parts in state that replicas share (state.redis), so that
// every replica names a request's part as one replica would. The engine's part workers call
// ObserveParts for the requests whose streams ended, many at once, off the streams' path;
// Peek calls PeekPart for the inline answer when the local live part cannot answer. An
// answer that is not ok (unreachable, slow, unreadable) leaves the request to the local rule,
// as without shared state.
type SharedParts interface {
	// ObserveParts applies the part rule of the live-part table to the shared state of each
	// update's session for its request, atomically per update and in the order given, and
	// sets each update's State (the state after it) and OK.
	ObserveParts(ctx context.Context, us []PartUpdate)
	// PeekPart reads the shared state of session id without changing it; found is false
	// when the session has none.
	PeekPart(ctx context.Context, id string) (st PartState, found, ok bool)
}

// PartUpdate is one request's update of the shared part state: ID and Q go in, State and OK
// come back.
type PartUpdate struct {
	ID string
	Q  PartQuery
	// JoinSeq, when not 0, is the engine's hint that the request joins its own live part,
	// number JoinSeq of Q's day, which the shared state named and which the request joins by
	// the rule (within the idle timeout of the part's latest request the replica knows of).
	// The shared state may then settle the request without running the rule (it confirms
	// the part and moves its latest request up), and must run the rule when it names another.
	JoinSeq int
	State   PartState
	OK      bool
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

// peekSlots is the size of the table of recent shared reads: enough for the requests in
// flight between a request headers answer and the response headers answer of one server.
const peekSlots = 4096

// peekReadAge bounds how old a kept read may be: the time from a request headers answer to
// the response headers answer of a quick exchange. A slower exchange reads again.
const peekReadAge = time.Second

// peekReads keeps the latest shared read of recent requests. The response headers answer
// groups a request again once its request body arrived; when that names the session the
// request headers answer read, for the same request time and within peekReadAge, the read is
// reused, so that a request makes one read of the shared state on Envoy's path. A slot holds
// one session's read; a newer read replaces it. The age bound keeps a request that carries
// the time of an earlier one (a replayed recording) from reading an old state.
type peekReads struct {
	seed  maphash.Seed
	slots [peekSlots]atomic.Pointer[peekRead]
}

type peekRead struct {
	session string
	at      int64     // the request time, Unix nanoseconds
	read    time.Time // when it was read
	st      PartState
	found   bool
}

func newPeekReads() *peekReads { return &peekReads{seed: maphash.MakeSeed()} }

func (p *peekReads) slot(session string) *atomic.Pointer[peekRead] {
	return &p.slots[maphash.String(p.seed, session)%peekSlots]
}

// get returns the read of session for a request at t, if one is kept.
func (p *peekReads) get(session string, t time.Time) (*peekRead, bool) {
	r := p.slot(session).Load()
	if r == nil || r.session != session || r.at != t.UnixNano() || time.Since(r.read) > peekReadAge {
		return nil, false
	}
	return r, true
}

// put keeps a read of session for a request at t.
func (p *peekReads) put(session string, t time.Time, st PartState, found bool) {
	p.slot(session).Store(&peekRead{session: session, at: t.UnixNano(), read: time.Now(), st: st, found: found})
}

// SharedLinks keeps the stitching links in state that replicas share (state.redis), so that
// a value linked on one replica is followed on every one. The engine's part workers call
// Stitch for the requests whose streams ended, many at once, before their parts; an op that
// is not ok (unreachable, slow, unreadable) is decided on the replica's own links, as without
// shared state.
type SharedLinks interface {
	// Stitch runs the stitch stage (sessions/stitch.go) on the shared links for each op,
	// atomically per op and in the order given, and sets each op's answer and OK.
	Stitch(ctx context.Context, ops []LinkOp)
}

// LinkOp is one exchange's stitch stage: what its request carried and its response issued go
// in, the session that decides comes back.
type LinkOp struct {
	// Carried is the session id of what the request carried; Fallback and Anonymous say
	// whether it is the fallback key, and an anonymous identifier (the fallback, or a
	// first-party cookie known from a response).
	Carried             string
	Fallback, Anonymous bool
	// Issued are the values the response issued, in order.
	Issued []LinkIssued
	// RespFirst is true when a response-side grouping parameter came first in file order.
	RespFirst bool
	// LocalRoot and LocalKind are the replica's own link of the carried value, made while
	// Redis did not answer: followed, and written to the shared links, when those know none.
	LocalRoot, LocalKind string
	// Rotation and Login are sessions.stitch's kinds.
	Rotation, Login bool
	// T is when the request began, DayEnd the Unix second its day ends, Idle the idle timeout.
	T      time.Time
	DayEnd int64
	Idle   time.Duration

	// Session is the session of the request; Decided is 0 when the carried value decided, i
	// when the i-th issued value did; From and Kind say what the request's value continued
	// from; Linked counts the values linked. OK is false when the answer is unknown.
	Session string
	// Learned says, for each issued value, whether it was kept as a value that continues no
	// other session (a first-party cookie a later request may send back).
	Learned []bool
	Decided int
	From    string
	Kind    string
	Linked  int
	OK      bool
}

// LinkIssued is one issued value: its session id and whether it is a first-party cookie
// (candidate) rather than a built-in identifier or a grouping parameter.
type LinkIssued struct {
	Session   string
	Candidate bool
}
