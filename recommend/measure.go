package recommend

import (
	"context"
	"hash/maphash"
	"sort"
	"time"

	"github.com/apisessions/apisessions/sessions/extract"
)

// Weights of the evidence that a key identifies one client's session.
const (
	// StandaloneEvidence weighs a key that no response is seen issuing: it may be a session
	// identifier issued elsewhere, or a value the client makes up.
	StandaloneEvidence = 0.5
	// FullLifetime is the share of its client's traffic a value must span to count fully: a
	// session identifier may start at a login halfway through a capture.
	FullLifetime = 0.5
)

// measured is what the second pass counts for one proposal.
type measured struct {
	seed    maphash.Seed
	vals    map[uint64]*pval
	clients map[int32]*clientUse
	// parent links values into chains: a response that issued a new value to a request that
	// carried an old one (rotation). A union-find forest over value hashes.
	parent    map[uint64]uint64
	rotations int
	tracked   int
	decided   []int
	sent      []int
	works     int
	minLen    int
	maxLen    int
}

type pval struct {
	count, client int32
	id, shared    bool
}

// clientUse is one client's use of a key: its requests where the key works, and per value
// how often and over which time.
type clientUse struct {
	works int32
	// firstEx is the first exchange of the client where the key works.
	firstEx int32
	vals    map[uint64]*valueUse
}

type valueUse struct {
	count       int32
	first, last time.Time
}

// measure replays the exchanges through the proposals' compiled extractors, exactly as the
// engine would evaluate each key (its first working member decides), and counts.
func (a *analysis) measure(ctx context.Context, props []*proposal) error {
	live := props[:0]
	for _, p := range props {
		if p.compile() {
			p.m = newMeasured(a.seed, len(p.members))
			p.firstEx = make([]int32, len(p.members))
			for i := range p.firstEx {
				p.firstEx[i] = -1
			}
			p.works = make([]bool, len(a.xs))
			live = append(live, p)
		}
	}
	for i := range a.xs {
		if i%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		v := extract.NewView(&a.xs[i], nil, a.maxBody)
		for _, p := range live {
			p.observe(v, i, a.clients[i], a.xs[i].Start)
		}
		v.Release()
	}
	secs, exs := a.clientSeconds(), a.clientExchanges()
	for _, p := range live {
		for c, cu := range p.m.clients {
			// The client's requests from its first use of a value on.
			p.key.Followed += len(exs[c]) - sort.Search(len(exs[c]), func(i int) bool { return exs[c][i] >= cu.firstEx })
		}
		p.finish(len(a.xs), secs)
	}
	return nil
}

func (p *proposal) compile() bool {
	for _, c := range p.members {
		e, err := extract.Compile(c.key.param("m"))
		if err != nil {
			return false
		}
		p.exs = append(p.exs, e)
	}
	return true
}

func newMeasured(seed maphash.Seed, members int) *measured {
	return &measured{seed: seed, vals: map[uint64]*pval{}, clients: map[int32]*clientUse{},
		parent: map[uint64]uint64{}, decided: make([]int, members), sent: make([]int, members)}
}

// observe evaluates every member on exchange ex: the first that yields a value decides the
// key, as in the engine; a response member that yields another value than the request's
// carrier is a rotation, which links the two values.
func (p *proposal) observe(v *extract.View, ex int, client int32, at time.Time) {
	m := p.m
	decider := -1
	var keyVal, reqVal, respVal string
	for j, e := range p.exs {
		val, ok := e.Extract(v)
		if !ok {
			continue
		}
		m.sent[j]++
		if decider < 0 {
			decider, keyVal = j, val
		}
		if p.members[j].key.response() {
			if respVal == "" {
				respVal = val
			}
		} else if reqVal == "" {
			reqVal = val
		}
	}
	if decider < 0 {
		return
	}
	p.works[ex] = true
	m.decided[decider]++
	if p.firstEx[decider] < 0 {
		p.firstEx[decider] = int32(ex)
	}
	m.record(keyVal, client, int32(ex), at)
	if reqVal != "" && respVal != "" && reqVal != respVal && len(reqVal) <= maxValueLen && len(respVal) <= maxValueLen {
		m.link(maphash.String(m.seed, reqVal), maphash.String(m.seed, respVal))
	}
}

func (m *measured) record(val string, client, ex int32, at time.Time) {
	m.works++
	cu := m.clients[client]
	if cu == nil {
		cu = &clientUse{firstEx: ex, vals: map[uint64]*valueUse{}}
		m.clients[client] = cu
	}
	cu.works++
	if len(val) > maxValueLen {
		return
	}
	if m.minLen == 0 || len(val) < m.minLen {
		m.minLen = len(val)
	}
	m.maxLen = max(m.maxLen, len(val))
	h := maphash.String(m.seed, val)
	pv := m.vals[h]
	if pv == nil {
		if m.tracked >= maxProposalValues {
			return // untracked: counted as working, never as recurring
		}
		m.tracked++
		pv = &pval{client: client, id: isIDLike(val)}
		m.vals[h] = pv
	}
	pv.count++
	if pv.client != client {
		pv.shared = true
	}
	u := cu.vals[h]
	if u == nil {
		if m.tracked >= maxProposalValues {
			return
		}
		m.tracked++
		u = &valueUse{first: at}
		cu.vals[h] = u
	}
	u.count++
	if at.Before(u.first) {
		u.first = at
	}
	if at.After(u.last) {
		u.last = at
	}
}

