package protect

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/protect/manual"
	"github.com/apisessions/apisessions/sessions"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// Manual blocks answer with this status and body.
const (
	manualStatus = 403
	manualBody   = "blocked\n"
)

// Rule names of manual blocks in verdicts.
const (
	RuleManualSession = "manual:session"
	RuleManualUser    = "manual:user"
)

// MaxBlockFor bounds how long a manual block lasts.
const MaxBlockFor = manual.MaxFor

// Engine decides what happens to each request at its request headers: manual blocks first,
// then the rules in file order. It is safe for concurrent use.
type Engine struct {
	facts   *sessions.Engine
	now     func() time.Time
	rules   atomic.Pointer[compiled]
	buckets *table[bucket]
	blocks  *manual.Table
	// windows hold the sliding windows of sequence, requires, enumeration and count
	// conditions and of login outcomes.
	windows *table[window]

	countsMu sync.Mutex
	counts   map[[2]string]*Counts

	manualFired, manualDry atomic.Uint64
	// shared, when set (Share), holds buckets and blocks in Redis; sharedDown counts the
	// requests whose buckets the replica decided alone because Redis did not answer.
	shared     Shared
	sharedDown atomic.Uint64
	// sharedWin, when the shared state holds windows too, takes their operations in the
	// request's round trip; outcomes writes login outcomes to it off the request's path.
	sharedWin SharedWindows
	outcomes  *sharedOutcomes
}

// New compiles cfg's rules; facts groups requests and reads what rules match on. now is the
// clock (nil: time.Now).
func New(cfg config.Protection, facts *sessions.Engine, now func() time.Time) *Engine {
	if now == nil {
		now = time.Now
	}
	e := &Engine{
		facts:   facts,
		now:     now,
		buckets: newTable[bucket](max(cfg.MaxBuckets, 1)),
		blocks:  manual.NewTable(max(cfg.MaxBlocks, 1)),
		windows: newTable[window](max(cfg.MaxWindows, 1)),
		counts:  map[[2]string]*Counts{},
	}
	e.rules.Store(compile(cfg, e.countsOf))
	return e
}

// Reload replaces the rules. Buckets and blocks stay; the table bounds are fixed at start.
func (e *Engine) Reload(cfg config.Protection) { e.rules.Store(compile(cfg, e.countsOf)) }

func (e *Engine) countsOf(name, action string) *Counts {
	e.countsMu.Lock()
	defer e.countsMu.Unlock()
	k := [2]string{name, action}
	c := e.counts[k]
	if c == nil {
		c = &Counts{}
		e.counts[k] = c
	}
	return c
}

// Active reports whether a rule is configured or a manual block is held.
func (e *Engine) Active() bool { return len(e.rules.Load().rules) > 0 || e.blocks.N.Load() > 0 }

// Decide groups x as Peek does and decides its fate into d; enforce is false when Envoy does
// not wait for answers (observability mode), and then every verdict is recorded as dry run.
// It returns the grouping, so that the caller need not group the request again. With shared
// state the part read the grouping may need and the rate-limit buckets go to Redis in one
// round trip; when Redis does not answer, the replica's own buckets decide. withPart false
// says the caller does not use the part: it is then named from the engine's own state, empty
// when that holds none, and Redis is read only for the rules.
func (e *Engine) Decide(x *traffic.Exchange, enforce, withPart bool, d *traffic.Decision) (session, part string, key record.Key) {
	// The grouping is the deepest call of a stream; it runs from this small frame, and the
	// rules from decide's large one once it returned. Called from the large frame, it took
	// the stream's goroutine past its first stack size, and copying the stack of every stream
	// cost more than the rules themselves.
	c := e.rules.Load()
	need := c.need
	if e.blocks.NUsers.Load() > 0 {
		need.Params = true
	}
	var f sessions.Facts
	var t time.Time
	readPart := false
	if e.shared != nil {
		t, readPart = e.facts.PeekFactsLocal(x, need, &f)
		readPart = readPart && withPart
	} else {
		e.facts.PeekFacts(x, need, &f)
	}
	return e.decide(c, x, enforce, d, &f, t, readPart)
}

