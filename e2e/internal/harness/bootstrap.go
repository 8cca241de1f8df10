package harness

import (
	"errors"
	"fmt"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	header_mutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	"github.com/apisessions/apisessions/envoy"
)

// Filters is what the harness takes from an Envoy bootstrap: the HTTP filters that run before
// the router, as Envoy would run them for the first listener's first filter chain.
type Filters struct {
	// ExtProc is the ext_proc filter's configuration.
	ExtProc *filterv3.ExternalProcessor
	// HeaderMutation is the header_mutation filter placed before ext_proc, nil when there is none.
	HeaderMutation *header_mutationv3.HeaderMutation
	// AlwaysSetRequestIDInResponse is the connection manager's option of that name.
	AlwaysSetRequestIDInResponse bool
}

// FromBootstrap validates an Envoy bootstrap (YAML) with envoy.Validate and returns the
// filters of its first listener's first filter chain, so the harness runs exactly the
// configuration that file gives Envoy.
func FromBootstrap(doc []byte) (*Filters, error) {
	if err := envoy.Validate(doc); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	js, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return nil, fmt.Errorf("bootstrap YAML: %w", err)
	}
	var b bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(js, &b); err != nil {
		return nil, fmt.Errorf("decode bootstrap: %w", err)
	}
	ls := b.GetStaticResources().GetListeners()
	if len(ls) == 0 || len(ls[0].GetFilterChains()) == 0 || len(ls[0].GetFilterChains()[0].GetFilters()) == 0 {
		return nil, errors.New("bootstrap has no listener with a filter chain")
	}
	var hcm hcmv3.HttpConnectionManager
	if err := ls[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
		return nil, fmt.Errorf("unpack the HTTP connection manager: %w", err)
	}
	f := &Filters{AlwaysSetRequestIDInResponse: hcm.GetAlwaysSetRequestIdInResponse()}
	for _, hf := range hcm.GetHttpFilters() {
		tc := hf.GetTypedConfig()
		switch {
		case tc.MessageIs(&filterv3.ExternalProcessor{}):
			f.ExtProc = &filterv3.ExternalProcessor{}
			if err := tc.UnmarshalTo(f.ExtProc); err != nil {
				return nil, fmt.Errorf("unpack ext_proc: %w", err)
			}
		case tc.MessageIs(&header_mutationv3.HeaderMutation{}) && f.ExtProc == nil:
			f.HeaderMutation = &header_mutationv3.HeaderMutation{}
			if err := tc.UnmarshalTo(f.HeaderMutation); err != nil {
				return nil, fmt.Errorf("unpack header_mutation: %w", err)
			}
		}
	}
	if f.ExtProc == nil {
		return nil, errors.New("bootstrap has no ext_proc filter")
	}
	return f, nil
}
