package protect

import (
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// rule is one compiled protection rule. Everything but its counters is immutable.
type rule struct {
	name   string
	action string
	dryRun bool
	index  int

	keys        []keyMatch
	users       set
	roles       set
	routes      set
	methods     set
	flows       set
	attackTypes set
	malicious   bool
	prefixes    []netip.Prefix
	ja3, ja4    set
	riskAtLeast int

	// block
	status  int
	body    string
	headers []traffic.Header
	// rate_limit: tokens per nanosecond and the bucket's size
	perNS   float64
	burst   float64
	byRoute bool
	// by is what a bucket follows besides the route: the session, the user or the client.
	by string
	// tag
	tagHeader string
	// state is the rule's condition over past requests (sequence, requires, enumeration,
	// count), nil when it has none.
	state *stateCond

	// n counts what the rule did; kept by name across reloads.
	n *Counts
}

// Counts counts a rule's verdicts: the requests it acted on, and those it would have acted
// on (dry_run, or observability mode).
type Counts struct {
	Fired, DryRun atomic.Uint64
}

// keyMatch is one item of match.keys: a source, and a name when the item names one key.
type keyMatch struct {
	source, name string
}

// set is a small list of strings searched in order, or a map when long.
type set struct {
	list []string
	m    map[string]struct{}
}

func newSet(items []string) set {
	if len(items) <= 8 {
		return set{list: slices.Clone(items)}
	}
	m := make(map[string]struct{}, len(items))
	for _, s := range items {
		m[s] = struct{}{}
	}
	return set{m: m}
}

// empty reports whether the condition is absent (matches everything).
func (s *set) empty() bool { return len(s.list) == 0 && s.m == nil }

func (s *set) has(v string) bool {
	if s.m != nil {
		_, ok := s.m[v]
		return ok
	}
	for _, x := range s.list {
		if x == v {
			return true
		}
	}
	return false
}

// hasAny reports whether any of vs is in s.
func (s *set) hasAny(vs []string) bool {
	for _, v := range vs {
		if s.has(v) {
			return true
		}
	}
	return false
}

// compiled is the rules of one configuration, compiled once.
type compiled struct {
	rules []*rule
	need  sessions.FactNeeds
	// login is protection.login when a rule reads login outcomes, else nil.
	login *login
}

// compile turns validated rules into matchers. The configuration was validated: values
// that do not parse are skipped rather than trusted.
func compile(p config.Protection, counts func(name, action string) *Counts) *compiled {
	c := &compiled{}
	for i, r := range p.Rules {
		cr := &rule{
			name: r.Name, action: r.Action, dryRun: r.DryRun, index: i,
			users: newSet(r.Match.Users), roles: newSet(r.Match.Roles), routes: newSet(r.Match.Routes),
			methods: newSet(r.Match.Methods), flows: newSet(r.Match.Flows), attackTypes: newSet(r.Match.AttackTypes),
			malicious: r.Match.Malicious, ja3: newSet(r.Match.JA3), ja4: newSet(r.Match.JA4), riskAtLeast: r.Match.RiskAtLeast,
			n: counts(r.Name, r.Action),
		}
		for _, k := range r.Match.Keys {
			src, name, _ := strings.Cut(k, ":")
			cr.keys = append(cr.keys, keyMatch{source: src, name: name})
		}
		for _, s := range r.Match.ClientIPs {
			if p, err := config.ParseIPOrPrefix(s); err == nil {
				cr.prefixes = append(cr.prefixes, p)
			}
		}
		switch r.Action {
		case config.ActionBlock:
			cr.status, cr.body = r.Block.Status, r.Block.Body
			for _, k := range slices.Sorted(maps.Keys(r.Block.Headers)) {
				cr.headers = append(cr.headers, traffic.Header{Name: k, Value: r.Block.Headers[k]})
			}
		case config.ActionRateLimit:
			n, per, err := config.ParseRate(r.RateLimit.Rate)
			if err != nil {
				continue
			}
			cr.status = 429
			cr.perNS = float64(n) / float64(per)
			cr.burst = float64(r.RateLimit.Burst)
			if cr.burst == 0 {
				cr.burst = float64(n)
			}
			cr.byRoute = r.RateLimit.By == config.BySessionRoute
			cr.by = r.RateLimit.By
		case config.ActionTag:
			cr.tagHeader = r.Tag.Header
		}
		cr.state = compileState(p, r, c)
		c.need.Params = c.need.Params || !cr.users.empty() || !cr.roles.empty() || cr.by == config.ByUser
		c.need.Route = c.need.Route || !cr.routes.empty() || cr.byRoute
		c.need.Flows = c.need.Flows || !cr.flows.empty()
		c.need.Attack = c.need.Attack || cr.malicious || !cr.attackTypes.empty()
		c.need.Risk = c.need.Risk || cr.riskAtLeast > 0
		c.need.Client = c.need.Client || len(cr.prefixes) > 0 || !cr.ja3.empty() || !cr.ja4.empty() || cr.by == config.ByIP
		c.rules = append(c.rules, cr)
	}
	return c
}

// input is one request as the rules see it; the client address is parsed once, when a rule
// first needs it.
type input struct {
	x      *traffic.Exchange
	f      *sessions.Facts
	addr   netip.Addr
	parsed bool
}

func (in *input) clientAddr() netip.Addr {
	if !in.parsed {
		in.parsed = true
		if a, err := netip.ParseAddr(in.f.ClientIP); err == nil {
			in.addr = a.Unmap()
		}
	}
	return in.addr
}

// matches reports whether every condition of r holds for the request.
func (r *rule) matches(in *input) bool {
	x, f := in.x, in.f
	if !r.methods.empty() && !r.methods.has(x.Method) {
		return false
	}
	if len(r.keys) > 0 && !r.keyMatches(f) {
		return false
	}
	if !r.routes.empty() && !r.routes.has(f.Route) {
		return false
	}
	if !r.users.empty() && (f.User == "" || !r.users.has(f.User)) {
		return false
	}
	if !r.roles.empty() && (f.Role == "" || !r.roles.has(f.Role)) {
		return false
	}
	if !r.flows.empty() && !r.flows.hasAny(f.Flows) {
		return false
	}
	if r.malicious && !f.Malicious {
		return false
	}
	if !r.attackTypes.empty() && !r.attackTypes.hasAny(f.AttackTypes) {
		return false
	}
	if len(r.prefixes) > 0 && !r.ipMatches(in.clientAddr()) {
		return false
	}
	if !r.ja3.empty() && (f.JA3 == "" || !r.ja3.has(f.JA3)) {
		return false
	}
	if !r.ja4.empty() && (f.JA4 == "" || !r.ja4.has(f.JA4)) {
		return false
	}
	if r.riskAtLeast > 0 && f.Risk < r.riskAtLeast {
		return false
	}
	return true
}

func (r *rule) keyMatches(f *sessions.Facts) bool {
	for _, k := range r.keys {
		if k.source == f.Key.Source && (k.name == "" || k.name == f.Key.Name) {
			return true
		}
	}
	return false
}

func (r *rule) ipMatches(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	for _, p := range r.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// subject is who a bucket of r follows for the request: "session:" and the session id,
// "user:" and the user, or "ip:" and the client address; "" when the request has none (no user,
// no address) and is not limited.
func (r *rule) subject(f *sessions.Facts, buf []byte) []byte { return subjectOf(r.by, f, buf) }

// routeOf is the route part of the request's bucket: its route template when the rule limits
// per session and route, else "".
func (r *rule) routeOf(f *sessions.Facts) string {
	if r.byRoute {
		return f.Route
	}
	return ""
}

// retryAfter is the whole seconds until a bucket holding tokens has one again, at least 1.
func (r *rule) retryAfter(tokens float64) int {
	if r.perNS <= 0 {
		return 1
	}
	wait := time.Duration((1 - tokens) / r.perNS)
	s := int((wait + time.Second - 1) / time.Second)
	return max(s, 1)
}