// decide is Decide once the request is grouped into f (t and readPart as PeekFactsLocal
// returned them).
//
//go:noinline
func (e *Engine) decide(c *compiled, x *traffic.Exchange, enforce bool, d *traffic.Decision, f *sessions.Facts, t time.Time, readPart bool) (session, part string, key record.Key) {
	now := e.now()
	if e.blocks.N.Load() > 0 {
		if b, ok := e.blocks.Get(manual.KindSession, f.Session, now); ok {
			e.manual(d, RuleManualSession, enforce, b)
			return e.named(f, t, readPart)
		}
		if b, ok := e.blocks.Get(manual.KindUser, f.User, now); ok {
			e.manual(d, RuleManualUser, enforce, b)
			return e.named(f, t, readPart)
		}
	}
	// The rules that match, up to the first that decides without a bucket.
	in := input{x: x, f: f}
	var buf [8]*rule
	matched := buf[:0]
	nowNS := now.UnixNano()
	// With shared windows, a window rule's answer comes with the round trip: its operation
	// is planned here (opOf: its index in ops), and it does not stop the matching.
	var ops []WindowOp
	var opBuf [8]int
	opOf := opBuf[:0]
	for _, r := range c.rules {
		switch {
		case r.state != nil && e.sharedWin != nil:
			op, ok := e.windowOp(r, &in)
			if !ok {
				continue
			}
			ops = append(ops, op)
			matched, opOf = append(matched, r), append(opOf, len(ops)-1)
			continue
		case r.state != nil:
			if !e.fires(r, &in, nowNS) {
				continue
			}
		case !r.matches(&in):
			continue
		}
		matched, opOf = append(matched, r), append(opOf, -1)
		if r.perNS == 0 && !r.dryRun {
			break
		}
	}
	var takes []Take
	local := true
	if e.sharedWin != nil && len(ops) > 0 {
		for _, r := range matched {
			if r.perNS > 0 {
				if sub := r.subject(f, nil); len(sub) > 0 {
					takes = append(takes, Take{Rule: r.name, Subject: string(sub), Route: r.routeOf(f), PerSecond: r.perNS * float64(time.Second), Burst: r.burst})
				}
			}
		}
		st, found, ok := e.sharedWin.DecideWindows(context.Background(), f.Session, readPart, takes, ops)
		if readPart {
			e.facts.NamePart(f, t, st, found, ok)
		}
		if !ok {
			e.sharedDown.Add(1)
		}
		local = !ok
	} else if e.shared != nil {
		for _, r := range matched {
			if r.perNS > 0 {
				if sub := r.subject(f, nil); len(sub) > 0 {
					takes = append(takes, Take{Rule: r.name, Subject: string(sub), Route: r.routeOf(f), PerSecond: r.perNS * float64(time.Second), Burst: r.burst})
				}
			}
		}
		if readPart || len(takes) > 0 {
			st, found, ok := e.shared.Decide(context.Background(), f.Session, readPart, takes)
			if readPart {
				e.facts.NamePart(f, t, st, found, ok)
			}
			if !ok && len(takes) > 0 {
				e.sharedDown.Add(1)
			}
			local = !ok
		}
	}
	var dry *rule
	next := 0
	for i, r := range matched {
		if j := opOf[i]; j >= 0 {
			// A shared window rule: its answer, or, when Redis did not answer, the
			// replica's own windows.
			if local && !e.fires(r, &in, nowNS) || !local && !r.firedBy(&ops[j]) {
				continue
			}
		}
		retry := 0
		if r.perNS > 0 {
			var ok bool
			var left float64
			var sbuf [96]byte
			sub := r.subject(f, sbuf[:0])
			switch {
			case len(sub) == 0:
				continue // no user or no address: nothing to follow
			case local:
				ok, left = take(e.buckets, e.buckets.key(r.name, sub, r.routeOf(f)), nowNS, r.perNS, r.burst)
			default:
				ok, left = takes[next].OK, takes[next].Left
				next++
			}
			if ok {
				continue
			}
			retry = r.retryAfter(left)
		}
		if r.dryRun {
			r.n.DryRun.Add(1)
			if dry == nil {
				dry = r
			}
			continue
		}
		d.Verdict = traffic.Verdict{Action: r.action, Rule: r.name, DryRun: !enforce}
		if !enforce {
			r.n.DryRun.Add(1)
			return f.Session, f.Part, f.Key
		}
		r.n.Fired.Add(1)
		d.Status, d.Body, d.Headers, d.RetryAfter, d.TagHeader = r.status, r.body, r.headers, retry, r.tagHeader
		return f.Session, f.Part, f.Key
	}
	if dry != nil {
		d.Verdict = traffic.Verdict{Action: dry.action, Rule: dry.name, DryRun: true}
	}
	return f.Session, f.Part, f.Key
}

// named returns the grouping of a request decided before any round trip, naming its part from
// the engine's own state when it needed the shared one: a blocked request does not wait.
func (e *Engine) named(f *sessions.Facts, t time.Time, readPart bool) (string, string, record.Key) {
	if readPart {
		e.facts.NamePart(f, t, sessions.PartState{}, false, false)
	}
	return f.Session, f.Part, f.Key
}

func (e *Engine) manual(d *traffic.Decision, rule string, enforce bool, _ manual.Block) {
	d.Verdict = traffic.Verdict{Action: config.ActionBlock, Rule: rule, DryRun: !enforce}
	if !enforce {
		e.manualDry.Add(1)
		return
	}
	e.manualFired.Add(1)
	d.Status, d.Body = manualStatus, manualBody
}

