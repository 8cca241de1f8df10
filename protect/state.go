package protect

import (
	"hash/maphash"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// Window condition kinds (stateCond.kind).
const (
	kindSequence    = "sequence"
	kindRequires    = "requires"
	kindEnumeration = "enumeration"
	kindCount       = "count"
)

// stateCond is a rule's condition over past requests. Immutable.
type stateCond struct {
	kind string
	// steps are a sequence's steps, or the one step a requires condition looks for.
	steps    []*rule
	within   int64
	moreThan int
	// by is whose window it is: session, user or ip; of the signal a count reads.
	by, of string
	// param names the request parameter an enumeration counts (else the path's ids).
	param string
}

// Login signal windows: what they count, each kept per subject.
const (
	sigFail     = "login:fail"
	sigUsers    = "login:users"
	sigSessions = "login:sessions"
	sigLast     = "login:last"
)

// windowNeed is the longest window and the most events any rule reads of one signal.
type windowNeed struct {
	limit   int
	horizon int64
}

func (n *windowNeed) widen(moreThan int, within int64) {
	n.limit, n.horizon = max(n.limit, moreThan+1), max(n.horizon, within)
}

// login is the compiled protection.login, with what the rules read of its outcomes.
type login struct {
	routes, methods set
	username        string
	failStatus      []int
	failHeader      string

	// fail is indexed by bySession, byUser, byIP; users by bySession, byIP.
	fail, users [3]windowNeed
	sessions    windowNeed
	// last is true when a rule reads a signal per username: the session's last username is
	// kept, for lastFor (the longest window of those rules).
	last    bool
	lastFor int64
}

const (
	bySession = iota
	byUser
	byIP
)

func byIndex(by string) int {
	switch by {
	case config.ByUser:
		return byUser
	case config.ByIP:
		return byIP
	}
	return bySession
}

// compileMatch compiles the conditions of a step, as compile does a rule's, and adds the
// facts they read to need.
func compileMatch(m config.ProtectionMatch, need *sessions.FactNeeds) *rule {
	r := &rule{
		users: newSet(m.Users), roles: newSet(m.Roles), routes: newSet(m.Routes),
		methods: newSet(m.Methods), flows: newSet(m.Flows), attackTypes: newSet(m.AttackTypes),
		malicious: m.Malicious, ja3: newSet(m.JA3), ja4: newSet(m.JA4),
	}
	for _, k := range m.Keys {
		src, name, _ := strings.Cut(k, ":")
		r.keys = append(r.keys, keyMatch{source: src, name: name})
	}
	for _, s := range m.ClientIPs {
		if p, err := config.ParseIPOrPrefix(s); err == nil {
			r.prefixes = append(r.prefixes, p)
		}
	}
	need.Params = need.Params || !r.users.empty() || !r.roles.empty()
	need.Route = need.Route || !r.routes.empty()
	need.Flows = need.Flows || !r.flows.empty()
	need.Attack = need.Attack || r.malicious || !r.attackTypes.empty()
	need.Client = need.Client || len(r.prefixes) > 0 || !r.ja3.empty() || !r.ja4.empty()
	return r
}

// compileState compiles r's window condition, nil when it has none, adding the facts it
// reads to c's needs and what it reads of login outcomes to c's login.
func compileState(p config.Protection, r config.ProtectionRule, c *compiled) *stateCond {
	var st *stateCond
	switch {
	case len(r.Sequence.Steps) > 0:
		st = &stateCond{kind: kindSequence, within: int64(r.Sequence.Within)}
		for _, m := range r.Sequence.Steps {
			st.steps = append(st.steps, compileMatch(m, &c.need))
		}
	case r.Requires.Within > 0:
		st = &stateCond{kind: kindRequires, within: int64(r.Requires.Within), steps: []*rule{compileMatch(r.Requires.Step, &c.need)}}
	case r.Enumeration.Within > 0:
		e := r.Enumeration
		st = &stateCond{kind: kindEnumeration, within: int64(e.Within), moreThan: e.MoreThan, by: e.By, param: e.Param}
		c.need.Route = true
	case r.Count.Of != "":
		n := r.Count
		st = &stateCond{kind: kindCount, within: int64(n.Within), moreThan: n.MoreThan, by: n.By, of: n.Of}
		if n.Of != config.CountRequests {
			if c.login == nil {
				c.login = compileLogin(p.Login)
			}
			l := c.login
			switch n.Of {
			case config.CountFailedLogins:
				l.fail[byIndex(n.By)].widen(n.MoreThan, st.within)
			case config.CountDistinctUsernames:
				l.users[byIndex(n.By)].widen(n.MoreThan, st.within)
			case config.CountDistinctSessions:
				l.sessions.widen(n.MoreThan, st.within)
			}
			if n.By == config.ByUser {
				l.last, l.lastFor = true, max(l.lastFor, st.within)
			}
			if n.By == config.ByUser {
				// Read per username, not per the session's user parameter.
				return st
			}
		}
	default:
		return nil
	}
	switch st.by {
	case config.ByUser:
		c.need.Params = true
	case config.ByIP:
		c.need.Client = true
	}
	return st
}

func compileLogin(l config.Login) *login {
	return &login{
		routes: newSet(l.Routes), methods: newSet(l.Methods), username: l.Username,
		failStatus: l.Failure.Status, failHeader: l.Failure.Header,
	}
}

// subjectOf is whose window a condition keeps: "session:" and the session id, "user:" and
// the user, "ip:" and the client address; "" when the request has none.
func subjectOf(by string, f *sessions.Facts, buf []byte) []byte {
	switch by {
	case config.ByUser:
		if f.User == "" {
			return buf
		}
		return append(append(buf, "user:"...), f.User...)
	case config.ByIP:
		if f.ClientIP == "" {
			return buf
		}
		return append(append(buf, "ip:"...), f.ClientIP...)
	}
	return append(append(buf, "session:"...), f.Session...)
}

// fires reports whether r, a rule with a window condition, fires for the request, and
// moves the condition's window on. It is called in rule order, only for rules tried.
func (e *Engine) fires(r *rule, in *input, now int64) bool {
	st, f := r.state, in.f
	var sbuf [96]byte
	switch st.kind {
	case kindSequence:
		if !r.matches(in) {
			return false
		}
		var mask uint32
		for i, s := range st.steps {
			if s.matches(in) {
				mask |= 1 << i
			}
		}
		if mask == 0 {
			return false
		}
		fired := false
		k := e.windows.key(r.name, subjectOf(config.BySession, f, sbuf[:0]), "")
		e.windows.with(k, true, func(w *window, _ bool) {
			if w.step > 0 && now-w.start >= st.within {
				w.step = 0
			}
			switch {
			case mask&(1<<w.step) != 0:
				if w.step == 0 {
					w.start = now
				}
				w.step++
				if w.step == len(st.steps) {
					fired, w.step = true, 0
				}
			case mask&1 != 0:
				// The first step again: the sequence starts over from here.
				w.step, w.start = 1, now
			}
		})
		return fired
	case kindRequires:
		k := e.windows.key(r.name, subjectOf(config.BySession, f, sbuf[:0]), "")
		fired := false
		if r.matches(in) {
			seen := false
			e.windows.with(k, false, func(w *window, _ bool) { seen = w.step == 1 && now-w.start < st.within })
			fired = !seen
		}
		if st.steps[0].matches(in) {
			e.windows.with(k, true, func(w *window, _ bool) { w.step, w.start = 1, now })
		}
		return fired
	case kindEnumeration:
		if !r.matches(in) {
			return false
		}
		sub := subjectOf(st.by, f, sbuf[:0])
		if len(sub) == 0 {
			return false
		}
		var id uint64
		if st.param != "" {
			v, ok := e.facts.RequestParam(in.x, st.param)
			if !ok {
				return false
			}
			id = memberOf(e.windows, v)
		} else {
			var ibuf [128]byte
			ids, ok := pathIDs(ibuf[:0], sessions.PathOf(in.x), f.Route)
			if !ok {
				return false
			}
			id = maphash.Bytes(e.windows.seed, ids)
		}
		n := 0
		e.windows.with(e.windows.key(r.name, sub, f.Route), true, func(w *window, _ bool) {
			w.add(id, now, st.within, st.moreThan+1, true)
			n = w.count(now, st.within)
		})
		return n > st.moreThan
	case kindCount:
		if !r.matches(in) {
			return false
		}
		if st.of == config.CountRequests {
			sub := subjectOf(st.by, f, sbuf[:0])
			if len(sub) == 0 {
				return false
			}
			n := 0
			e.windows.with(e.windows.key(r.name, sub, ""), true, func(w *window, _ bool) {
				w.add(0, now, st.within, st.moreThan+1, false)
				n = w.count(now, st.within)
			})
			return n > st.moreThan
		}
		return e.loginCount(st, f, now, sbuf[:0]) > st.moreThan
	}
	return false
}

// loginCount reads a login signal for the request's session, address or last username.
func (e *Engine) loginCount(st *stateCond, f *sessions.Facts, now int64, buf []byte) int {
	var sub []byte
	if st.by == config.ByUser {
		e.windows.with(e.windows.key(sigLast, subjectOf(config.BySession, f, buf), ""), false, func(w *window, _ bool) {
			sub = append(buf[:0], w.last...)
		})
	} else {
		sub = subjectOf(st.by, f, buf)
	}
	if len(sub) == 0 {
		return 0
	}
	sig := sigFail
	switch st.of {
	case config.CountDistinctUsernames:
		sig = sigUsers
	case config.CountDistinctSessions:
		sig = sigSessions
	}
	n := 0
	e.windows.with(e.windows.key(sig, sub, ""), false, func(w *window, _ bool) { n = w.count(now, st.within) })
	return n
}

// pathIDs appends to dst the path segments the route template shows as {id}, each followed
// by '/'; ok is false when the template has none.
func pathIDs(dst []byte, path, route string) ([]byte, bool) {
	found := false
	for route != "" || path != "" {
		var rs, ps string
		rs, route, _ = strings.Cut(route, "/")
		ps, path, _ = strings.Cut(path, "/")
		if rs == "{id}" && ps != "{id}" {
			dst = append(append(dst, ps...), '/')
			found = true
		}
	}
	return dst, found
}

// Outcome learns from a finished exchange: when it is a login (protection.login) that the
// upstream answered, its outcome and username go into the windows the rules read, for the
// requests that follow. session is the session the request was decided under.
func (e *Engine) Outcome(x *traffic.Exchange, session string) {
	l := e.rules.Load().login
	if l == nil || !l.methods.has(x.Method) {
		return
	}
	if v := x.Verdict; !v.DryRun && (v.Action == config.ActionBlock || v.Action == config.ActionRateLimit) {
		return // answered by apisessions: no outcome
	}
	if !l.routes.has(sessions.RouteOf(x)) {
		return
	}
	failed := false
	for _, s := range l.failStatus {
		failed = failed || x.Status == s
	}
	if l.failHeader != "" && !failed {
		for _, h := range x.ResponseHeaders {
			if strings.EqualFold(h.Name, l.failHeader) {
				failed = true
				break
			}
		}
	}
	user := ""
	if l.username != "" {
		if u, ok := e.facts.RequestParam(x, l.username); ok {
			user = "user:" + u
		}
	}
	ip := ""
	if l.fail[byIP].limit > 0 || l.users[byIP].limit > 0 {
		if a := e.facts.ClientIP(x); a != "" {
			ip = "ip:" + a
		}
	}
	sess := "session:" + session
	now := e.now().UnixNano()
	var shared []WindowOp
	add := func(sig, sub string, need windowNeed, member string, distinct bool) {
		if need.limit == 0 || sub == "" || sub == "session:" {
			return
		}
		m := uint64(0)
		if distinct {
			m = memberOf(e.windows, member)
		}
		e.windows.with(e.windows.key(sig, []byte(sub), ""), true, func(w *window, _ bool) {
			w.add(m, now, need.horizon, need.limit, distinct)
		})
		if e.outcomes != nil {
			if !distinct {
				member = strconv.FormatUint(rand.Uint64(), 36)
			}
			shared = append(shared, WindowOp{Kind: WinAdd, What: sig, Subject: sub, Member: member,
				Within: time.Duration(need.horizon), Horizon: time.Duration(need.horizon), Limit: need.limit})
		}
	}
	if failed {
		add(sigFail, sess, l.fail[bySession], "", false)
		add(sigFail, ip, l.fail[byIP], "", false)
		add(sigFail, user, l.fail[byUser], "", false)
	}
	if user != "" {
		add(sigUsers, sess, l.users[bySession], user, true)
		add(sigUsers, ip, l.users[byIP], user, true)
		add(sigSessions, user, l.sessions, sess, true)
		if l.last && session != "" {
			e.windows.with(e.windows.key(sigLast, []byte(sess), ""), true, func(w *window, _ bool) { w.last = user })
			if e.outcomes != nil {
				shared = append(shared, WindowOp{Kind: WinSet, What: sigLast, Subject: sess, Member: user, Horizon: time.Duration(l.lastFor)})
			}
		}
	}
	if len(shared) > 0 {
		e.outcomes.share(shared)
	}
}

// windowStats are the windows held and dropped for room.
func (e *Engine) windowStats() (held int, evicted uint64) {
	return e.windows.size(), e.windows.evicted.Load()
}
