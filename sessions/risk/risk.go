// Package risk scores session parts: each request adds points for the signals it shows
// (malicious, a protection verdict, 401/403 answers, 404 answers, a failed claim of a user),
// and every point loses half its worth each half-life. The score of a part is the sum of its
// points at its latest request, at most 100.
//
// Points are kept as per-signal sums referenced to a fixed instant of the part's day (Ref),
// each request's points scaled by 2^((t - ref) / half-life). Adding a request is then a plain
// sum, so sums merge in any order and grouping (replicas, batches), and the score at any time
// is the sums scaled back. The engine and the store compute the same sums from the same
// request records.
//
// It imports only config and record.
package risk

import (
	"cmp"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions/record"
)

// Signal is one kind of evidence a request adds points for.
type Signal int

// The signals, in the order of Sums.
const (
	Malicious Signal = iota
	Protection
	Denied
	NotFound
	FailedClaim
	// N is the number of signals.
	N
)

// Names are the signals as records and the API name them (risk_reasons).
var Names = [N]string{"malicious", "protection", "denied", "not_found", "failed_claim"}

// Points are what one request adds per signal, in points at its own time.
type Points [N]float64

// Sums are a part's points per signal, each scaled to the part's Ref (see Model.Add).
type Sums [N]float64

// Zero reports whether no signal was ever added.
func (s *Sums) Zero() bool { return *s == Sums{} }

// Max is the highest score.
const Max = 100

// maxExp bounds the exponent of 2 a point is scaled by, so that no sum overflows: with the
// shortest half-life (config.RiskHalfLifeMin) a part's day stays within about ±750.
const maxExp = 1000

// Model is the weights and half-life of one configuration. The zero Model scores nothing.
type Model struct {
	w       [N]float64
	attacks map[string]float64
	// perNS is the exponent of 2 a nanosecond adds.
	perNS float64
}

// New compiles the sessions.risk section of a configuration.
func New(c config.Risk) *Model {
	w := c.Weights
	m := &Model{w: [N]float64{float64(w.Malicious), float64(w.Protection), float64(w.Denied), float64(w.NotFound), float64(w.FailedClaim)}}
	if len(c.AttackTypes) > 0 {
		m.attacks = make(map[string]float64, len(c.AttackTypes))
		for k, v := range c.AttackTypes {
			m.attacks[strings.ToLower(k)] = float64(v)
		}
	}
	if c.HalfLife > 0 {
		m.perNS = 1 / float64(c.HalfLife)
	}
	return m
}

// HalfLife is the model's half-life (0 for the zero Model).
func (m *Model) HalfLife() time.Duration {
	if m == nil || m.perNS == 0 {
		return 0
	}
	return time.Duration(math.Round(1 / m.perNS))
}

// Points returns the points r adds per signal. A request apisessions answered itself (a
// block or rate limit that was not a dry run) does not count as denied: its verdict counts.
// Verdicts of manual blocks add nothing, so that a block does not feed the score it may be
// judged by.
func (m *Model) Points(r *record.Request) (p Points) {
	if m == nil {
		return p
	}
	if r.Malicious {
		p[Malicious] = m.w[Malicious]
		if r.Attack != nil && m.attacks != nil {
			best, found := 0.0, false
			for _, t := range r.Attack.Types {
				if v, ok := m.attacks[strings.ToLower(t)]; ok && (!found || v > best) {
					best, found = v, true
				}
			}
			if found {
				p[Malicious] = best
			}
		}
	}
	answered := false
	if v := r.Protection; v != nil {
		if !strings.HasPrefix(v.Rule, "manual:") {
			p[Protection] = m.w[Protection]
		}
		answered = !v.DryRun && v.Action != config.ActionTag
	}
	switch {
	case answered:
	case r.Status == 401 || r.Status == 403:
		p[Denied] = m.w[Denied]
	case r.Status == 404:
		p[NotFound] = m.w[NotFound]
	}
	if r.ClaimedUser != "" {
		p[FailedClaim] = m.w[FailedClaim]
	}
	return p
}

// Ref is the instant a part's sums are scaled to: 11:00 UTC of the day its name begins with,
// the middle of every zone's version of that day, so that a request of the part is within 25
// hours of it. A name that is not a day gives the Unix epoch (exponents are bounded anyway).
func Ref(part string) time.Time {
	if len(part) >= 10 {
		if d, err := time.Parse(time.DateOnly, part[:10]); err == nil {
			return d.Add(11 * time.Hour)
		}
	}
	return time.Unix(0, 0)
}

// scale is 2^((t - ref) / half-life), the exponent bounded.
func (m *Model) scale(t, ref time.Time) float64 {
	e := float64(t.Sub(ref)) * m.perNS
	return math.Exp2(min(maxExp, max(-maxExp, e)))
}

// Add adds p, shown by a request at t, to s, a part's sums scaled to ref. It reports whether
// p had any points.
func (m *Model) Add(s *Sums, ref, t time.Time, p *Points) bool {
	if m == nil || *p == (Points{}) {
		return false
	}
	k := m.scale(t, ref)
	for i, v := range p {
		s[i] += v * k
	}
	return true
}

// Reason is one signal's share of a score.
type Reason = record.RiskReason

// maxReasons bounds the reasons a score lists.
const maxReasons = int(N)

// Score is the score of sums scaled to ref, at time at (a part's latest request): the sum of
// the points, at most Max, rounded to a whole number, and the reasons: each signal with points
// left (at least 0.1, rounded to tenths), the largest first.
func (m *Model) Score(s *Sums, ref, at time.Time) (int, []Reason) {
	if m == nil || m.perNS == 0 || s.Zero() {
		return 0, nil
	}
	k := 1 / m.scale(at, ref)
	total := 0.0
	var reasons []Reason
	for i, v := range s {
		pts := v * k
		if math.IsNaN(pts) || pts <= 0 {
			continue
		}
		total += pts
		if r := math.Round(pts*10) / 10; r >= 0.1 {
			reasons = append(reasons, Reason{Signal: Names[i], Points: min(r, 1e6)})
		}
	}
	slices.SortStableFunc(reasons, func(a, b Reason) int { return cmp.Compare(b.Points, a.Points) })
	if len(reasons) > maxReasons {
		reasons = reasons[:maxReasons]
	}
	return int(math.Round(min(total, Max))), reasons
}
