package sessions

import (
	"cmp"
	"context"
	"log/slog"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions/extract"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/redact"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// Observe runs one exchange through named stages, each a function below:
//
//	readParams   parameters: grouping value, exported values, user, role, secrets
//	newRequest   the request record
//	enrich       flows, redaction, route, attack verdict
//	updatePart   the part's live state
//	emitRecords  session records, then the request record
//
// Peek shares the first stage (readParams reading grouping parameters only) and the grouping
// that follows it (resolveRest), so the grouping rule is written once.

// maxSecrets bounds the hashed values one exchange remembers for scrubbing; with
// max_parameters at most 1000 the bound is never reached by configured parameters alone.
const maxSecrets = 1024

// Observe processes one exchange at its end: extracts the parameters, groups the request,
// tags its flows, reads attack verdicts, updates its part (ending the previous part when the
// day changed or the idle time passed), and emits the request record. An exchange for a host
// out of scope produces nothing.
func (e *Engine) Observe(x *traffic.Exchange) { e.observe(x) }

// observe is Observe; it returns the request record it emitted, nil when the host is out of
// scope, for the package's tests to read.
func (e *Engine) observe(x *traffic.Exchange) *record.Request {
	s := e.snap.Load()
	if !s.inScope(x.Host) {
		e.outOfScope.Add(1)
		return nil
	}
	v := extract.NewView(x, e.cache, s.maxBody)
	defer v.Release()
	v.CountErrors(&e.parseErrors)

	var secretsBuf [8]redact.Secret
	var ps params
	var secrets []redact.Secret
	var st stitching
	var car carried
	var issued []issuedValue
	c := s.resolveClient(x)
	t := startTime(x, e.now)
	// With shared links the part worker stitches, in the same batch as the part; the request
	// is queued under the session of what it carried.
	deferred := false
	if hv := x.Handover; hv != nil {
		ps = handoverParams(e.hash, hv)
		c.ip, c.ja3, c.ja4 = cmp.Or(hv.ClientIP, c.ip), hv.JA3, hv.JA4
		st = stitching{session: ps.session, key: ps.key}
	} else {
		ps, secrets = s.readParams(v, e.hash, reading{response: x.ResponseSeen}, secretsBuf[:0])
		car = e.carriedOf(s, v, &c, &ps, t, true)
		issued = ps.issued
		if x.ResponseSeen && s.builtin {
			issued = s.issuedBuiltin(v, e.hash, issued)
		}
		deferred = e.slinks != nil && e.work != nil && !e.closed.Load() && s.linking()
		if deferred {
			st = stitching{session: car.session, key: car.key}
		} else {
			st = e.stitch(s, car, issued, ps.respFirst, t, false)
		}
	}
	ps.session, ps.key = st.session, st.key
	rec := newRequest(x, t, &c, &ps)
	if s.claimOnFailure && rec.Status >= 400 {
		// A refused login names whoever the client typed: a claim, not the session's user.
		rec.ClaimedUser, rec.ClaimedRole, rec.User, rec.Role = rec.User, rec.Role, "", ""
	}
	if vd := x.Verdict; vd.Action != "" {
		rec.Protection = &record.Verdict{Action: vd.Action, Rule: vd.Rule, DryRun: vd.DryRun}
	}
	if st.from != "" {
		rec.ContinuedFrom = &record.Continued{Session: st.from, Kind: st.kind}
	}
	rec.Linked = st.linked
	flows := e.enrich(s, v, x, rec, secrets)
	if e.closed.Load() {
		// After Close no part may open that nothing would end: name the part, keep no state.
		rec.Part = e.parts.peek(rec.Session, t, &s.rules)
		e.observed.Add(1)
		e.emit.Emit(rec)
		return rec
	}
	h := newHit(rec, flows, t)
	h.points, h.model = s.rules.risk.Points(rec), s.rules.risk
	if e.work != nil {
		j := partJob{rec: rec, h: h, rules: &s.rules}
		if deferred {
			j.stitch = &stitchIn{s: s, car: car, issued: slices.Clone(issued), respFirst: ps.respFirst}
		}
		if e.work.offer(j) {
			return rec // a part worker names the part and emits the records
		}
		if deferred {
			e.links.failOpen.Add(1)
			applyStitch(rec, &h, e.stitch(s, car, issued, ps.respFirst, t, false))
		}
	}
	var buf [2]record.Record
	var finals []record.Record
	rec.Part, finals = e.parts.observe(rec.Session, &h, &s.rules, buf[:0])
	e.emitRecords(finals, rec)
	return rec
}

// Peek groups an exchange for inline mode's answers without changing any state: by its
// request side at request time, and once the response is seen (ResponseSeen) as Observe will,
// with the values the response issues and the links they would make. It names the part the
// request would join.
func (e *Engine) Peek(x *traffic.Exchange) (session, part string, key record.Key) {
	s := e.snap.Load()
	v := extract.NewView(x, e.cache, s.maxBody)
	defer v.Release()
	return e.peek(s, v, x)
}

// PeekSession is Peek without naming the part: the session and key alone, without reading
// shared state.
func (e *Engine) PeekSession(x *traffic.Exchange) (session string, key record.Key) {
	s := e.snap.Load()
	v := extract.NewView(x, e.cache, s.maxBody)
	defer v.Release()
	return e.peekGrouping(s, v, x, startTime(x, e.now))
}

// peek is Peek with the snapshot and a View of x.
func (e *Engine) peek(s *snapshot, v *extract.View, x *traffic.Exchange) (session, part string, key record.Key) {
	t := startTime(x, e.now)
	session, key = e.peekGrouping(s, v, x, t)
	if e.shared != nil {
		if name, ok := e.livePart(s, session, t); ok {
			return session, name, key
		}
		st, found, ok := e.shared.PeekPart(context.Background(), session)
		return session, e.namePart(s, session, t, st, found, ok), key
	}
	return session, e.parts.peek(session, t, &s.rules), key
}

// peekGrouping is the session and key Peek names for x at t: by its request side at request
// time (the grouping, a learned first-party cookie, a live stitching link), and once the
// response is seen as Observe will decide, with the values the response issues and the links
// they would make.
//
// Its frame stays small (the response's case has a function of its own): it is on the
// deepest path of a stream's goroutine, and a path past the goroutine's first stack size
// makes every stream copy its stack.
func (e *Engine) peekGrouping(s *snapshot, v *extract.View, x *traffic.Exchange, t time.Time) (session string, key record.Key) {
	if x.ResponseSeen {
		return e.peekAtResponse(s, v, x, t)
	}
	session, key = s.group(v, x, e.hash)
	if key.Source == record.SourceFallback && s.builtin {
		if car, ok := e.learned(s, v, t, false); ok {
			session, key = car.session, car.key
		}
	}
	if key.Source != record.SourceFallback && e.links != nil {
		if l, ok := e.links.lookup(session, t, s.rules.idle, false); ok && l.follows() {
			session = l.root
		}
	}
	return session, key
}

// peekAtResponse is peekGrouping once the response is seen: what Observe will decide, the
// response's issued values and links included, so that the response-phase answer carries the
// final id.
//
//go:noinline
func (e *Engine) peekAtResponse(s *snapshot, v *extract.View, x *traffic.Exchange, t time.Time) (string, record.Key) {
	ps, _ := s.readParams(v, e.hash, reading{response: true, groupOnly: true}, nil)
	c := s.resolveClient(x)
	car := e.carriedOf(s, v, &c, &ps, t, false)
	issued := ps.issued
	if s.builtin {
		issued = s.issuedBuiltin(v, e.hash, issued)
	}
	st := e.stitch(s, car, issued, ps.respFirst, t, true)
	return st.session, st.key
}

// livePart names the part of session for a request at t from what this engine holds, with
// shared state: its own live part when the request joins it (the part's last request is
// within the idle timeout and of the same day, so no request another replica saw in between
// can have opened a newer part: that would need a longer gap), or the shared state a read for
// the same request brought (peekReads, so that a request reads it once). ok is false when the
// shared state must be read.
func (e *Engine) livePart(s *snapshot, session string, t time.Time) (name string, ok bool) {
	if name, ok := e.parts.peekLive(session, t, &s.rules); ok {
		return name, true
	}
	if r, hit := e.peeks.get(session, t); hit {
		return s.rules.peekShared(&r.st, r.found, t), true
	}
	return "", false
}

// namePart names the part of session for a request at t from the shared part state read for
// it (kept for the request's later answers), or from this engine's own state when the read
// failed (ok false).
func (e *Engine) namePart(s *snapshot, session string, t time.Time, st PartState, found, ok bool) string {
	if !ok {
		return e.parts.peek(session, t, &s.rules)
	}
	e.peeks.put(session, t, st, found)
	return s.rules.peekShared(&st, found, t)
}

// group decides the session of a request from its request side alone: the grouping
// parameters, then the built-ins, then the fallback. It returns the session id and the key
// that decided.
func (s *snapshot) group(v *extract.View, x *traffic.Exchange, h *hasher) (string, record.Key) {
	if session, key, ok := s.groupParam(v, h); ok {
		return session, key
	}
	return s.groupRest(v, x, h)
}

// groupParam is the grouping rule on the request side alone: in file order, the first
// request-side grouping parameter with a non-empty value decides.
func (s *snapshot) groupParam(v *extract.View, h *hasher) (string, record.Key, bool) {
	for i := range s.params {
		p := &s.params[i]
		if p.side == extract.Response || !p.group {
			continue
		}
		if val, ok := p.ext.Extract(v); ok && val != "" {
			return h.sessionID(val), p.key, true
		}
	}
	return "", record.Key{}, false
}

// groupRest is group when no grouping parameter decides: the client (address parsing,
// fingerprints) matters only then, which is the rarer case on traffic with keys. It has a
// frame of its own so that group's stays small (see peekGrouping).
//
//go:noinline
func (s *snapshot) groupRest(v *extract.View, x *traffic.Exchange, h *hasher) (string, record.Key) {
	c := s.resolveClient(x)
	return s.resolveRest(v, &c, h)
}

// startTime is when x began, else now.
func startTime(x *traffic.Exchange, now func() time.Time) time.Time {
	if x.Start.IsZero() {
		return now()
	}
	return x.Start
}

// reading says which parameters readParams reads.
type reading struct {
	// response reads response-side parameters too.
	response bool
	// groupOnly reads every grouping parameter and exports nothing (no values, user, role or
	// secrets): what grouping at the response needs.
	groupOnly bool
}

// params is what readParams found in one exchange besides the secrets.
type params struct {
	// grouped is true when a grouping parameter decided session and key.
	grouped bool
	session string
	key     record.Key
	// reqGrouped is true when a request-side grouping parameter worked; reqSession and reqKey
	// are the first one's. respFirst is true when the first grouping parameter that worked
	// reads the response, and issued holds the values of the response-side grouping
	// parameters (the values the response issued), in file order.
	reqGrouped bool
	reqSession string
	reqKey     record.Key
	reqIdent   string // "param:" + the parameter's name
	respFirst  bool
	issued     []issuedValue
	// The rest is filled when reading all parameters.
	user, role string
	values     map[string]string // exported values by parameter name; nil when none
}

// readParams is the parameter stage and the grouping rule: in file order, the first grouping
// parameter with a non-empty value decides the session (resolveRest decides when none does).
// It also exports every value, takes user and role from the first parameters of those types
// that have one, and appends the clear values of hashed parameters to secrets, so that no
// other field of the record carries them; with groupOnly it reads on through every grouping
// parameter (the values a response issued) and exports nothing. The secrets are returned apart from the rest, which the record keeps: the
// caller's array stays on its stack.
func (s *snapshot) readParams(v *extract.View, h *hasher, rd reading, secrets []redact.Secret) (params, []redact.Secret) {
	var ps params
	for i := range s.params {
		p := &s.params[i]
		if (p.side == extract.Response && !rd.response) || (!p.group && rd.groupOnly) {
			continue
		}
		val, ok := p.ext.Extract(v)
		if !ok || val == "" {
			continue
		}
		var id string // the value's session id once computed: one HMAC per grouping value
		if p.group {
			id = ps.groupValue(p, val, h)
		}
		if rd.groupOnly {
			if !ps.grouped {
				if id == "" {
					id = h.sessionID(val)
				}
				ps.grouped, ps.key, ps.session = true, p.key, id
			}
			continue
		}
		out := ps.add(p, val, id, h, len(s.params))
		if p.hashed && len(secrets) < maxSecrets {
			secrets = append(secrets, redact.Secret{Clear: val, Hashed: out})
		}
	}
	return ps, secrets
}

// groupValue notes the value of grouping parameter p as carried by the request or issued by
// the response. It returns the value's session id when it computed it, else "".
func (ps *params) groupValue(p *param, val string, h *hasher) string {
	if p.side == extract.Response {
		if !ps.grouped {
			ps.respFirst = true
		}
		if len(ps.issued) < maxIssued {
			id := h.sessionID(val)
			ps.issued = append(ps.issued, issuedValue{session: id, key: p.key, name: p.ident})
			return id
		}
		return ""
	}
	if !ps.reqGrouped {
		ps.reqGrouped, ps.reqSession, ps.reqKey, ps.reqIdent = true, h.sessionID(val), p.key, p.ident
		return ps.reqSession
	}
	return ""
}

// add takes the value of parameter p and returns it as exported; id is the value's session id
// when groupValue computed it ("" when not), n the number of parameters, to size params.
func (ps *params) add(p *param, val, id string, h *hasher, n int) string {
	var out string
	switch {
	case p.group && !ps.grouped:
		if id == "" {
			id = h.sessionID(val)
		}
		ps.grouped, ps.key, ps.session = true, p.key, id
		if p.hashed {
			// A separate HMAC under its own key: the session id must not reveal it.
			out = h.param(val)
		} else {
			out = record.Truncate(val, maxParamValue)
		}
	case p.hashed:
		out = h.param(val)
	default:
		out = record.Truncate(val, maxParamValue)
	}
	if ps.values == nil {
		// At most one map group's worth at first: a request rarely carries every parameter,
		// and a hint past 8 allocates a table of several groups at once.
		ps.values = make(map[string]string, min(n, 8))
	}
	ps.values[p.name] = out
	switch p.typ {
	case config.TypeUser:
		if ps.user == "" {
			ps.user = out
		}
	case config.TypeRole:
		if ps.role == "" {
			ps.role = out
		}
	}
	return out
}

// newRequest is the record stage: the request record of x, begun at t, from client c and the
// grouping and parameters ps.
func newRequest(x *traffic.Exchange, t time.Time, c *client, ps *params) *record.Request {
	return &record.Request{
		Kind:          record.KindRequest,
		RequestID:     record.Truncate(x.RequestID, maxRequestID),
		Time:          record.At(t),
		Session:       ps.session,
		Key:           ps.key,
		Method:        record.Truncate(x.Method, maxMethod),
		Scheme:        record.Truncate(x.Scheme, maxScheme),
		Host:          record.Truncate(strings.ToLower(x.Host), maxHost),
		Path:          record.Truncate(pathOnly(x.Path), maxPath),
		Query:         record.Truncate(queryOnly(x.Path), maxQuery),
		Status:        x.Status,
		DurationMS:    durationMS(x.Start, x.End),
		RequestBytes:  bodyBytes(x.RequestBytes, x.RequestBody),
		ResponseBytes: bodyBytes(x.ResponseBytes, x.ResponseBody),
		ClientIP:      c.ip,
		UserAgent:     record.Truncate(c.userAgent, maxUserAgent),
		JA3:           c.ja3,
		JA4:           c.ja4,
		User:          ps.user,
		Role:          ps.role,
		Params:        ps.values,
		Partial:       x.Partial,
	}
}

// enrich is the enrichment stage: it tags the request's flows, reads the attack verdict,
// replaces the secrets in host, path, user agent and request id, bounds the route, and keeps
// the request's content when malicious. It returns the flows for the part.
func (e *Engine) enrich(s *snapshot, v *extract.View, x *traffic.Exchange, rec *record.Request, secrets []redact.Secret) flowMask {
	// Flows match the path as sent (capped), before any secret in it is replaced.
	flows := s.flows.match(x.Method, config.StripPort(rec.Host), rec.Path)
	rec.Flows = flows.list()

	if x.Handover != nil {
		// An exported request: its fields are in their stored form already (hashed values
		// hashed), and so is its attack verdict.
		rec.Route = e.routes.bound(rec.Host, record.Truncate(route(rec.Path), maxPath))
		if rec.Malicious, rec.Attack = handoverAttack(x.Handover); rec.Malicious {
			e.malicious.Add(1)
		}
		return flows
	}
	malicious, att := s.attacks.verdict(x)
	red := e.redactFields(s, v, x, rec, secrets, malicious)
	defer red.Release()
	rec.Route = e.routes.bound(rec.Host, record.Truncate(route(rec.Path), maxPath))
	if att != nil {
		rec.Malicious, rec.Attack = malicious, att
		if malicious {
			red.AttackContent(att, x, &s.hashed, s.maxBody)
			e.malicious.Add(1)
		}
	}
	return flows
}

// handoverParams groups an exported request (traffic.Handover): one session per exported
// part, keyed apart from every live value; user, role and parameters as the export stored them.
// A request that only claimed a user claims it again, or names it, as users_from decides.
func handoverParams(h *hasher, hv *traffic.Handover) params {
	ps := params{
		session: h.handoverID(hv.Session, hv.Part),
		key:     record.Key{Source: hv.KeySource, Name: hv.KeyName},
		user:    cmp.Or(hv.User, hv.ClaimedUser),
		role:    cmp.Or(hv.Role, hv.ClaimedRole),
	}
	if len(hv.Params) > 0 {
		ps.values = hv.Params
	}
	return ps
}

// handoverAttack is the stored attack verdict of an exported request.
func handoverAttack(hv *traffic.Handover) (bool, *record.Attack) {
	a := hv.Attack
	if a == nil {
		return false, nil
	}
	return hv.Malicious, &record.Attack{Source: a.Source, Types: a.Types, RuleIDs: a.RuleIDs,
		Headers: a.Headers, Body: a.Body, BodyTruncated: a.BodyTruncated}
}

// redactFields replaces the secrets in the record's host, path, query, user agent and request
// id; in the query, the values of hashed query parameters and of the fields scrub_fields names
// are hashed by name too.
// For an ordinary request the secrets are the clear values of its hashed parameters, and a
// field is rewritten only when redact.MayHold says it may hold one (a few searches, no
// allocation). For a malicious request the Redactor also learns the values of the fields
// that are hidden by name (redact.Redactor.Learn), and is returned for its content; nil
// otherwise.
func (e *Engine) redactFields(s *snapshot, v *extract.View, x *traffic.Exchange, rec *record.Request, secrets []redact.Secret, malicious bool) *redact.Redactor {
	// QueryNamed first: it is cheaper, and when it holds the Redactor checks each field anyway.
	if !malicious && !s.hashed.QueryNamed(rec.Query) &&
		!redact.MayHold(secrets, rec.Path, rec.Query, rec.UserAgent, rec.RequestID, rec.Host) {
		return nil
	}
	red := redact.New(e.hashParam, secrets, v)
	if malicious {
		red.Learn(x, &s.hashed, s.maxBody)
	}
	rec.Host = capped(red, red.Value(rec.Host), len(rec.Host) < len(x.Host))
	rec.Path = capped(red, red.Path(rec.Path), len(rec.Path) < len(pathOnly(x.Path)))
	if rec.Query != "" {
		rec.Query = capped(red, red.Query(&s.hashed, rec.Query), len(rec.Query) < len(queryOnly(x.Path)))
	}
	ua, _ := x.RequestHeader("user-agent")
	rec.UserAgent = capped(red, red.Value(rec.UserAgent), len(rec.UserAgent) < len(ua))
	rec.RequestID = capped(red, red.Value(rec.RequestID), len(rec.RequestID) < len(x.RequestID))
	return red
}

// capped is a record field after redaction: when its cap cut it, a start of a secret left at
// its end is removed too.
func capped(red *redact.Redactor, field string, cut bool) string {
	if cut {
		return red.CutTail(field)
	}
	return field
}

// newHit is the part stage's view of a request: the request joins its session's part,
// which may end the previous part (day changed, idle time passed), and the request record is
// given the part's name (table.observe, or a part worker with shared state).
func newHit(rec *record.Request, flows flowMask, t time.Time) hit {
	return hit{
		t:         t,
		key:       rec.Key,
		user:      rec.User,
		role:      rec.Role,
		ip:        rec.ClientIP,
		userAgent: rec.UserAgent,
		method:    rec.Method,
		status:    rec.Status,
		bytesIn:   rec.RequestBytes,
		bytesOut:  rec.ResponseBytes,
		flows:     flows,
		malicious: rec.Malicious,
		linked:    rec.Linked,
	}
}

// emitRecords is the last stage: the session records of the part update, then the request
// record.
func (e *Engine) emitRecords(sessions []record.Record, rec *record.Request) {
	for _, r := range sessions {
		e.emit.Emit(r)
	}
	e.emit.Emit(rec)
	// Counted once emitted, after a part worker's round trip with shared state: a count that
	// reached n means n records are with the sinks.
	e.observed.Add(1)
	if e.log.Enabled(context.Background(), slog.LevelDebug) {
		// Names and counts only: never a value.
		e.log.LogAttrs(context.Background(), slog.LevelDebug, "request observed",
			slog.String("session", rec.Session), slog.String("part", rec.Part),
			slog.String("key", rec.Key.String()), slog.Int("params", len(rec.Params)),
			slog.Any("flows", rec.Flows), slog.Bool("malicious", rec.Malicious),
			slog.Int("status", rec.Status))
	}
}

// bodyBytes is a body's size as records carry it: what the server counted (bytes seen, else
// content-length), never less than what the exchange holds.
func bodyBytes(counted int64, held []byte) int64 {
	return max(0, counted, int64(len(held)))
}

// queryOnly is the query string of a request path, without "?".
func queryOnly(p string) string {
	if i := strings.IndexByte(p, '?'); i >= 0 {
		return p[i+1:]
	}
	return ""
}

func pathOnly(p string) string {
	if i := strings.IndexByte(p, '?'); i >= 0 {
		return p[:i]
	}
	return p
}

// durationMS is end - start in milliseconds rounded to microseconds; never negative.
func durationMS(start, end time.Time) float64 {
	if start.IsZero() || end.IsZero() || !end.After(start) {
		return 0
	}
	return math.Round(float64(end.Sub(start))/1e3) / 1e3
}
