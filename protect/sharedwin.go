package protect

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions"
)

// Window operations (WindowOp.Kind).
const (
	// WinAdd adds Member (a new event when Distinct is false) and answers N, the events
	// within Within.
	WinAdd = iota + 1
	// WinCount answers N without adding; with Via, the window is the one of the subject Via
	// holds (the username a session last tried).
	WinCount
	// WinSequence moves a sequence on with the steps Mask says the request matches; Fired
	// comes back when it completed.
	WinSequence
	// WinRequires checks (Check) that a step came within Within, and records the request as
	// the step (Step).
	WinRequires
	// WinSet keeps Subject as the value of the window (the username a session last tried).
	WinSet
)

// WindowOp is one operation on a sliding window held in the shared state, sent with the
// request's one round trip (or, for login outcomes, off the request's path). What and Subject
// (and Route) name the window; the shared state hashes them into its key.
type WindowOp struct {
	Kind                 int
	What, Subject, Route string
	// Via names, for WinCount, the window (What: sigLast) that holds the subject to count;
	// What is then the signal counted.
	Via string
	// Member is the distinct value added; "" for a new event.
	Member          string
	Within, Horizon time.Duration
	Limit           int
	Mask            uint32
	Steps           int
	Check, Step     bool

	// Answers.
	N     int
	Fired bool
}

// SharedWindows is shared state that also holds the sliding windows (implemented by
// *state.Protection).
type SharedWindows interface {
	// DecideWindows is Shared.Decide with window operations in the same round trip; ok
	// false: nothing is known (Redis down or slow).
	DecideWindows(ctx context.Context, session string, readPart bool, takes []Take, ops []WindowOp) (st sessions.PartState, found, ok bool)
	// Record applies window operations whose answers nobody waits for.
	Record(ctx context.Context, ops []WindowOp) error
}

// outcomeQueue bounds the login outcomes waiting to be written to the shared state.
const outcomeQueue = 1024

// sharedOutcomes writes login outcomes to the shared state off the request's path.
type sharedOutcomes struct {
	q       chan []WindowOp
	dropped atomic.Uint64
}

func (e *Engine) startOutcomes(ctx context.Context, sw SharedWindows, log *slog.Logger) {
	so := &sharedOutcomes{q: make(chan []WindowOp, outcomeQueue)}
	e.outcomes = so
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case ops := <-so.q:
				if err := sw.Record(ctx, ops); err != nil {
					e.sharedDown.Add(1)
					log.Debug("login outcome not shared", "error", err.Error())
				}
			}
		}
	}()
}

// share queues ops for the shared state; a full queue drops them, counted as a local decision.
func (so *sharedOutcomes) share(ops []WindowOp) {
	select {
	case so.q <- ops:
	default:
		so.dropped.Add(1)
	}
}

// windowOp plans the shared operation of r, a rule with a window condition, for the request;
// ok is false when the request does not concern the rule's window.
func (e *Engine) windowOp(r *rule, in *input) (op WindowOp, ok bool) {
	st, f := r.state, in.f
	op.What, op.Within, op.Horizon = r.name, time.Duration(st.within), time.Duration(st.within)
	session := "session:" + f.Session
	switch st.kind {
	case kindSequence:
		if !r.matches(in) {
			return op, false
		}
		for i, s := range st.steps {
			if s.matches(in) {
				op.Mask |= 1 << i
			}
		}
		op.Kind, op.Subject, op.Steps = WinSequence, session, len(st.steps)
		return op, op.Mask != 0
	case kindRequires:
		op.Kind, op.Subject = WinRequires, session
		op.Check, op.Step = r.matches(in), st.steps[0].matches(in)
		return op, op.Check || op.Step
	case kindEnumeration:
		if !r.matches(in) {
			return op, false
		}
		sub := subjectOf(st.by, f, nil)
		if len(sub) == 0 {
			return op, false
		}
		var id string
		if st.param != "" {
			v, ok := e.facts.RequestParam(in.x, st.param)
			if !ok {
				return op, false
			}
			id = v
		} else {
			ids, ok := pathIDs(nil, sessions.PathOf(in.x), f.Route)
			if !ok {
				return op, false
			}
			id = string(ids)
		}
		op.Kind, op.Subject, op.Route, op.Member, op.Limit = WinAdd, string(sub), f.Route, id, st.moreThan+1
		return op, true
	case kindCount:
		if !r.matches(in) {
			return op, false
		}
		if st.of == config.CountRequests {
			sub := subjectOf(st.by, f, nil)
			if len(sub) == 0 {
				return op, false
			}
			op.Kind, op.Subject, op.Limit = WinAdd, string(sub), st.moreThan+1
			op.Member = strconv.FormatUint(rand.Uint64(), 36)
			return op, true
		}
		op.Kind, op.What = WinCount, loginSignal(st.of)
		if st.by == config.ByUser {
			op.Via = session
			return op, f.Session != ""
		}
		sub := subjectOf(st.by, f, nil)
		op.Subject = string(sub)
		return op, len(sub) > 0
	}
	return op, false
}

// fired reports what the answer of op says of r.
func (r *rule) firedBy(op *WindowOp) bool {
	switch op.Kind {
	case WinSequence, WinRequires:
		return op.Fired
	}
	return op.N > r.state.moreThan
}

func loginSignal(of string) string {
	switch of {
	case config.CountDistinctUsernames:
		return sigUsers
	case config.CountDistinctSessions:
		return sigSessions
	}
	return sigFail
}
