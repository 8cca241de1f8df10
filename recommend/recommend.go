package recommend

import (
	"cmp"
	"context"
	"hash/maphash"
	"net"
	"slices"
	"strings"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions/extract"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// Bounds on the work and memory of one Recommend call.
const (
	// MaxExchanges is how many exchanges are analysed; later ones are ignored (and reported).
	MaxExchanges = 100_000
	// maxValueLen: longer values are counted as present but not tracked; no identifier is
	// that long.
	maxValueLen = 4096
	maxNameLen  = 64
	// maxNames bounds the cookies, headers, query parameters and form fields read per exchange
	// and side; maxLeaves the JSON scalars; maxDepth the JSON nesting followed.
	maxNames  = 64
	maxLeaves = 256
	maxDepth  = 4
	// maxCandidates bounds the distinct places tracked; places first seen after it are ignored.
	maxCandidates = 512
	// valueBudget bounds the distinct (place, value) pairs tracked across all places.
	valueBudget = 1 << 19
	// maxProposals bounds the keys measured exactly in the second pass.
	maxProposals = 40
	// maxProposalValues bounds the distinct values one measured key tracks.
	maxProposalValues = 1 << 16
	// maxOrigins and maxCarriers bound the parameters of one suggested chain.
	maxOrigins, maxCarriers = 2, 3
)

// MaxParameters is the default max_parameters of the configuration: the snippet never holds
// more parameters, so a Max above it suggests nothing more.
const MaxParameters = 20

// Thresholds a key must meet to be suggested. They are documented in docs/configuration.md.
const (
	// MinIdentifierShare: at least this share of a key's distinct values look like identifiers.
	MinIdentifierShare = 0.8
	// MinStability: at least this share of the requests where a key works carry their
	// client's main value (its most used chain of rotated values).
	MinStability = 0.75
	// MinScore: a weaker key is not suggested. It would group a small share of the traffic
	// and split each of its clients' sessions between itself and the fallback key.
	MinScore = 0.05
	// MinFollow: at least this share of the requests a client sends from its first use of a
	// key's value on carry the key. A key that only some of those requests carry (a cookie
	// scoped to one path, a parameter of one endpoint) splits the client's session in two:
	// the requests that carry it and those left to the fallback key.
	MinFollow = 0.75
	// MinDistinctness: at least this share of a key's values is used by one client only (a
	// constant shared by every client scores 0).
	MinDistinctness = 0.5
)

// DefaultMax is the number of grouping keys (and of context parameters) suggested by default.
const DefaultMax = 5

// Options tune Recommend.
type Options struct {
	// Max is the most grouping keys suggested, and separately the most context parameters;
	// <= 0 means DefaultMax.
	Max int
	// MaxBodyBytes caps the bodies read (traffic.max_body_bytes); <= 0 means 64 KiB.
	MaxBodyBytes int
}

// Role says what part a parameter plays in a suggested key.
type Role string

// Roles of a member of a suggested key.
const (
	// RoleOrigin reads a value the server issues in a response (a login's token, a
	// set-cookie) before requests send it back.
	RoleOrigin Role = "origin"
	// RoleCarrier reads the value where requests send it back (query, header, cookie, body).
	RoleCarrier Role = "carrier"
	// RoleStandalone is a key that is not part of a response-to-request flow.
	RoleStandalone Role = "standalone"
)

// Member is one parameter of a suggested grouping key.
type Member struct {
	// Param is the parameter to configure (group and hashed set).
	Param config.Parameter
	Role  Role
	// Builtin is true when the engine already reads this place as a built-in identifier; it
	// is kept in a chain so that the order is explicit.
	Builtin bool
	// Sent counts the exchanges in which this member yields a value (responses for a member
	// that reads a response); Decided those in which it is the first of its key that does,
	// which decides the session.
	Sent, Decided int
	// Route is the method and path (identifiers masked) of the first exchange where the
	// member worked.
	Route string
}

// Key is one suggested grouping key: one parameter, or a chain of parameters that read the
// same value where a response issues it and where later requests send it back.
type Key struct {
	Members []Member
	// Score = Coverage × Stability × Distinctness × min(1, Lifetime / FullLifetime) ×
	// Evidence: the evidence that a value of the key identifies one client's session.
	Score float64
	// Coverage is Covered / the analysed requests.
	Coverage float64
	// Stability is Stayed / Works: how much each client keeps to one value (one chain of
	// rotated values).
	Stability float64
	// Distinctness is the share of values that no other client used; 1 when the traffic
	// holds one client only (it cannot be judged then).
	Distinctness float64
	// Lifetime is LifeSeconds / ClientSeconds (1 when the clients' traffic takes no time).
	Lifetime float64
	// Evidence is 1 when a response issues the value before requests send it back (Flow),
	// else StandaloneEvidence.
	Evidence float64

	// Works counts the requests where some member yields a value.
	Works int
	// Followed counts the requests the key's clients sent from their first use of a value
	// on; Follow is Works / Followed (at least MinFollow).
	Followed int
	Follow   float64
	// Covered counts the requests whose value recurs (seen in at least two requests): the
	// requests the key groups with others.
	Covered int
	// Stayed counts the requests that carry their client's main value: the chain of rotated
	// values it used most; StayedUnstitched the same for its most used value alone.
	Stayed, StayedUnstitched int
	// Values and RecurringValues count distinct values; Clients the distinct clients (IP +
	// User-Agent) of the requests where the key works.
	Values, RecurringValues, Clients int
	// OneValueClients counts the clients that used exactly one value; MaxClientValues is the
	// most values one client used; SharedValues counts values used by more than one client.
	OneValueClients, MaxClientValues, SharedValues int
	// Rotations counts the responses that issued a new value to a request carrying an old
	// one, joining two chains: stitching (sessions.stitch) follows them.
	Rotations int
	// LifeSeconds is the time each client's main chain spans, summed over the clients;
	// ClientSeconds the time from each client's first to its last request, summed.
	LifeSeconds, ClientSeconds float64
	// Flow is true when a member reads the value where a response issues it.
	Flow bool
	// MinLen and MaxLen are the shortest and longest value in bytes.
	MinLen, MaxLen int
}

// Context is one suggested context parameter (a user or role, not a grouping key).
type Context struct {
	Param config.Parameter
	// Requests counts the exchanges where it yields a value; Values the distinct values.
	Requests, Values int
	// Route is the first exchange where it worked, identifiers masked.
	Route string
}

// Demoted is a place left out of the grouping keys for what it is.
type Demoted struct {
	// Place names it as the explanations do ("the _ga cookie"); Reason is one of the Reason
	// constants.
	Place, Reason string
	// Requests counts the exchanges that carry it, Values its distinct values.
	Requests, Values int
}

// maxDemoted bounds the demoted places listed.
const maxDemoted = 8

// Builtin is a built-in identifier seen in the traffic.
type Builtin struct {
	// Name says which: "cookie sid", "header x-auth-token", "bearer token", "JWT sub claim".
	Name string
	// Requests and Values count the exchanges carrying it and its distinct values.
	Requests, Values int
}

// Report is what Recommend found.
type Report struct {
	// Total is the number of exchanges given; Requests the number analysed (at most
	// MaxExchanges); Clients the distinct client IP + User-Agent pairs among them.
	Total, Requests, Clients int
	// Keys are the suggested grouping keys, best first.
	Keys []Key
	// Context are suggested user and role parameters.
	Context []Context
	// Builtins are the built-in identifiers the traffic carries.
	Builtins []Builtin
	// Demoted are places that carry recurring identifiers but are no grouping key for what
	// they are (a tracker, a bot manager's cookie, a geo value, a counter, a user attribute),
	// most present first.
	Demoted []Demoted
	// BuiltinRequests counts the requests carrying a built-in identifier; FallbackRequests
	// those that carry neither one nor a suggested key, grouped by IP + User-Agent.
	BuiltinRequests, FallbackRequests int
	// Ignored counts the times a bound cut the analysis short: names, JSON fields, places or
	// values past their limits (a sign of hostile or unusual traffic).
	Ignored int
}

type valStat struct {
	count   int32
	first   int32 // position: exchange*2 + side
	client  int32 // client that first sent or received the value
	atFirst int32 // occurrences from that client
	feat    uint8
}

type cand struct {
	key     candKey
	builtin bool
	present int
	// firstPos is the position of the first occurrence; firstEx its exchange.
	firstPos, firstEx int32
	values            map[uint64]valStat
	distinct          int
	ids, emails, nms  int // distinct values with each feature
	minLen, maxLen    int
}

type analysis struct {
	xs      []traffic.Exchange
	maxBody int
	seed    maphash.Seed
	cands   []*cand
	index   map[candKey]int32
	budget  int
	ignored int
	clients []int32 // per exchange
	nClient int
	builtin []bool // per exchange: carries a built-in identifier
	names   []string
	leaves  []leaf
	// suggested holds, per suggested key, which exchanges it works for.
	suggested [][]bool
}

// Recommend analyses xs and suggests grouping keys and context parameters. It fails only
// when ctx is done.
func Recommend(ctx context.Context, xs []traffic.Exchange, o Options) (*Report, error) {
	if o.Max <= 0 {
		o.Max = DefaultMax
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 64 << 10
	}
	rep := &Report{Total: len(xs)}
	if len(xs) > MaxExchanges {
		xs = xs[:MaxExchanges]
	}
	rep.Requests = len(xs)
	a := &analysis{
		xs: xs, maxBody: o.MaxBodyBytes, seed: maphash.MakeSeed(),
		index: map[candKey]int32{}, budget: valueBudget,
		clients: make([]int32, len(xs)), builtin: make([]bool, len(xs)),
	}
	a.assignClients()
	rep.Clients = a.nClient
	for i := range xs {
		if i%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		a.scan(i)
	}
	rep.Ignored = a.ignored
	props := a.proposals(o.Max)
	if err := a.measure(ctx, props); err != nil {
		return nil, err
	}
	rep.Keys = a.rank(props, o.Max)
	a.fillCounts(rep)
	rep.Context = a.context(rep.Keys, o.Max)
	rep.Demoted = a.demoted()
	a.trimSnippet(rep)
	rep.Builtins = a.builtins()
	return rep, nil
}

// assignClients numbers the distinct client IP + User-Agent pairs, the fallback identity.
func (a *analysis) assignClients() {
	ids := map[string]int32{}
	for i := range a.xs {
		x := &a.xs[i]
		ip := x.SourceAddress
		if h, _, err := net.SplitHostPort(ip); err == nil {
			ip = h
		}
		ua, _ := x.RequestHeader("user-agent")
		if len(ua) > 512 {
			ua = ua[:512]
		}
		k := ip + "\x00" + ua
		id, ok := ids[k]
		if !ok {
			id = int32(len(ids))
			ids[k] = id
		}
		a.clients[i] = id
	}
	a.nClient = len(ids)
}

// bounded counts a list cut at its bound.
func (a *analysis) bounded(cut bool) {
	if cut {
		a.ignored++
	}
}

func (a *analysis) cand(k candKey, ex int, pos int32) *cand {
	if id, ok := a.index[k]; ok {
		return a.cands[id]
	}
	if len(a.cands) >= maxCandidates {
		a.ignored++
		return nil
	}
	c := &cand{key: k, firstPos: pos, firstEx: int32(ex), values: map[uint64]valStat{}}
	c.builtin = isBuiltin(k)
	a.index[k] = int32(len(a.cands))
	a.cands = append(a.cands, c)
	return c
}

func isBuiltin(k candKey) bool {
	switch k.in {
	case config.InRequestCookie:
		return slices.Contains(builtinCookies, k.key)
	case config.InRequestHeader:
		if k.key == "authorization" {
			return k.decode == "" || k.path == "$.sid" || k.path == "$.sub"
		}
		return slices.Contains(builtinHeaders, k.key)
	}
	return false
}

func (a *analysis) observe(k candKey, val string, ex int, side int32) {
	pos := int32(ex)*2 + side
	c := a.cand(k, ex, pos)
	if c == nil {
		return
	}
	c.present++
	if c.builtin && side == 0 {
		a.builtin[ex] = true
	}
	if len(val) > maxValueLen {
		return
	}
	if c.minLen == 0 || len(val) < c.minLen {
		c.minLen = len(val)
	}
	c.maxLen = max(c.maxLen, len(val))
	client := a.clients[ex]
	h := maphash.String(a.seed, val)
	s, ok := c.values[h]
	if !ok {
		if a.budget <= 0 {
			a.ignored++
			return
		}
		a.budget--
		s = valStat{first: pos, client: client, feat: features(val)}
		c.distinct++
		if s.feat&featID != 0 {
			c.ids++
		}
		if s.feat&featEmail != 0 {
			c.emails++
		}
		if s.feat&featName != 0 {
			c.nms++
		}
	}
	s.count++
	if s.client == client {
		s.atFirst++
	}
	c.values[h] = s
}

// scan records every candidate place of exchange i with its value, read the way the engine
// reads it (the View's accessors), so a suggested parameter yields what was measured.
func (a *analysis) scan(i int) {
	x := &a.xs[i]
	v := extract.NewView(x, nil, a.maxBody)
	defer v.Release()

	// Request cookies.
	a.names = a.names[:0]
	for _, h := range x.RequestHeaders {
		if strings.EqualFold(h.Name, "cookie") {
			a.names = names(a.names, h.Value, ';', false)
		}
	}
	a.bounded(len(a.names) >= maxNames)
	for _, n := range a.names {
		if val, ok := v.Cookie(n); ok {
			a.observe(candKey{in: config.InRequestCookie, key: n}, val, i, 0)
		}
	}
	// Request headers, and the bearer token with its JWT claims.
	a.names = headerNames(a.names[:0], x.RequestHeaders, false)
	a.bounded(len(a.names) >= maxNames)
	for _, n := range a.names {
		if val, ok := v.Header(extract.Request, n); ok {
			a.observe(candKey{in: config.InRequestHeader, key: n}, val, i, 0)
		}
	}
	if auth, ok := v.Header(extract.Request, "authorization"); ok && len(auth) > 7 && strings.EqualFold(auth[:7], "bearer ") {
		a.observe(candKey{in: config.InRequestHeader, key: "authorization"}, auth, i, 0)
		if claims, ok := v.UnverifiedClaims(auth); ok {
			a.leaves = walkJSON(a.leaves[:0], claims, "$", 0)
			a.bounded(len(a.leaves) >= maxLeaves)
			for _, l := range a.leaves {
				a.observe(candKey{in: config.InRequestHeader, key: "authorization", decode: config.DecodeJWT, path: l.path}, l.value, i, 0)
			}
		}
	}
	// Query parameters.
	if q := strings.IndexByte(x.Path, '?'); q >= 0 {
		qs := x.Path[q+1:]
		if h := strings.IndexByte(qs, '#'); h >= 0 {
			qs = qs[:h]
		}
		a.names = names(a.names[:0], qs, '&', true)
		a.bounded(len(a.names) >= maxNames)
		for _, n := range a.names {
			if val, ok := v.Query(n); ok {
				a.observe(candKey{in: config.InRequestQuery, key: n}, val, i, 0)
			}
		}
	}
	a.body(v, i, extract.Request, x.RequestHeaders, x.RequestBody, x.RequestBodyTruncated)

	if !x.ResponseSeen {
		return
	}
	a.names = a.names[:0]
	for _, h := range x.ResponseHeaders {
		if strings.EqualFold(h.Name, "set-cookie") && len(a.names) < maxNames {
			name, _, _ := strings.Cut(h.Value, "=")
			name = strings.TrimSpace(name)
			if safeName(name) && !slices.Contains(a.names, name) {
				a.names = append(a.names, name)
			}
		}
	}
	for _, n := range a.names {
		if val, ok := v.SetCookie(n); ok {
			a.observe(candKey{in: config.InResponseCookie, key: n}, val, i, 1)
		}
	}
	a.names = headerNames(a.names[:0], x.ResponseHeaders, true)
	a.bounded(len(a.names) >= maxNames)
	for _, n := range a.names {
		if val, ok := v.Header(extract.Response, n); ok {
			a.observe(candKey{in: config.InResponseHeader, key: n}, val, i, 1)
		}
	}
	a.body(v, i, extract.Response, x.ResponseHeaders, x.ResponseBody, x.ResponseBodyTruncated)
}

func (a *analysis) body(v *extract.View, i int, side extract.Side, hs []traffic.Header, body []byte, truncated bool) {
	if len(body) == 0 || truncated || len(body) > a.maxBody {
		return
	}
	in, s := config.InRequestBody, int32(0)
	if side == extract.Response {
		in, s = config.InResponseBody, 1
	}
	if doc, ok := v.JSONBody(side); ok {
		a.leaves = walkJSON(a.leaves[:0], doc, "$", 0)
		a.bounded(len(a.leaves) >= maxLeaves)
		for _, l := range a.leaves {
			a.observe(candKey{in: in, path: l.path}, l.value, i, s)
		}
		return
	}
	if mediaType(hs) == "application/x-www-form-urlencoded" {
		a.names = names(a.names[:0], string(body), '&', true)
		a.bounded(len(a.names) >= maxNames)
		for _, n := range a.names {
			if val, ok := v.FormField(side, n); ok {
				a.observe(candKey{in: in, key: n}, val, i, s)
			}
		}
	}
}

// proposal is a key under consideration: one place, or a chain of places sharing values.
type proposal struct {
	members []*cand
	roles   []Role
	approx  float64
	// sessionName is true when a member's name reads like a session or credential: it
	// breaks ties between keys with equal numbers, never more.
	sessionName bool

	exs     []*extract.Extractor
	m       *measured
	firstEx []int32
	works   []bool
	key     Key
	ok      bool
}

// linkable reports whether a place may take part in a key at all.
func linkable(c *cand) bool {
	if isSecretName(c.key.lastName()) || demotion(c.key) != "" {
		return false
	}
	// The bearer token is a built-in key (by its sid or sub claim, else the token itself), so
	// neither it nor its other claims are suggested as grouping keys; claims still make
	// context parameters.
	return !(c.key.in == config.InRequestHeader && c.key.key == "authorization")
}

// proposals finds value flows from responses to later requests, turns each into a chain,
// adds the single places outside any chain, and keeps the best by a first estimate.
func (a *analysis) proposals(maxKeys int) []*proposal {
	role, find := a.flows()
	props := a.chains(role, find)
	for id, c := range a.cands {
		// A built-in identifier competes too: when it ranks first, the snippet names it first,
		// and no weaker key is put before it.
		if role[id] != "" || !linkable(c) || c.ids == 0 || c.key.response() {
			continue
		}
		props = append(props, &proposal{members: []*cand{c}, roles: []Role{RoleStandalone}})
	}
	kept := props[:0]
	for _, p := range props {
		for _, c := range p.members {
			p.sessionName = p.sessionName || containsAny(normName(c.key.lastName()), sessionWords)
		}
		if p.estimate(len(a.xs)) {
			kept = append(kept, p)
		}
	}
	slices.SortFunc(kept, func(x, y *proposal) int {
		if c := cmp.Compare(y.approx, x.approx); c != 0 {
			return c
		}
		return cmp.Compare(x.members[0].firstPos, y.members[0].firstPos)
	})
	limit := min(max(4*maxKeys, 20), maxProposals)
	if len(kept) > limit {
		kept = kept[:limit]
	}
	return kept
}

// flows links every response place to the request places that send its identifiers back
// later, for at least half of them: role says which side of a flow each candidate is on (""
// when none), and find returns the root of the linked set a candidate belongs to.
func (a *analysis) flows() (role []Role, find func(int32) int32) {
	reqIndex := map[uint64][]int32{}
	for id, c := range a.cands {
		if c.key.response() || !linkable(c) || c.ids == 0 {
			continue
		}
		for h, s := range c.values {
			if s.feat&featID != 0 {
				reqIndex[h] = append(reqIndex[h], int32(id))
			}
		}
	}
	parent := make([]int32, len(a.cands))
	for i := range parent {
		parent[i] = int32(i)
	}
	find = func(i int32) int32 {
		for parent[i] != i {
			parent[i] = parent[parent[i]]
			i = parent[i]
		}
		return i
	}
	role = make([]Role, len(a.cands))
	counts := map[int32]int{}
	for id, r := range a.cands {
		if !r.key.response() || !linkable(r) || r.ids == 0 {
			continue
		}
		clear(counts)
		for h, s := range r.values {
			if s.feat&featID == 0 {
				continue
			}
			for _, q := range reqIndex[h] {
				// Issued before it is sent: the response precedes the request's first use.
				if a.cands[q].values[h].first > s.first {
					counts[q]++
				}
			}
		}
		for q, n := range counts {
			if 2*n >= r.ids {
				parent[find(int32(id))] = find(q)
				role[id] = RoleOrigin
				role[q] = RoleCarrier
			}
		}
	}
	return role, find
}

// chains turns each linked set of flows into one proposal: its most present origins, then its
// most present carriers. A set without both sides proposes nothing.
func (a *analysis) chains(role []Role, find func(int32) int32) []*proposal {
	groups := map[int32][]int32{}
	for id := range a.cands {
		if role[id] != "" {
			root := find(int32(id))
			groups[root] = append(groups[root], int32(id))
		}
	}
	var props []*proposal
	for _, ids := range groups {
		var origins, carriers []*cand
		for _, id := range ids {
			if role[id] == RoleOrigin {
				origins = append(origins, a.cands[id])
			} else {
				carriers = append(carriers, a.cands[id])
			}
		}
		if len(origins) == 0 || len(carriers) == 0 {
			continue
		}
		origins, carriers = topByPresence(origins, maxOrigins), topByPresence(carriers, maxCarriers)
		p := &proposal{}
		for _, c := range origins {
			p.members, p.roles = append(p.members, c), append(p.roles, RoleOrigin)
		}
		for _, c := range carriers {
			p.members, p.roles = append(p.members, c), append(p.roles, RoleCarrier)
		}
		props = append(props, p)
	}
	return props
}

// topByPresence keeps the n most present places, in the order they first appeared: that is
// the order the value travelled in, and the order the snippet lists them.
func topByPresence(cs []*cand, n int) []*cand {
	slices.SortFunc(cs, func(x, y *cand) int {
		if c := cmp.Compare(y.present, x.present); c != 0 {
			return c
		}
		return cmp.Compare(x.firstPos, y.firstPos)
	})
	if len(cs) > n {
		cs = cs[:n]
	}
	slices.SortFunc(cs, func(x, y *cand) int {
		if c := cmp.Compare(x.firstPos, y.firstPos); c != 0 {
			return c
		}
		return strings.Compare(x.key.String(), y.key.String())
	})
	return cs
}

// estimate scores a proposal from the first pass's per-place counts (an exchange carrying
// the value in two members counts twice here; measure counts exactly).
func (p *proposal) estimate(n int) bool {
	type agg struct{ count, atFirst, first, client int32 }
	merged := map[uint64]agg{}
	ids, distinct := 0, 0
	for _, c := range p.members {
		ids += c.ids
		distinct += c.distinct
		for h, s := range c.values {
			m, ok := merged[h]
			if !ok || s.first < m.first {
				m.first, m.client = s.first, s.client
			}
			m.count += s.count
			if s.client == m.client {
				m.atFirst += s.atFirst
			}
			merged[h] = m
		}
	}
	var covered, stayed int32
	for _, m := range merged {
		if m.count >= 2 {
			covered += m.count
			stayed += min(m.atFirst, m.count)
		}
	}
	if covered < 2 || distinct == 0 || float64(ids) < MinIdentifierShare*float64(distinct) {
		return false
	}
	p.approx = float64(covered) / float64(max(n, 1)) * float64(stayed) / float64(covered)
	return true
}

// rank orders the keys that passed and names their parameters.
func (a *analysis) rank(props []*proposal, maxKeys int) []Key {
	var ok []*proposal
	for _, p := range props {
		if p.ok {
			ok = append(ok, p)
		}
	}
	slices.SortFunc(ok, func(x, y *proposal) int {
		if c := cmp.Compare(y.key.Score, x.key.Score); c != 0 {
			return c
		}
		if x.sessionName != y.sessionName {
			if x.sessionName {
				return -1
			}
			return 1
		}
		if c := cmp.Compare(y.key.Covered, x.key.Covered); c != 0 {
			return c
		}
		if c := cmp.Compare(x.members[0].firstPos, y.members[0].firstPos); c != 0 {
			return c
		}
		return strings.Compare(x.members[0].key.String(), y.members[0].key.String())
	})
	ok = dropRedundantBuiltins(ok)
	if len(ok) > maxKeys {
		ok = ok[:maxKeys]
	}
	used := map[string]bool{}
	keys := make([]Key, 0, len(ok))
	for _, p := range ok {
		k := p.key
		for j, c := range p.members {
			if p.m.decided[j] == 0 {
				continue // another member always decides first: it adds nothing to the key
			}
			ex := int(p.firstEx[j])
			if ex < 0 {
				ex = int(c.firstEx)
			}
			prm := c.key.param(uniqueName(used, a.paramName(c, ex)))
			prm.Group, prm.Hashed = true, true
			k.Members = append(k.Members, Member{
				Param: prm, Role: p.roles[j], Builtin: c.builtin,
				Sent: p.m.sent[j], Decided: p.m.decided[j], Route: routeOf(&a.xs[ex]),
			})
		}
		keys = append(keys, k)
	}
	// Keep the measured exchanges of the suggested keys for the fallback count.
	a.suggested = a.suggested[:0]
	for _, p := range ok {
		a.suggested = append(a.suggested, p.works)
	}
	return keys
}

// dropRedundantBuiltins leaves out a key made of built-in identifiers only unless it scores
// above every other key ranked after it: the engine tries the built-ins after the configured
// keys anyway, so such a key is listed only to be tried before a weaker one.
func dropRedundantBuiltins(ranked []*proposal) []*proposal {
	out := ranked[:0]
	for i, p := range ranked {
		if p.allBuiltin() {
			next := 0.0
			for _, q := range ranked[i+1:] {
				if !q.allBuiltin() {
					next = max(next, q.key.Score)
				}
			}
			if p.key.Score <= next || next == 0 {
				continue
			}
		}
		out = append(out, p)
	}
	return out
}

func (p *proposal) allBuiltin() bool {
	for _, c := range p.members {
		if !c.builtin {
			return false
		}
	}
	return true
}

func (a *analysis) fillCounts(rep *Report) {
	for i := range a.xs {
		if a.builtin[i] {
			rep.BuiltinRequests++
			continue
		}
		keyed := false
		for _, w := range a.suggested {
			if w[i] {
				keyed = true
				break
			}
		}
		if !keyed {
			rep.FallbackRequests++
		}
	}
}

// paramName derives a parameter name from where the value is read: login_token for $.token
// of a POST /api/login response, query_token, body_token, header_x_auth_token, jwt_sub.
func (a *analysis) paramName(c *cand, ex int) string {
	word := sanitizeWord(strings.NewReplacer("$", "", "[0]", "", "['", "_", "']", "", ".", "_").Replace(c.key.path))
	if c.key.path == "" {
		word = sanitizeWord(c.key.key)
	}
	prefix := ""
	switch c.key.in {
	case config.InRequestCookie:
		prefix = "cookie"
	case config.InRequestHeader:
		prefix = "header"
		if c.key.decode == config.DecodeJWT {
			prefix = "jwt"
		}
	case config.InRequestQuery:
		prefix = "query"
	case config.InRequestBody:
		prefix = "body"
		if c.key.path == "" {
			prefix = "form"
		}
	case config.InResponseCookie, config.InResponseHeader, config.InResponseBody:
		prefix = routeWord(&a.xs[ex])
		if prefix == "" {
			prefix = "response"
		}
		if c.key.in == config.InResponseCookie {
			prefix += "_cookie"
		} else if c.key.in == config.InResponseHeader {
			prefix += "_header"
		}
	}
	name := prefix
	if word != "" {
		name += "_" + word
	}
	if len(name) > 56 {
		name = strings.TrimRight(name[:56], "_")
	}
	return name
}

func uniqueName(used map[string]bool, name string) string {
	n := name
	for i := 2; used[n]; i++ {
		n = name + "_" + itoa(i)
	}
	used[n] = true
	return n
}

func itoa(i int) string {
	var b [20]byte
	p := len(b)
	for {
		p--
		b[p] = byte('0' + i%10)
		i /= 10
		if i == 0 {
			return string(b[p:])
		}
	}
}

// context suggests user and role parameters: places named like a user (username, email, the
// sub claim of a JWT) or a role whose values read as names.
func (a *analysis) context(keys []Key, maxParams int) []Context {
	taken := map[candKey]bool{}
	used := map[string]bool{}
	for _, k := range keys {
		for _, m := range k.Members {
			taken[candKey{m.Param.In, m.Param.Key, m.Param.Path, m.Param.Decode}] = true
			used[m.Param.Name] = true
		}
	}
	var cs []*cand
	for _, c := range a.cands {
		if taken[c.key] || c.distinct == 0 || isSecretName(c.key.lastName()) {
			continue
		}
		if c.ctxType() == "" {
			continue
		}
		if float64(c.nms) < MinIdentifierShare*float64(c.distinct) {
			continue
		}
		cs = append(cs, c)
	}
	slices.SortFunc(cs, func(x, y *cand) int {
		if c := cmp.Compare(y.present, x.present); c != 0 {
			return c
		}
		// A user names a session better than a role: list users first.
		tx, ty := x.ctxType(), y.ctxType()
		if c := cmp.Compare(ty, tx); c != 0 {
			return c
		}
		return cmp.Compare(x.firstPos, y.firstPos)
	})
	if len(cs) > maxParams {
		cs = cs[:maxParams]
	}
	out := make([]Context, 0, len(cs))
	for _, c := range cs {
		ex := int(c.firstEx)
		prm := c.key.param(uniqueName(used, a.paramName(c, ex)))
		prm.Type = c.ctxType()
		prm.Hashed = c.emails > 0 || looksCredential(c.key.lastName())
		out = append(out, Context{Param: prm, Requests: c.present, Values: c.distinct, Route: routeOf(&a.xs[ex])})
	}
	return out
}

// ctxType is the context type a place is offered as: a user or role by its name, or a user
// for a user attribute left out of the grouping keys (its values identifiers or e-mail
// addresses). A cookie a response sets is offered where requests send it back.
func (c *cand) ctxType() string {
	if t := contextType(c.key.lastName(), c.key.decode == config.DecodeJWT); t != "" {
		return t
	}
	if c.key.in != config.InResponseCookie && demotion(c.key) == ReasonUser &&
		float64(c.ids+c.emails) >= MinIdentifierShare*float64(c.distinct) {
		return config.TypeUser
	}
	return ""
}

// trimSnippet keeps the snippet within the default max_parameters: context parameters go
// first, then the weakest keys.
func (a *analysis) trimSnippet(rep *Report) {
	n := 0
	for _, k := range rep.Keys {
		n += len(k.Members)
	}
	for n+len(rep.Context) > MaxParameters && len(rep.Context) > 0 {
		rep.Context = rep.Context[:len(rep.Context)-1]
	}
	for n > MaxParameters && len(rep.Keys) > 0 {
		n -= len(rep.Keys[len(rep.Keys)-1].Members)
		rep.Keys = rep.Keys[:len(rep.Keys)-1]
	}
}

// demoted lists the places that look like identifiers and recur but are left out for what
// they are, most present first; response places are left out (their request side is listed).
func (a *analysis) demoted() []Demoted {
	var cs []*cand
	for _, c := range a.cands {
		if !c.key.response() && c.ids > 0 && c.present >= 2 && demotion(c.key) != "" {
			cs = append(cs, c)
		}
	}
	slices.SortStableFunc(cs, func(x, y *cand) int { return cmp.Compare(y.present, x.present) })
	out := make([]Demoted, 0, min(len(cs), maxDemoted))
	for _, c := range cs[:min(len(cs), maxDemoted)] {
		out = append(out, Demoted{Place: place(c.key.param("")), Reason: demotion(c.key), Requests: c.present, Values: c.distinct})
	}
	return out
}

// builtins lists the built-in identifiers seen, in the engine's order.
func (a *analysis) builtins() []Builtin {
	var out []Builtin
	add := func(k candKey, name string) {
		if id, ok := a.index[k]; ok && a.cands[id].present > 0 {
			out = append(out, Builtin{Name: name, Requests: a.cands[id].present, Values: a.cands[id].distinct})
		}
	}
	for _, n := range builtinCookies {
		add(candKey{in: config.InRequestCookie, key: n}, "cookie "+n)
	}
	for _, n := range builtinHeaders {
		add(candKey{in: config.InRequestHeader, key: n}, "header "+n)
	}
	n := len(out)
	add(candKey{in: config.InRequestHeader, key: "authorization", decode: config.DecodeJWT, path: "$.sid"}, "JWT sid claim (bearer token)")
	add(candKey{in: config.InRequestHeader, key: "authorization", decode: config.DecodeJWT, path: "$.sub"}, "JWT sub claim (bearer token)")
	if len(out) == n {
		// Tokens whose claims name no sid or sub are grouped by the token itself.
		add(candKey{in: config.InRequestHeader, key: "authorization"}, "bearer token (authorization)")
	}
	return out
}

// Parameters returns the snippet's parameters: every member of every key in rank order
// (grouping keys are tried in this order), then the context parameters.
func (r *Report) Parameters() []config.Parameter {
	var ps []config.Parameter
	for _, k := range r.Keys {
		for _, m := range k.Members {
			ps = append(ps, m.Param)
		}
	}
	for _, c := range r.Context {
		ps = append(ps, c.Param)
	}
	return ps
}
