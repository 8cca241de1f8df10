package extproc

import (
	"slices"
	"sync"
	"testing"
	"time"

	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/apisessions/apisessions/extproc/protomsg"
)

// phaseRecorder keeps every ObservePhase call.
type phaseRecorder struct {
	mu    sync.Mutex
	calls []phaseCall
}

type phaseCall struct {
	phase         Phase
	observability bool
	d             time.Duration
}

func (r *phaseRecorder) ObservePhase(phase Phase, observability bool, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, phaseCall{phase, observability, d})
}

func (r *phaseRecorder) all() []phaseCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

func TestPhaseObserver(t *testing.T) {
	t.Parallel()
	bodies := modeOf(filterv3.ProcessingMode_BUFFERED_PARTIAL, filterv3.ProcessingMode_BUFFERED_PARTIAL)
	post := postExchange(`{"user":"ann"}`)
	post.ResponseBody = []byte(`{"id":1}`)
	cases := []struct {
		name          string
		observability bool
		mode          *filterv3.ProcessingMode
		want          []string
	}{
		{
			name: "inline, every phase of a POST with bodies",
			mode: bodies,
			want: []string{"request_headers", "request_body", "response_headers", "response_body"},
		},
		{
			name:          "observability mode is labelled as such",
			observability: true,
			mode:          modeOf(filterv3.ProcessingMode_STREAMED, filterv3.ProcessingMode_STREAMED),
			want:          []string{"request_headers", "request_body", "response_headers", "response_body"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := &phaseRecorder{}
			fake := newFake()
			srv := New(Settings{Processor: fake, Now: fixedNow, SessionHeader: "x-s", DynamicMetadata: true, PhaseObserver: rec})
			client, _ := startServer(t, srv, GRPCOptions{})
			msgs := protomsg.Sequence(post, protomsg.Options{Mode: tc.mode, Observability: tc.observability})
			if _, err := protomsg.Exchange(testContext(t), client, msgs); err != nil {
				t.Fatalf("exchange: %v", err)
			}
			// The stream's end (after its last message) reaches Observe; in observability mode
			// the client does not wait for the server.
			fake.next(t)
			calls := rec.all()
			var got []string
			for _, c := range calls {
				got = append(got, c.phase.String())
				if c.observability != tc.observability || c.d < 0 {
					t.Errorf("%s: observability %t, duration %v; want %t and a duration >= 0", c.phase, c.observability, c.d, tc.observability)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("phases %q; want %q", got, tc.want)
			}
		})
	}
}

// TestPhaseNames holds each phase's String to the ProcessingRequest field that carries it,
// which is also the phase label of the metrics.
func TestPhaseNames(t *testing.T) {
	t.Parallel()
	fields := (&extprocv3.ProcessingRequest{}).ProtoReflect().Descriptor().Oneofs().ByName("request").Fields()
	seen := map[Phase]bool{}
	for i := range fields.Len() {
		f := fields.Get(i)
		p := phaseOfField[f.Number()]
		if got := p.String(); got != string(f.Name()) {
			t.Errorf("field %d: phase %q; want %q", f.Number(), got, f.Name())
		}
		seen[p] = true
	}
	if len(seen) != int(NumPhases) {
		t.Errorf("the request cases map to %d phases; want %d", len(seen), NumPhases)
	}
	if got := NumPhases.String(); got != "Phase(6)" {
		t.Errorf("NumPhases.String() = %q; want Phase(6), not a phase name", got)
	}
}
