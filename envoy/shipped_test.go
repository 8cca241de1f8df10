package envoy

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"
)

// TestShippedBootstraps checks each shipped bootstrap validates and says exactly what
// `apisessions envoy-config` renders for the default configuration, so the examples and the
// generator cannot drift apart (comments aside).
func TestShippedBootstraps(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file string
		opts Options
	}{
		{"observability.yaml", Options{}},
		{"inline.yaml", Options{Mode: ModeInline}},
		{"observability-plaintext.yaml", Options{Plaintext: true}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			shipped, err := Files.ReadFile(tc.file)
			if err != nil {
				t.Fatalf("read embedded %s: %v", tc.file, err)
			}
			if err := Validate(shipped); err != nil {
				t.Fatalf("%s fails validation: %v", tc.file, err)
			}
			rendered, err := Render(nil, tc.opts)
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			if diff := cmp.Diff(parseBootstrap(t, rendered), parseBootstrap(t, shipped), protocmp.Transform()); diff != "" {
				t.Errorf("%s differs from Render(defaults, %+v) (-rendered +shipped):\n%s", tc.file, tc.opts, diff)
			}
		})
	}
}

// moduleRoot walks up from the package directory to go.mod.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the package directory")
		}
		dir = parent
	}
}

// TestRepositoryBootstraps validates every Envoy bootstrap in the repository: any YAML file
// whose top-level keys include static_resources.
func TestRepositoryBootstraps(t *testing.T) {
	t.Parallel()
	root := moduleRoot(t)
	var found []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "node_modules" || d.Name() == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if ext := filepath.Ext(path); ext != ".yaml" && ext != ".yml" {
			return nil
		}
		doc, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var top map[string]any
		if yaml.Unmarshal(doc, &top) != nil {
			return nil // not a single YAML mapping, so not a bootstrap
		}
		if _, ok := top["static_resources"]; !ok {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		found = append(found, rel)
		if err := Validate(doc); err != nil {
			t.Errorf("%s is not a valid bootstrap: %v", rel, err)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	for _, want := range []string{"envoy/observability.yaml", "envoy/inline.yaml", "envoy/observability-plaintext.yaml"} {
		if !slices.Contains(found, filepath.FromSlash(want)) {
			t.Errorf("the walk did not find %s (found %v)", want, found)
		}
	}
}

// strictJSON decodes a YAML fragment into v, rejecting keys v does not have.
func strictJSON(t *testing.T, fragment any, v any) {
	t.Helper()
	js, err := json.Marshal(fragment)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decode %s: %v", js, err)
	}
}

// TestIstioEnvoyFilter unpacks every patch of the EnvoyFilter into the Envoy message Istio
// would insert and validates it, then checks the resulting order of the HTTP filters.
func TestIstioEnvoyFilter(t *testing.T) {
	t.Parallel()
	doc, err := Files.ReadFile("istio-envoyfilter.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var ef struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
		Spec struct {
			WorkloadSelector struct {
				Labels map[string]string `json:"labels"`
			} `json:"workloadSelector"`
			ConfigPatches []struct {
				ApplyTo string         `json:"applyTo"`
				Match   map[string]any `json:"match"`
				Patch   struct {
					Operation string         `json:"operation"`
					Value     map[string]any `json:"value"`
				} `json:"patch"`
			} `json:"configPatches"`
		} `json:"spec"`
	}
	js, err := yaml.YAMLToJSON(doc)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ef); err != nil {
		t.Fatalf("decode the EnvoyFilter: %v", err)
	}
	if ef.APIVersion != "networking.istio.io/v1alpha3" || ef.Kind != "EnvoyFilter" {
		t.Fatalf("apiVersion %q kind %q, want networking.istio.io/v1alpha3 EnvoyFilter", ef.APIVersion, ef.Kind)
	}

	// The router Istio already has; both INSERT_BEFORE patches land in front of it, in order.
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix:     "gateway",
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{},
	}
	var extProc *filterv3.ExternalProcessor
	for i, p := range ef.Spec.ConfigPatches {
		value, err := json.Marshal(p.Patch.Value)
		if err != nil {
			t.Fatal(err)
		}
		switch p.ApplyTo {
		case "LISTENER_FILTER":
			var lf listenerv3.ListenerFilter
			if err := protojson.Unmarshal(value, &lf); err != nil {
				t.Fatalf("patch %d: decode the listener filter: %v", i, err)
			}
			if err := ValidateMessage(&lf); err != nil {
				t.Errorf("patch %d: %v", i, err)
			}
		case "HTTP_FILTER":
			if p.Patch.Operation != "INSERT_BEFORE" {
				t.Errorf("patch %d: operation %s, want INSERT_BEFORE (the router)", i, p.Patch.Operation)
			}
			var hf hcmv3.HttpFilter
			if err := protojson.Unmarshal(value, &hf); err != nil {
				t.Fatalf("patch %d: decode the HTTP filter: %v", i, err)
			}
			if err := ValidateMessage(&hf); err != nil {
				t.Errorf("patch %d: %v", i, err)
			}
			hcm.HttpFilters = append(hcm.HttpFilters, &hf)
			if hf.GetName() == nameExtProc {
				extProc = &filterv3.ExternalProcessor{}
				if err := hf.GetTypedConfig().UnmarshalTo(extProc); err != nil {
					t.Fatalf("patch %d: unpack ext_proc: %v", i, err)
				}
			}
		default:
			t.Errorf("patch %d applies to %s, which this test does not know", i, p.ApplyTo)
		}
	}
	router, err := anypb.New(&routerv3.Router{})
	if err != nil {
		t.Fatal(err)
	}
	hcm.HttpFilters = append(hcm.HttpFilters, &hcmv3.HttpFilter{Name: nameRouter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router}})
	if err := ValidateMessage(hcm); err != nil {
		t.Errorf("the gateway's filter chain after the patches is wrong: %v", err)
	}
	if extProc == nil {
		t.Fatal("no patch inserts ext_proc")
	}
	if !extProc.GetObservabilityMode() || !extProc.GetFailureModeAllow() {
		t.Errorf("ext_proc observability_mode %v failure_mode_allow %v, want both true", extProc.GetObservabilityMode(), extProc.GetFailureModeAllow())
	}
	// apisessions serves a Service there, off loopback: the stream carries the token as the
	// rendered bootstraps do.
	if md := extProc.GetGrpcService().GetInitialMetadata(); len(md) != 1 || md[0].GetKey() != "authorization" || !strings.HasPrefix(md[0].GetValue(), "Bearer ") {
		t.Errorf("ext_proc initial_metadata %v, want authorization: Bearer <token>", md)
	}
	if !slices.Equal(extProc.GetRequestAttributes(), append(slices.Clone(requestAttributes), requestAttributesTLS...)) ||
		!slices.Equal(extProc.GetResponseAttributes(), responseAttributes) {
		t.Errorf("ext_proc attributes %v / %v differ from the rendered bootstraps'", extProc.GetRequestAttributes(), extProc.GetResponseAttributes())
	}
}

