package risk

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions/record"
)

func model() *Model {
	return New(config.Risk{HalfLife: config.Duration(10 * time.Minute), Weights: config.DefaultRiskWeights,
		AttackTypes: map[string]int{"SQLi": 60}})
}

func TestPoints(t *testing.T) {
	m := model()
	cases := []struct {
		name string
		r    record.Request
		want Points
	}{
		{"plain", record.Request{Status: 200}, Points{}},
		{"malicious", record.Request{Status: 200, Malicious: true, Attack: &record.Attack{Types: []string{"xss"}}}, Points{Malicious: 40}},
		{"attack type weight", record.Request{Status: 200, Malicious: true, Attack: &record.Attack{Types: []string{"xss", "sqli"}}}, Points{Malicious: 60}},
		{"denied", record.Request{Status: 401}, Points{Denied: 10}},
		{"not found", record.Request{Status: 404}, Points{NotFound: 3}},
		{"failed claim", record.Request{Status: 401, ClaimedUser: "alice"}, Points{Denied: 10, FailedClaim: 15}},
		{"own block is a verdict, not a denial", record.Request{Status: 403, Protection: &record.Verdict{Action: "block", Rule: "r"}}, Points{Protection: 20}},
		{"dry run counts both", record.Request{Status: 403, Protection: &record.Verdict{Action: "block", Rule: "r", DryRun: true}}, Points{Protection: 20, Denied: 10}},
		{"manual block adds nothing", record.Request{Status: 403, Protection: &record.Verdict{Action: "block", Rule: "manual:session"}}, Points{}},
	}
	for _, c := range cases {
		if got := m.Points(&c.r); got != c.want {
			t.Errorf("%s: points %v, want %v", c.name, got, c.want)
		}
	}
}

func TestScoreDecaysByHalfLife(t *testing.T) {
	m := model()
	part := "2026-12-04"
	ref := Ref(part)
	t0 := time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)
	var s Sums
	p := Points{Malicious: 40, Denied: 10}
	m.Add(&s, ref, t0, &p)
	score, reasons := m.Score(&s, ref, t0)
	if score != 50 || len(reasons) != 2 || reasons[0] != (Reason{Signal: "malicious", Points: 40}) || reasons[1] != (Reason{Signal: "denied", Points: 10}) {
		t.Fatalf("score %d %v, want 50 with malicious 40, denied 10", score, reasons)
	}
	score, reasons = m.Score(&s, ref, t0.Add(10*time.Minute))
	if score != 25 || reasons[0].Points != 20 {
		t.Fatalf("after one half-life: %d %v, want 25", score, reasons)
	}
	// Far past the part's day the points are gone, without overflow or NaN.
	if score, reasons = m.Score(&s, ref, t0.Add(48*time.Hour)); score != 0 || len(reasons) != 0 {
		t.Fatalf("two days on: %d %v, want 0", score, reasons)
	}
	// Capped at 100.
	for range 5 {
		m.Add(&s, ref, t0, &p)
	}
	if score, _ = m.Score(&s, ref, t0); score != Max {
		t.Fatalf("score %d, want %d", score, Max)
	}
}

// The sums do not depend on the order or grouping in which requests are added: two replicas
// that each saw some of a part's requests give, merged, the score one replica would.
func TestSumsMergeInAnyOrder(t *testing.T) {
	m := New(config.Risk{HalfLife: config.RiskHalfLifeMin, Weights: config.DefaultRiskWeights})
	part := "2026-12-04"
	ref := Ref(part)
	day := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
	r := rand.New(rand.NewPCG(1, 2))
	type req struct {
		t time.Time
		p Points
	}
	var reqs []req
	var last time.Time
	for range 500 {
		// Any time of the day, in the widest zones' versions of it.
		tm := day.Add(time.Duration(r.Int64N(int64(48*time.Hour))) - 12*time.Hour)
		reqs = append(reqs, req{tm, Points{Denied: float64(r.IntN(3)) * 10, NotFound: 3}})
		if tm.After(last) {
			last = tm
		}
	}
	var all Sums
	for _, q := range reqs {
		m.Add(&all, ref, q.t, &q.p)
	}
	want, wantReasons := m.Score(&all, ref, last)
	for trial := range 20 {
		r.Shuffle(len(reqs), func(i, j int) { reqs[i], reqs[j] = reqs[j], reqs[i] })
		var a, b Sums
		for i, q := range reqs {
			if i%(trial+2) == 0 {
				m.Add(&a, ref, q.t, &q.p)
			} else {
				m.Add(&b, ref, q.t, &q.p)
			}
		}
		for i := range a {
			a[i] += b[i]
		}
		got, reasons := m.Score(&a, ref, last)
		if got != want || len(reasons) != len(wantReasons) {
			t.Fatalf("trial %d: score %d %v, want %d %v", trial, got, reasons, want, wantReasons)
		}
		for i := range reasons {
			if reasons[i] != wantReasons[i] {
				t.Fatalf("trial %d: reasons %v, want %v", trial, reasons, wantReasons)
			}
		}
	}
}

func TestZeroModelAndBadPart(t *testing.T) {
	var m *Model
	var s Sums
	p := Points{Denied: 10}
	if m.Add(&s, Ref("x"), time.Now(), &p) || !s.Zero() {
		t.Fatal("nil model added points")
	}
	if score, _ := m.Score(&s, Ref("x"), time.Now()); score != 0 {
		t.Fatal("nil model scored")
	}
	m = model()
	m.Add(&s, Ref("not a day"), time.Now(), &p)
	if score, _ := m.Score(&s, Ref("not a day"), time.Now()); score < 0 || score > Max {
		t.Fatalf("score %d out of range", score)
	}
}

// The example of docs/configuration.md ("Risk score"): three failed logins within a minute,
// then an hour of quiet.
func TestDocumentedExample(t *testing.T) {
	m := New(config.Risk{HalfLife: config.DefaultRiskHalfLife, Weights: config.DefaultRiskWeights})
	ref := Ref("2026-12-04")
	t0 := time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)
	var s Sums
	for i := range 3 {
		p := m.Points(&record.Request{Status: 401, ClaimedUser: "alice"})
		m.Add(&s, ref, t0.Add(time.Duration(i)*30*time.Second), &p)
	}
	if score, _ := m.Score(&s, ref, t0.Add(time.Minute)); score != 72 {
		t.Errorf("three failed logins: %d, want 72 as documented", score)
	}
	if score, _ := m.Score(&s, ref, t0.Add(time.Hour+time.Minute)); score != 1 {
		t.Errorf("an hour later: %d, want 1 as documented", score)
	}
}
