package metrics

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/apisessions/apisessions/sinks"
	"github.com/apisessions/apisessions/state"
)

// TestDocsAndDashboardMatchTheRegistry keeps docs/metrics.md and the Grafana dashboard in step
// with what the registry exports: every exported apisessions metric is documented, and every
// metric the dashboard queries exists.
func TestDocsAndDashboardMatchTheRegistry(t *testing.T) {
	t.Parallel()
	r := New(BuildInfo{})
	if err := r.Watch(Sources{Extproc: &fakeExtproc{}, Engine: &fakeEngine{}, Sinks: &fakeSinks{s: []sinks.OutputStats{{Name: "s"}}}, State: fakeState{}, Protect: fakeProtect{}}); err != nil {
		t.Fatal(err)
	}
	r.StateRoundTrip()(state.OpPeek, time.Millisecond)
	// Histograms appear in a scrape once observed.
	r.Timed(&fakeProcessor{}).Observe(nil)
	exported := map[string]bool{}
	for name := range gather(t, r) {
		if strings.HasPrefix(name, namespace+"_") {
			exported[name] = true
		}
	}
	doc, err := os.ReadFile("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	for name := range exported {
		if !strings.Contains(string(doc), "`"+name+"`") {
			t.Errorf("docs/metrics.md does not document %s", name)
		}
	}
	raw, err := os.ReadFile("../docs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("the dashboard is not valid JSON: %v", err)
	}
	if dash.Title == "" || len(dash.Panels) == 0 {
		t.Fatal("the dashboard has no title or no panels")
	}
	name := regexp.MustCompile(`apisessions_[a-z_]+`)
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, n := range name.FindAllString(tg.Expr, -1) {
				n = strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count")
				if !exported[n] {
					t.Errorf("dashboard panel %q queries %s, which the registry does not export", p.Title, n)
				}
			}
		}
	}
}