func (m *measured) find(h uint64) uint64 {
	for {
		q, ok := m.parent[h]
		if !ok || q == h {
			return h
		}
		if g, ok := m.parent[q]; ok {
			m.parent[h] = g
		}
		h = q
	}
}

// link joins the chains of an old and a new value; a link that joins nothing new is not a
// rotation.
func (m *measured) link(old, new uint64) {
	a, b := m.find(old), m.find(new)
	if a == b || len(m.parent) >= maxProposalValues {
		return
	}
	m.parent[a] = b
	m.rotations++
}

// finish computes the key's numbers and ratios and applies the thresholds.
func (p *proposal) finish(n int, clientSeconds []float64) {
	m, k := p.m, &p.key
	k.Works, k.Clients, k.Values = m.works, len(m.clients), len(m.vals)
	k.MinLen, k.MaxLen, k.Rotations = m.minLen, m.maxLen, m.rotations
	ids := 0
	for _, v := range m.vals {
		if v.id {
			ids++
		}
		if v.shared {
			k.SharedValues++
		}
		if v.count >= 2 {
			k.RecurringValues++
			k.Covered += int(v.count)
		}
	}
	for c, cu := range m.clients {
		p.clientNumbers(cu, clientSeconds[c])
	}
	for _, r := range p.roles {
		k.Flow = k.Flow || r == RoleOrigin
	}
	if k.Covered < 2 || k.Values == 0 || float64(ids) < MinIdentifierShare*float64(k.Values) {
		return
	}
	k.Coverage = float64(k.Covered) / float64(max(n, 1))
	k.Stability = float64(k.Stayed) / float64(max(k.Works, 1))
	k.Distinctness = 1
	if k.Clients > 1 {
		k.Distinctness = float64(k.Values-k.SharedValues) / float64(k.Values)
	}
	k.Lifetime = 1
	if k.ClientSeconds > 0 {
		k.Lifetime = k.LifeSeconds / k.ClientSeconds
	}
	k.Evidence = StandaloneEvidence
	if k.Flow {
		k.Evidence = 1
	}
	k.Score = k.Coverage * k.Stability * k.Distinctness * min(1, k.Lifetime/FullLifetime) * k.Evidence
	k.Follow = float64(k.Works) / float64(max(k.Followed, 1))
	p.ok = k.Score >= MinScore && k.Stability >= MinStability && k.Distinctness >= MinDistinctness && k.Follow >= MinFollow && p.carried()
}

// carried reports whether requests decide the key somewhere: a chain whose carriers never
// decide groups only the responses that issue its values, which is no session.
func (p *proposal) carried() bool {
	for j, c := range p.members {
		if !c.key.response() && p.m.decided[j] > 0 {
			return true
		}
	}
	return false
}

// clientNumbers adds one client's numbers: how many values it used, the requests that carry
// its main value (the chain of rotated values it used most, and that value alone), and the
// time the main chain spans within the client's traffic.
func (p *proposal) clientNumbers(cu *clientUse, seconds float64) {
	m, k := p.m, &p.key
	nv := len(cu.vals)
	if nv == 1 {
		k.OneValueClients++
	}
	k.MaxClientValues = max(k.MaxClientValues, nv)
	type chain struct {
		count       int32
		first, last time.Time
	}
	chains := map[uint64]*chain{}
	var best int32
	for h, u := range cu.vals {
		best = max(best, u.count)
		r := m.find(h)
		c := chains[r]
		if c == nil {
			c = &chain{first: u.first, last: u.last}
			chains[r] = c
		}
		c.count += u.count
		if u.first.Before(c.first) {
			c.first = u.first
		}
		if u.last.After(c.last) {
			c.last = u.last
		}
	}
	var main *chain
	for _, c := range chains {
		if main == nil || c.count > main.count || c.count == main.count && c.last.Sub(c.first) > main.last.Sub(main.first) {
			main = c
		}
	}
	k.StayedUnstitched += int(best)
	if main != nil {
		k.Stayed += int(main.count)
		k.LifeSeconds += min(main.last.Sub(main.first).Seconds(), seconds)
	}
	k.ClientSeconds += seconds
}

// clientExchanges returns, per client, the indexes of its exchanges in order.
func (a *analysis) clientExchanges() [][]int32 {
	out := make([][]int32, a.nClient)
	for i, c := range a.clients {
		out[c] = append(out[c], int32(i))
	}
	return out
}

// clientSeconds returns, per client, the time between its first and its last request.
func (a *analysis) clientSeconds() []float64 {
	first := make([]time.Time, a.nClient)
	last := make([]time.Time, a.nClient)
	for i := range a.xs {
		c, at := a.clients[i], a.xs[i].Start
		if at.IsZero() {
			continue
		}
		if first[c].IsZero() || at.Before(first[c]) {
			first[c] = at
		}
		if at.After(last[c]) {
			last[c] = at
		}
	}
	out := make([]float64, a.nClient)
	for c := range out {
		out[c] = last[c].Sub(first[c]).Seconds()
	}
	return out
}
