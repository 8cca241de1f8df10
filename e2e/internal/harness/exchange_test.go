package harness

import (
	"errors"
	"testing"

	commonmutationv3 "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/apisessions/apisessions/sessions/traffic"
)

func set(key, value string, raw []byte, appendValue *wrapperspb.BoolValue) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: key, Value: value, RawValue: raw}, Append: appendValue}
}

// TestMutate pins the header mutation behaviour the harness copies from Envoy.
func TestMutate(t *testing.T) {
	t.Parallel()
	rules, err := compileRules(&commonmutationv3.HeaderMutationRules{
		DisallowAll: wrapperspb.Bool(true),
	})
	if err != nil {
		t.Fatal(err)
	}
	allowSession, err := compileRules(nil)
	if err != nil {
		t.Fatal(err)
	}
	base := []traffic.Header{{Name: ":path", Value: "/"}, {Name: "x-s", Value: "client"}}
	cases := []struct {
		name     string
		rules    mutationRules
		m        *extprocv3.HeaderMutation
		want     []traffic.Header
		wantErr  bool
		rejected int
	}{
		{"raw_value overwrites by default", allowSession,
			&extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{set("X-S", "", []byte("s_1"), nil)}},
			[]traffic.Header{{Name: ":path", Value: "/"}, {Name: "x-s", Value: "s_1"}}, false, 0},
		{"append true adds a value", allowSession,
			&extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{set("x-s", "", []byte("s_1"), wrapperspb.Bool(true))}},
			[]traffic.Header{{Name: ":path", Value: "/"}, {Name: "x-s", Value: "client"}, {Name: "x-s", Value: "s_1"}}, false, 0},
		{"value only becomes an empty header", allowSession,
			&extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{set("x-s", "s_1", nil, nil)}},
			[]traffic.Header{{Name: ":path", Value: "/"}, {Name: "x-s", Value: ""}}, false, 0},
		{"value and raw_value is invalid", allowSession,
			&extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{set("x-s", "a", []byte("b"), nil)}},
			nil, true, 0},
		{"a line break is invalid", allowSession,
			&extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{set("x-s", "", []byte("a\r\nb"), nil)}},
			nil, true, 0},
		{"disallow_all refuses and counts", rules,
			&extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{set("x-s", "", []byte("s_1"), nil)}, RemoveHeaders: []string{"x-s"}},
			base, false, 2},
		{"pseudo-headers are never removed", allowSession,
			&extprocv3.HeaderMutation{RemoveHeaders: []string{":path"}},
			base, false, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ex := &exchange{p: &Proxy{rules: tc.rules}}
			got, err := ex.mutate(append([]traffic.Header(nil), base...), tc.m)
			if (err != nil) != tc.wantErr || (err != nil && !errors.Is(err, errInvalidMutation)) {
				t.Fatalf("error %v, want error %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); !tc.wantErr && diff != "" {
				t.Errorf("headers (-want +got):\n%s", diff)
			}
			if ex.entry.RejectedMutations != tc.rejected {
				t.Errorf("rejected %d, want %d", ex.entry.RejectedMutations, tc.rejected)
			}
		})
	}
}

// TestOverride pins Envoy's mode_override rules.
func TestOverride(t *testing.T) {
	t.Parallel()
	mode := func(req, resp filterv3.ProcessingMode_BodySendMode) *filterv3.ProcessingMode {
		return &filterv3.ProcessingMode{RequestHeaderMode: filterv3.ProcessingMode_SEND, ResponseHeaderMode: filterv3.ProcessingMode_SEND,
			RequestBodyMode: req, ResponseBodyMode: resp,
			RequestTrailerMode: filterv3.ProcessingMode_SKIP, ResponseTrailerMode: filterv3.ProcessingMode_SKIP}
	}
	none, bp := filterv3.ProcessingMode_NONE, filterv3.ProcessingMode_BUFFERED_PARTIAL
	cases := []struct {
		name     string
		filter   *filterv3.ExternalProcessor
		override *filterv3.ProcessingMode
		wantReq  filterv3.ProcessingMode_BodySendMode
		rejected int
	}{
		{"not allowed: ignored", &filterv3.ExternalProcessor{}, mode(bp, none), none, 0},
		{"allowed without a list", &filterv3.ExternalProcessor{AllowModeOverride: true}, mode(bp, none), bp, 0},
		{"in the list", &filterv3.ExternalProcessor{AllowModeOverride: true, AllowedOverrideModes: []*filterv3.ProcessingMode{mode(bp, none)}}, mode(bp, none), bp, 0},
		{"not in the list: rejected", &filterv3.ExternalProcessor{AllowModeOverride: true, AllowedOverrideModes: []*filterv3.ProcessingMode{mode(none, bp)}}, mode(bp, none), none, 1},
		{"DEFAULT header modes keep the configured ones", &filterv3.ExternalProcessor{AllowModeOverride: true, AllowedOverrideModes: []*filterv3.ProcessingMode{mode(bp, none)}},
			&filterv3.ProcessingMode{RequestBodyMode: bp}, bp, 0},
		{"send_body_without_waiting disables overrides", &filterv3.ExternalProcessor{AllowModeOverride: true, SendBodyWithoutWaitingForHeaderResponse: true}, mode(bp, none), none, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ex := &exchange{p: &Proxy{filter: tc.filter}, mode: mode(none, none)}
			ex.override(tc.override)
			if got := ex.mode.GetRequestBodyMode(); got != tc.wantReq || ex.entry.RejectedOverrides != tc.rejected {
				t.Errorf("request body mode %v, rejected %d; want %v, %d", got, ex.entry.RejectedOverrides, tc.wantReq, tc.rejected)
			}
		})
	}
}
