package sessions

import (
	"testing"
	"time"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions/record"
)

// Session records carry the part's risk at its latest request, with its reasons.
func TestSessionRecordRisk(t *testing.T) {
	cfg := testConfig(t)
	e, em, _ := newTestEngine(t, cfg)
	t0 := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	for i := range 4 {
		e.Observe(at(withResponse(exchange("GET", "/missing"), 404, ""), t0.Add(time.Duration(i)*time.Second)))
	}
	x := at(withResponse(exchange("GET", "/admin"), 403, ""), t0.Add(10*time.Minute))
	x.Verdict.Action, x.Verdict.Rule, x.Verdict.DryRun = config.ActionBlock, "admin-only", true
	e.Observe(x)
	e.Close()
	ss := em.sessions()
	if len(ss) == 0 {
		t.Fatal("no session record")
	}
	s := ss[len(ss)-1]
	// 4 × 3 points halved once (6), then 20 for the verdict and 10 for the 403.
	want := []record.RiskReason{{Signal: "protection", Points: 20}, {Signal: "denied", Points: 10}, {Signal: "not_found", Points: 6}}
	if s.Risk != 36 || len(s.RiskReasons) != len(want) {
		t.Fatalf("risk %d %v, want 36 %v", s.Risk, s.RiskReasons, want)
	}
	for i := range want {
		if s.RiskReasons[i] != want[i] {
			t.Fatalf("reasons %v, want %v", s.RiskReasons, want)
		}
	}
}
