package extproc

import (
	"testing"

	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/apisessions/apisessions/extproc/protomsg"
	"github.com/apisessions/apisessions/sessions/traffic"
)

func TestModeOverride(t *testing.T) {
	t.Parallel()
	none := &filterv3.ProcessingMode{}
	partial := &filterv3.ProcessingMode{
		RequestBodyMode:  filterv3.ProcessingMode_BUFFERED_PARTIAL,
		ResponseBodyMode: filterv3.ProcessingMode_BUFFERED_PARTIAL,
	}
	post := func(ct string) *traffic.Exchange {
		x := postExchange(`{"token":"t-1"}`)
		x.RequestHeaders = pairs(":method", "POST", ":scheme", "https", ":authority", "api.example", ":path", "/v1/orders")
		if ct != "" {
			x.RequestHeaders = append(x.RequestHeaders, pairs("content-type", ct)...)
		}
		x.ResponseHeaders = pairs(":status", "201", "content-type", "application/json")
		x.ResponseBody = []byte(`{"id":1}`)
		return x
	}
	textResponse := post("application/json")
	textResponse.ResponseHeaders = pairs(":status", "201", "content-type", "text/html")
	cases := []struct {
		name     string
		needs    traffic.Needs
		wantBody func(side traffic.Side, contentType string) bool
		x        *traffic.Exchange
		o        protomsg.Options
		// want is the mode_override of the request-headers and response-headers answers.
		wantReq, wantResp *filterv3.ProcessingMode
		wantPartial       bool
	}{
		{
			name:    "JSON request body read by a parameter: asked for",
			needs:   traffic.Needs{RequestBody: true},
			x:       post("application/json"),
			o:       protomsg.Options{Mode: none},
			wantReq: OverrideMode(true, false),
		},
		{
			name:  "a text body cannot hold a parameter: not asked for",
			needs: traffic.Needs{RequestBody: true},
			x:     post("text/plain"),
			o:     protomsg.Options{Mode: none},
		},
		{
			name:    "no content type: asked for, it may be JSON",
			needs:   traffic.Needs{RequestBody: true},
			x:       post(""),
			o:       protomsg.Options{Mode: none},
			wantReq: OverrideMode(true, false),
		},
		{
			name:  "a request without a body: nothing to ask for",
			needs: traffic.Needs{RequestBody: true},
			x:     getExchange(),
			o:     protomsg.Options{Mode: none},
		},
		{
			name: "no parameter reads bodies",
			x:    post("application/json"),
			o:    protomsg.Options{Mode: none},
		},
		{
			name:  "the configuration already sends bodies",
			needs: traffic.Needs{RequestBody: true, ResponseBody: true},
			x:     post("application/json"),
			o:     protomsg.Options{Mode: partial},
		},
		{
			name:     "response body asked for at the response headers",
			needs:    traffic.Needs{ResponseBody: true},
			x:        post("application/json"),
			o:        protomsg.Options{Mode: none},
			wantResp: OverrideMode(false, true),
		},
		{
			name:     "both bodies: the response override restates the request body mode",
			needs:    traffic.Needs{RequestBody: true, ResponseBody: true},
			x:        post("application/json"),
			o:        protomsg.Options{Mode: none},
			wantReq:  OverrideMode(true, false),
			wantResp: OverrideMode(true, true),
		},
		{
			name:    "an HTML response is not asked for",
			needs:   traffic.Needs{RequestBody: true, ResponseBody: true},
			x:       textResponse,
			o:       protomsg.Options{Mode: none},
			wantReq: OverrideMode(true, false),
		},
		{
			name:  "observability mode: no answers at all",
			needs: traffic.Needs{RequestBody: true, ResponseBody: true},
			x:     post("application/json"),
			o:     protomsg.Options{Observability: true},
		},
		{
			name:     "the processor decides, not the content type",
			needs:    traffic.Needs{RequestBody: true, ResponseBody: true},
			wantBody: func(side traffic.Side, _ string) bool { return side == traffic.Response },
			x:        post("application/json"),
			o:        protomsg.Options{Mode: none},
			wantResp: OverrideMode(false, true),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake := newFake()
			fake.needs = tc.needs
			fake.wantBody = tc.wantBody
			srv := New(Settings{Processor: fake, Now: fixedNow})
			client, _ := startServer(t, srv, GRPCOptions{})
			got, err := protomsg.Exchange(testContext(t), client, protomsg.Sequence(tc.x, tc.o))
			if err != nil {
				t.Fatalf("exchange: %v", err)
			}
			var gotReq, gotResp *filterv3.ProcessingMode
			for _, r := range got {
				switch r.GetResponse().(type) {
				case *extprocv3.ProcessingResponse_RequestHeaders:
					gotReq = r.GetModeOverride()
				case *extprocv3.ProcessingResponse_ResponseHeaders:
					gotResp = r.GetModeOverride()
				default:
					if r.GetModeOverride() != nil {
						t.Errorf("mode_override in an answer to a body or trailers message, which Envoy ignores")
					}
				}
			}
			if diff := cmp.Diff(tc.wantReq, gotReq, protocmp.Transform()); diff != "" {
				t.Errorf("request headers mode_override (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantResp, gotResp, protocmp.Transform()); diff != "" {
				t.Errorf("response headers mode_override (-want +got):\n%s", diff)
			}
			want := uint64(0)
			for _, m := range []*filterv3.ProcessingMode{tc.wantReq, tc.wantResp} {
				if m != nil {
					want++
				}
			}
			if n := srv.Stats().ModeOverrides; n != want {
				t.Errorf("ModeOverrides = %d; want %d", n, want)
			}
			fake.next(t)
		})
	}
}

// TestModeOverrideTruncatedResponse: once the server asked for the response body in
// BUFFERED_PARTIAL, a body cut at Envoy's buffer limit is a truncated body of a complete
// response, not an interrupted one.
func TestModeOverrideTruncatedResponse(t *testing.T) {
	t.Parallel()
	fake := newFake()
	fake.needs = traffic.Needs{ResponseBody: true}
	srv := New(Settings{Processor: fake, Now: fixedNow})
	client, _ := startServer(t, srv, GRPCOptions{})
	x := getExchange()
	x.ResponseHeaders = pairs(":status", "200", "content-type", "application/json")
	// What Envoy sends after the override: the first bytes up to its limit, end_of_stream false.
	msgs := []*extprocv3.ProcessingRequest{
		protomsg.WithProtocolConfig(protomsg.RequestHeaders(x.RequestHeaders, true), filterv3.ProcessingMode_NONE, filterv3.ProcessingMode_NONE),
		protomsg.ResponseHeaders(x.ResponseHeaders, false),
		protomsg.ResponseBody([]byte(`{"items":[1,2`), false),
	}
	got, err := protomsg.Exchange(testContext(t), client, msgs)
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	if got[1].GetModeOverride() == nil {
		t.Fatalf("no mode_override in the response headers answer")
	}
	obs := fake.next(t)
	if obs.Partial || !obs.ResponseBodyTruncated {
		t.Errorf("partial %v, truncated %v; want a complete exchange with a truncated body", obs.Partial, obs.ResponseBodyTruncated)
	}
}
