package extproc

import (
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/apisessions/apisessions/extproc/protomsg"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// fakeGuard answers every request with one decision.
type fakeGuard struct {
	d      traffic.Decision
	active bool
}

func (g *fakeGuard) Active() bool { return g.active }

func (g *fakeGuard) Decide(_ *traffic.Exchange, enforce, _ bool, d *traffic.Decision) (string, string, record.Key) {
	*d = g.d
	if !enforce {
		d.Verdict.DryRun = true
		d.Status, d.TagHeader = 0, ""
	}
	return "s-guarded", "2026-10-13", record.Key{Source: record.SourceParam, Name: "token"}
}

// TestGuard: a rate limit is answered by apisessions with 429 and Retry-After, a tag sets its
// header next to the session header, both carry the verdict in the dynamic metadata and the
// record; observability mode only records; an inactive guard is not asked.
func TestGuard(t *testing.T) {
	t.Parallel()
	headers := protomsg.Sequence(getExchange(), protomsg.Options{})[:1]
	obs := protomsg.Sequence(getExchange(), protomsg.Options{Observability: true})[:1]
	limit := traffic.Decision{Verdict: traffic.Verdict{Action: "rate_limit", Rule: "slow"}, Status: 429, RetryAfter: 7,
		Headers: []traffic.Header{{Name: "x-limited-by", Value: "apisessions"}}}
	tag := traffic.Decision{Verdict: traffic.Verdict{Action: "tag", Rule: "mark"}, TagHeader: "x-apisessions-verdict"}
	run := func(t *testing.T, g *fakeGuard, msgs []*extprocv3.ProcessingRequest) (*fakeProcessor, []*extprocv3.ProcessingResponse) {
		t.Helper()
		fake := newFake()
		srv := New(Settings{Processor: fake, Now: fixedNow, SessionHeader: "x-apisessions-session", DynamicMetadata: true, Guard: g})
		client, _ := startServer(t, srv, GRPCOptions{})
		got, err := protomsg.Exchange(testContext(t), client, msgs)
		if err != nil {
			t.Fatalf("exchange: %v", err)
		}
		return fake, got
	}
	observed := func(t *testing.T, fake *fakeProcessor) *traffic.Exchange {
		t.Helper()
		select {
		case x := <-fake.ch:
			return x
		case <-time.After(10 * time.Second):
			t.Fatal("nothing observed")
			return nil
		}
	}

	t.Run("rate limit", func(t *testing.T) {
		t.Parallel()
		fake, got := run(t, &fakeGuard{d: limit, active: true}, headers)
		ir := got[0].GetImmediateResponse()
		if ir == nil || ir.GetStatus().GetCode() != 429 || ir.GetDetails() != "apisessions_rate_limit" {
			t.Fatalf("answer %v, want an immediate 429", got[0])
		}
		hs := map[string]string{}
		for _, h := range ir.GetHeaders().GetSetHeaders() {
			hs[h.GetHeader().GetKey()] = string(h.GetHeader().GetRawValue())
		}
		if hs["retry-after"] != "7" || hs["x-limited-by"] != "apisessions" {
			t.Errorf("headers %v", hs)
		}
		md := got[0].GetDynamicMetadata().GetFields()[MetadataNamespace].GetStructValue().GetFields()
		if md["verdict"].GetStringValue() != "slow" || md["action"].GetStringValue() != "rate_limit" || md["session"].GetStringValue() != "s-guarded" {
			t.Errorf("metadata %v", md)
		}
		x := observed(t, fake)
		if x.Status != 429 || x.Verdict != limit.Verdict || x.Partial {
			t.Errorf("observed status %d, verdict %+v, partial %v", x.Status, x.Verdict, x.Partial)
		}
		if fake.peeks.Load() != 0 {
			t.Error("the processor was asked to group again")
		}
	})
	t.Run("tag", func(t *testing.T) {
		t.Parallel()
		fake, got := run(t, &fakeGuard{d: tag, active: true}, headers)
		hs := map[string]string{}
		for _, h := range got[0].GetRequestHeaders().GetResponse().GetHeaderMutation().GetSetHeaders() {
			hs[h.GetHeader().GetKey()] = string(h.GetHeader().GetRawValue())
		}
		if hs["x-apisessions-verdict"] != "mark" || hs["x-apisessions-session"] != "s-guarded" {
			t.Errorf("headers %v", hs)
		}
		if x := observed(t, fake); x.Verdict != tag.Verdict {
			t.Errorf("verdict %+v", x.Verdict)
		}
	})
	t.Run("observability mode records a dry run", func(t *testing.T) {
		t.Parallel()
		fake, got := run(t, &fakeGuard{d: limit, active: true}, obs)
		if len(got) != 0 {
			t.Errorf("answers in observability mode: %v", got)
		}
		if x := observed(t, fake); x.Verdict != (traffic.Verdict{Action: "rate_limit", Rule: "slow", DryRun: true}) || x.Status == 429 {
			t.Errorf("observed status %d, verdict %+v", x.Status, x.Verdict)
		}
	})
	t.Run("an inactive guard is not asked", func(t *testing.T) {
		t.Parallel()
		fake, got := run(t, &fakeGuard{d: limit}, headers)
		if got[0].GetImmediateResponse() != nil {
			t.Error("an inactive guard answered")
		}
		if x := observed(t, fake); x.Verdict.Action != "" {
			t.Errorf("verdict %+v", x.Verdict)
		}
	})
}