// egExtProc mirrors the part of Envoy Gateway's EnvoyExtensionPolicy (gateway.envoyproxy.io/
// v1alpha1) that envoy-gateway.yaml uses; unknown keys fail the decode.
type egExtProc struct {
	BackendRefs []struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace,omitempty"`
		Port      int    `json:"port"`
	} `json:"backendRefs"`
	FailOpen       *bool  `json:"failOpen"`
	MessageTimeout string `json:"messageTimeout"`
	ProcessingMode struct {
		Request  *egProcessingOptions `json:"request"`
		Response *egProcessingOptions `json:"response"`
	} `json:"processingMode"`
	Metadata struct {
		AccessibleNamespaces []string `json:"accessibleNamespaces"`
		WritableNamespaces   []string `json:"writableNamespaces"`
	} `json:"metadata"`
}

type egProcessingOptions struct {
	Body       string   `json:"body"`
	Attributes []string `json:"attributes"`
}

// egAttributePattern is the CRD's rule for attribute names.
var egAttributePattern = regexp.MustCompile(`^(connection\.|source\.|destination\.|request\.|response\.|upstream\.|xds\.route_)[a-z_1-9]*$`)

// TestEnvoyGatewayPolicy decodes the EnvoyExtensionPolicy strictly, builds the ext_proc filter
// configuration Envoy Gateway derives from it, and validates that.
func TestEnvoyGatewayPolicy(t *testing.T) {
	t.Parallel()
	doc, err := Files.ReadFile("envoy-gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var policy struct {
		APIVersion string         `json:"apiVersion"`
		Kind       string         `json:"kind"`
		Metadata   map[string]any `json:"metadata"`
		Spec       struct {
			TargetRefs []map[string]string `json:"targetRefs"`
			ExtProc    []any               `json:"extProc"`
		} `json:"spec"`
	}
	js, err := yaml.YAMLToJSON(doc)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&policy); err != nil {
		t.Fatalf("decode the EnvoyExtensionPolicy: %v", err)
	}
	if policy.APIVersion != "gateway.envoyproxy.io/v1alpha1" || policy.Kind != "EnvoyExtensionPolicy" {
		t.Fatalf("apiVersion %q kind %q, want gateway.envoyproxy.io/v1alpha1 EnvoyExtensionPolicy", policy.APIVersion, policy.Kind)
	}
	if len(policy.Spec.ExtProc) != 1 || len(policy.Spec.TargetRefs) == 0 {
		t.Fatalf("want one extProc and a target, got %d and %d", len(policy.Spec.ExtProc), len(policy.Spec.TargetRefs))
	}
	var ep egExtProc
	strictJSON(t, policy.Spec.ExtProc[0], &ep)
	if len(ep.BackendRefs) != 1 || ep.BackendRefs[0].Port != 50051 {
		t.Errorf("backendRefs %+v, want one reference to port 50051", ep.BackendRefs)
	}

	bodyModes := map[string]filterv3.ProcessingMode_BodySendMode{
		"": filterv3.ProcessingMode_NONE, "Streamed": filterv3.ProcessingMode_STREAMED,
		"Buffered": filterv3.ProcessingMode_BUFFERED, "BufferedPartial": filterv3.ProcessingMode_BUFFERED_PARTIAL,
	}
	mode := &filterv3.ProcessingMode{
		RequestHeaderMode:  filterv3.ProcessingMode_SKIP,
		ResponseHeaderMode: filterv3.ProcessingMode_SKIP,
	}
	cfg := &filterv3.ExternalProcessor{ProcessingMode: mode}
	for dir, opts := range map[string]*egProcessingOptions{"request": ep.ProcessingMode.Request, "response": ep.ProcessingMode.Response} {
		if opts == nil {
			t.Errorf("processingMode.%s is missing: without it Envoy Gateway sends no %s headers", dir, dir)
			continue
		}
		body, ok := bodyModes[opts.Body]
		if !ok {
			t.Errorf("processingMode.%s.body %q is not an Envoy Gateway body mode", dir, opts.Body)
		}
		for _, a := range opts.Attributes {
			if !egAttributePattern.MatchString(a) {
				t.Errorf("processingMode.%s.attributes: %q breaks the CRD's pattern", dir, a)
			}
		}
		if dir == "request" {
			mode.RequestHeaderMode, mode.RequestBodyMode, cfg.RequestAttributes = filterv3.ProcessingMode_SEND, body, opts.Attributes
		} else {
			mode.ResponseHeaderMode, mode.ResponseBodyMode, cfg.ResponseAttributes = filterv3.ProcessingMode_SEND, body, opts.Attributes
		}
	}
	if ep.FailOpen == nil || !*ep.FailOpen {
		t.Error("failOpen is not true: a dead apisessions would fail API requests")
	} else {
		cfg.FailureModeAllow = true
	}
	d, err := time.ParseDuration(ep.MessageTimeout)
	if err != nil {
		t.Fatalf("messageTimeout %q: %v", ep.MessageTimeout, err)
	}
	cfg.MessageTimeout = durationpb.New(d)
	cfg.MetadataOptions = &filterv3.MetadataOptions{
		ForwardingNamespaces: &filterv3.MetadataOptions_MetadataNamespaces{Untyped: ep.Metadata.AccessibleNamespaces},
		ReceivingNamespaces:  &filterv3.MetadataOptions_MetadataNamespaces{Untyped: ep.Metadata.WritableNamespaces},
	}
	// Envoy Gateway builds a cluster for the backendRef and names it in grpc_service.
	cfg.GrpcService = &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
		EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: "envoyextensionpolicy/default/apisessions/extproc/0"},
	}}
	if err := ValidateMessage(cfg); err != nil {
		t.Errorf("the ext_proc configuration derived from the policy is invalid: %v", err)
	}
	if !slices.Equal(cfg.GetRequestAttributes(), append(slices.Clone(requestAttributes), requestAttributesTLS...)) ||
		!slices.Equal(cfg.GetResponseAttributes(), responseAttributes) {
		t.Errorf("attributes %v / %v differ from the rendered bootstraps'", cfg.GetRequestAttributes(), cfg.GetResponseAttributes())
	}
	if !slices.Equal(ep.Metadata.WritableNamespaces, []string{MetadataNamespace}) {
		t.Errorf("writableNamespaces %v, want [apisessions]", ep.Metadata.WritableNamespaces)
	}
}