// Block blocks a session or a user (kind) for the duration from now, on behalf of by (an API
// token's name), and records it in the audit log.
func (e *Engine) Block(kind, id string, dur time.Duration, reason, by string) (manual.Block, error) {
	if kind != manual.KindSession && kind != manual.KindUser {
		return manual.Block{}, fmt.Errorf("kind %q is neither session nor user", kind)
	}
	if id == "" {
		return manual.Block{}, fmt.Errorf("the %s is empty", kind)
	}
	if dur <= 0 || dur > MaxBlockFor {
		return manual.Block{}, fmt.Errorf("the duration must be more than 0 and at most %s", MaxBlockFor)
	}
	now := e.now()
	b := manual.Block{Kind: kind, ID: id, Until: now.Add(dur).UTC(), Reason: reason, By: by, At: now.UTC()}
	if err := e.blocks.Set(b, now); err != nil {
		return manual.Block{}, err
	}
	entry := manual.AuditEntry{At: b.At, By: by, Action: "block", Kind: kind, ID: id, Until: b.Until, Reason: reason}
	e.blocks.Record(entry)
	if e.shared != nil {
		if err := e.shared.PutBlock(context.Background(), b, entry); err != nil {
			// This replica blocks; the others learn of it only from the shared state.
			return b, fmt.Errorf("%w: %v", manual.ErrNotShared, err)
		}
	}
	return b, nil
}

// Unblock lifts the block of a session or a user; false when none was in force. The attempt
// is audited either way. With shared state the block is lifted for every replica; err is
// manual.ErrNotShared when Redis did not take it.
func (e *Engine) Unblock(kind, id, by string) (bool, error) {
	now := e.now()
	b, ok := e.blocks.Remove(kind, id)
	ok = ok && now.Before(b.Until)
	entry := manual.AuditEntry{At: now.UTC(), By: by, Action: "unblock", Kind: kind, ID: id}
	e.blocks.Record(entry)
	if e.shared != nil {
		if err := e.shared.DeleteBlock(context.Background(), kind, id, entry); err != nil {
			return ok, fmt.Errorf("%w: %v", manual.ErrNotShared, err)
		}
	}
	return ok, nil
}

// Blocked returns the block in force for a session or a user.
func (e *Engine) Blocked(kind, id string) (manual.Block, bool) {
	return e.blocks.Get(kind, id, e.now())
}

// Blocks lists the blocks in force, sessions first, each kind by id.
func (e *Engine) Blocks() []manual.Block {
	bs := e.blocks.List(e.now())
	// Sessions first, then users, each by id.
	kind := func(b manual.Block) int {
		if b.Kind == manual.KindSession {
			return 0
		}
		return 1
	}
	slices.SortFunc(bs, func(a, b manual.Block) int {
		return cmp.Or(cmp.Compare(kind(a), kind(b)), cmp.Compare(a.ID, b.ID))
	})
	return bs
}

// Audit returns the manual actions on a session or a user, oldest first: with shared state
// those of every replica, else (or when Redis does not answer) this replica's.
func (e *Engine) Audit(kind, id string) []manual.AuditEntry {
	if e.shared != nil {
		if a, err := e.shared.Audit(context.Background(), kind, id); err == nil {
			return a
		}
	}
	return e.blocks.AuditOf(kind, id)
}

// RuleStats is what one rule did since start.
type RuleStats struct {
	Rule, Action  string
	Fired, DryRun uint64
}

// Stats is the engine's counters.
type Stats struct {
	// Rules are per rule name and action, every rule ever configured since start, sorted.
	Rules []RuleStats
	// Buckets is the rate-limit buckets held; BucketsEvicted those dropped for room.
	Buckets        int
	BucketsEvicted uint64
	// Blocks is the manual blocks held (expired ones until swept).
	Blocks int
	// Local counts the requests whose rate-limit buckets the replica decided alone because
	// the shared state did not answer.
	Local uint64
	// Windows is the sliding windows held (sequence, requires, enumeration, count, login
	// outcomes); WindowsEvicted those dropped for room.
	Windows        int
	WindowsEvicted uint64
}

// Stats returns the counters, manual blocks as the rules manual:session and manual:user
// together under manual.
func (e *Engine) Stats() Stats {
	e.countsMu.Lock()
	s := Stats{Rules: make([]RuleStats, 0, len(e.counts)+1)}
	for k, c := range e.counts {
		s.Rules = append(s.Rules, RuleStats{Rule: k[0], Action: k[1], Fired: c.Fired.Load(), DryRun: c.DryRun.Load()})
	}
	e.countsMu.Unlock()
	s.Rules = append(s.Rules, RuleStats{Rule: "manual", Action: config.ActionBlock, Fired: e.manualFired.Load(), DryRun: e.manualDry.Load()})
	slices.SortFunc(s.Rules, func(a, b RuleStats) int {
		return cmp.Or(cmp.Compare(a.Rule, b.Rule), cmp.Compare(a.Action, b.Action))
	})
	s.Buckets = e.buckets.size()
	s.BucketsEvicted = e.buckets.evicted.Load()
	s.Blocks = int(e.blocks.N.Load())
	s.Local = e.sharedDown.Load()
	if e.outcomes != nil {
		s.Local += e.outcomes.dropped.Load()
	}
	s.Windows, s.WindowsEvicted = e.windowStats()
	return s
}
