package sessions

import (
	"strings"
	"time"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions/extract"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// Facts is what the engine knows of a request from its request side alone, at the request
// headers: what protection rules match on. Strings point into the exchange or the engine's
// shared tables; a caller copies what it keeps.
type Facts struct {
	Session, Part string
	Key           record.Key
	// User and Role are as the request record shows them (a hashed parameter's hmac: form).
	User, Role string
	// Route is the path's route template, before the per-host bound of the record's route.
	Route string
	// Flows are the request's business flows (a shared list: read only).
	Flows []string
	// Malicious and AttackTypes are the verdict another filter left before ext_proc.
	Malicious   bool
	AttackTypes []string
	ClientIP    string
	JA3, JA4    string
	// Risk is the risk score of the session's live part in this engine at the request's time
	// (0 when it holds none): what the replica itself saw.
	Risk int
}

// FactNeeds says which facts beyond the grouping a caller reads, so that the rest costs
// nothing.
type FactNeeds struct {
	Params bool // user and role
	Route  bool
	Flows  bool
	Attack bool
	Client bool // client address and fingerprints
	Risk   bool // the live part's risk score
}

// Any reports whether anything beyond the grouping is needed.
func (n FactNeeds) Any() bool {
	return n.Params || n.Route || n.Flows || n.Attack || n.Client || n.Risk
}

// PeekFacts fills f with the grouping Peek answers and the facts need asks for. Like Peek it
// changes no state.
func (e *Engine) PeekFacts(x *traffic.Exchange, need FactNeeds, f *Facts) {
	// One View for both: the facts read the cookies, query and token the grouping parsed.
	s := e.snap.Load()
	v := extract.NewView(x, e.cache, s.maxBody)
	defer v.Release()
	f.Session, f.Part, f.Key = e.peek(s, v, x)
	if need.Any() {
		e.fillFacts(s, v, x, need, f)
	}
}

// PeekFactsLocal is PeekFacts for a caller that reads the shared part state itself, in one
// round trip with reads of its own (state.redis): the session is Peek's, and it names the part
// from this engine's own state when Peek would, and otherwise leaves Part empty and returns
// readShared true; the caller then reads the session's shared part state and calls NamePart
// with what it got. t is the request's time, for NamePart. Without shared state it is
// PeekFacts.
func (e *Engine) PeekFactsLocal(x *traffic.Exchange, need FactNeeds, f *Facts) (t time.Time, readShared bool) {
	s := e.snap.Load()
	v := extract.NewView(x, e.cache, s.maxBody)
	defer v.Release()
	t = startTime(x, e.now)
	f.Session, f.Key = e.peekGrouping(s, v, x, t)
	if e.shared == nil {
		f.Part = e.parts.peek(f.Session, t, &s.rules)
	} else {
		var named bool
		f.Part, named = e.livePart(s, f.Session, t)
		readShared = !named
	}
	if need.Any() {
		e.fillFacts(s, v, x, need, f)
	}
	return t, readShared
}

// NamePart names f's part from the shared part state a caller of PeekFactsLocal read (ok
// false: it is unknown, and the engine's own state names it), as Peek would have.
func (e *Engine) NamePart(f *Facts, t time.Time, st PartState, found, ok bool) {
	f.Part = e.namePart(e.snap.Load(), f.Session, t, st, found, ok)
}

// fillFacts reads the facts need asks for beyond the grouping.
func (e *Engine) fillFacts(s *snapshot, v *extract.View, x *traffic.Exchange, need FactNeeds, f *Facts) {
	if need.Params {
		f.User, f.Role = s.userRole(v, e.hash)
	}
	path := pathOnly(x.Path)
	if len(path) > maxPath {
		path = path[:maxPath]
	}
	if need.Route {
		f.Route = route(path)
	}
	if need.Flows {
		host := x.Host
		if hasUpperASCII(host) {
			host = strings.ToLower(host)
		}
		f.Flows = s.flows.match(x.Method, config.StripPort(host), path).list()
	}
	if need.Attack {
		malicious, att := s.attacks.verdict(x)
		f.Malicious = malicious
		if att != nil {
			f.AttackTypes = att.Types
		}
	}
	if need.Client {
		c := s.resolveClient(x)
		f.ClientIP, f.JA3, f.JA4 = c.ip, c.ja3, c.ja4
	}
	if need.Risk {
		f.Risk = e.parts.risk(f.Session, startTime(x, e.now), &s.rules)
	}
}

func hasUpperASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			return true
		}
	}
	return false
}

// userRole reads the request-side user and role parameters as readParams does (the first of
// each type with a value, a hashed one in its hmac: form), without exporting the others.
func (s *snapshot) userRole(v *extract.View, h *hasher) (user, role string) {
	for i := range s.params {
		p := &s.params[i]
		if p.side == extract.Response || (p.typ != config.TypeUser && p.typ != config.TypeRole) {
			continue
		}
		if (p.typ == config.TypeUser && user != "") || (p.typ == config.TypeRole && role != "") {
			continue
		}
		val, ok := p.ext.Extract(v)
		if !ok || val == "" {
			continue
		}
		if p.hashed {
			val = h.param(val)
		} else {
			val = record.Truncate(val, maxParamValue)
		}
		if p.typ == config.TypeUser {
			user = val
		} else {
			role = val
		}
	}
	return user, role
}

// RequestParam reads the request-side parameter named name from x and returns its value as
// an HMAC ("hmac:" + hex, whether or not the parameter is hashed in records): a value to count
// and compare, never to show. ok is false when the parameter is not configured, reads the
// response, or the request has no value for it.
func (e *Engine) RequestParam(x *traffic.Exchange, name string) (string, bool) {
	s := e.snap.Load()
	for i := range s.params {
		p := &s.params[i]
		if p.name != name || p.side == extract.Response {
			continue
		}
		v := extract.NewView(x, e.cache, s.maxBody)
		val, ok := p.ext.Extract(v)
		v.Release()
		if !ok || val == "" {
			return "", false
		}
		return e.hash.param(val), true
	}
	return "", false
}

// RouteOf is the route template of x's path, as Facts.Route.
func RouteOf(x *traffic.Exchange) string {
	path := pathOnly(x.Path)
	if len(path) > maxPath {
		path = path[:maxPath]
	}
	return route(path)
}

// PathOf is x's path without its query, bounded as RouteOf bounds it: the path RouteOf
// templates, segment for segment.
func PathOf(x *traffic.Exchange) string {
	path := pathOnly(x.Path)
	if len(path) > maxPath {
		path = path[:maxPath]
	}
	return path
}

// ClientIP is x's client address as Facts.ClientIP reads it (trusted forwarding headers
// applied), "" when unknown.
func (e *Engine) ClientIP(x *traffic.Exchange) string {
	return e.snap.Load().resolveClient(x).ip
}
