package envoy

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	header_mutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"

	// Every extension a shipped or rendered bootstrap names in an "@type" must be linked in,
	// or protojson cannot resolve it. pkg/wellknown registers nothing; these packages do.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/ring_hash/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// Type URLs of the HTTP filters whose order matters to apisessions.
const (
	typeHeaderMutation = "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation"
	typeExtProc        = "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor"
	typeRouter         = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
)

// Canonical filter names, used when a filter carries no typed_config to identify it by.
const (
	nameHeaderMutation = "envoy.filters.http.header_mutation"
	nameExtProc        = "envoy.filters.http.ext_proc"
	nameRouter         = "envoy.filters.http.router"
)

// maxProblems bounds the report; a broken file rarely needs more to be understood.
const maxProblems = 50

// maxDepth bounds the message walk; real bootstraps nest a few dozen levels at most.
const maxDepth = 200

// Validate checks an Envoy bootstrap written in YAML as far as it can be checked without an
// Envoy binary: the document must decode strictly into envoy.config.bootstrap.v3.Bootstrap
// (unknown fields, bad enum names and unresolvable "@type"s are errors), pass the generated
// validation rules, and so must every message packed in a google.protobuf.Any, at any depth:
// Bootstrap.ValidateAll stops at Any, and every filter's configuration is an Any. On top of
// that it checks what protobuf cannot express: routes and gRPC services name defined
// clusters, the bootstrap has an ext_proc filter, and in every HTTP filter chain
// header_mutation (when present) runs before ext_proc, ext_proc before the router, and the
// router is last. A header that a header_mutation fills from a TLS fingerprint must be
// removed first, or a client-sent copy survives whenever the fingerprint is empty.
//
// The error joins every problem found (up to a bound), each naming where it is.
func Validate(yamlDoc []byte) error {
	js, err := yaml.YAMLToJSON(yamlDoc)
	if err != nil {
		return fmt.Errorf("parse YAML: %w", err)
	}
	var b bootstrapv3.Bootstrap
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(js, &b); err != nil {
		return fmt.Errorf("decode bootstrap: %w", err)
	}
	return validateBootstrap(&b)
}

// validateBootstrap runs every check of Validate on a decoded bootstrap.
func validateBootstrap(b *bootstrapv3.Bootstrap) error {
	w := newWalker()
	if err := b.ValidateAll(); err != nil {
		w.add("bootstrap", err)
	}
	w.clusters = map[string]bool{}
	for i, c := range b.GetStaticResources().GetClusters() {
		name := c.GetName()
		if w.clusters[name] {
			w.addf(fmt.Sprintf("static_resources.clusters[%d]", i), "cluster name %q is defined twice", name)
		}
		w.clusters[name] = true
	}
	// Clusters delivered by CDS are unknown here; references to them cannot be checked.
	w.checkClusterRefs = b.GetDynamicResources().GetCdsConfig() == nil
	w.walk(b.ProtoReflect(), "", 0)
	if w.extProcFilters == 0 && len(w.problems) < maxProblems {
		w.addf("static_resources", "no HTTP filter chain has an %s filter; Envoy would send apisessions nothing", nameExtProc)
	}
	return w.err()
}

// ValidateMessage checks one configuration message the way Validate checks a whole bootstrap:
// the generated rules on it and on every Any inside it, the filter order of any HTTP
// connection manager in it, and the fingerprint header rule of any header_mutation in it.
// Cluster names cannot be checked without the bootstrap that defines them. Use it for filter
// configurations embedded in other documents (Istio EnvoyFilter patches and the like).
func ValidateMessage(m proto.Message) error {
	w := newWalker()
	if v, ok := m.(validateAller); ok {
		if err := v.ValidateAll(); err != nil {
			w.add(string(m.ProtoReflect().Descriptor().Name()), err)
		}
	}
	w.walk(m.ProtoReflect(), "", 0)
	return w.err()
}

// validateAller is implemented by every message generated with protoc-gen-validate.
type validateAller interface {
	ValidateAll() error
}

// walker visits a message tree, unpacking Any, and collects problems with their paths.
type walker struct {
	problems         []error
	clusters         map[string]bool // nil: cluster references are not checked
	checkClusterRefs bool
	extProcFilters   int
}

func newWalker() *walker { return &walker{} }

func (w *walker) add(path string, err error) {
	if len(w.problems) >= maxProblems {
		return
	}
	if path == "" {
		path = "bootstrap"
	}
	w.problems = append(w.problems, fmt.Errorf("%s: %w", path, err))
}

func (w *walker) addf(path, format string, args ...any) {
	w.add(path, fmt.Errorf(format, args...))
}

func (w *walker) err() error {
	if len(w.problems) == 0 {
		return nil
	}
	if len(w.problems) >= maxProblems {
		w.problems = append(w.problems, fmt.Errorf("stopped after %d problems", maxProblems))
	}
	return errors.Join(w.problems...)
}

// walk visits m and everything below it. path names m in proto field names, with an Any's
// contents shown as typed_config<MessageName>.
func (w *walker) walk(m protoreflect.Message, path string, depth int) {
	if depth > maxDepth {
		w.addf(path, "configuration nested deeper than %d messages", maxDepth)
		return
	}
	if a, ok := m.Interface().(*anypb.Any); ok {
		w.any(a, path, depth)
		return
	}
	w.check(m.Interface(), path)
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		name := join(path, string(fd.Name()))
		switch {
		case fd.IsList():
			if fd.Message() == nil {
				return true
			}
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				w.walk(l.Get(i).Message(), fmt.Sprintf("%s[%d]", name, i), depth+1)
			}
		case fd.IsMap():
			if fd.MapValue().Message() == nil {
				return true
			}
			mp := v.Map()
			keys := make([]protoreflect.MapKey, 0, mp.Len())
			mp.Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
				keys = append(keys, k)
				return true
			})
			// Map order is random; sorted keys keep the report stable.
			slices.SortFunc(keys, func(a, b protoreflect.MapKey) int { return strings.Compare(a.String(), b.String()) })
			for _, k := range keys {
				w.walk(mp.Get(k).Message(), fmt.Sprintf("%s[%q]", name, k.String()), depth+1)
			}
		case fd.Message() != nil:
			w.walk(v.Message(), name, depth+1)
		}
		return true
	})
}

// any unpacks a, validates the message inside and walks it.
func (w *walker) any(a *anypb.Any, path string, depth int) {
	inner, err := a.UnmarshalNew()
	if err != nil {
		w.addf(path, "unpack %s: %v", a.GetTypeUrl(), err)
		return
	}
	path = fmt.Sprintf("%s<%s>", path, inner.ProtoReflect().Descriptor().Name())
	if v, ok := inner.(validateAller); ok {
		if err := v.ValidateAll(); err != nil {
			w.add(path, err)
		}
	}
	w.walk(inner.ProtoReflect(), path, depth+1)
}

// check runs the cross-reference and ordering rules on one message.
func (w *walker) check(m proto.Message, path string) {
	switch m := m.(type) {
	case *hcmv3.HttpConnectionManager:
		w.checkFilterOrder(m, path)
	case *routev3.RouteAction:
		if _, ok := m.GetClusterSpecifier().(*routev3.RouteAction_Cluster); ok {
			w.checkCluster(join(path, "cluster"), m.GetCluster())
		}
		for i, wc := range m.GetWeightedClusters().GetClusters() {
			w.checkCluster(fmt.Sprintf("%s.weighted_clusters.clusters[%d].name", path, i), wc.GetName())
		}
	case *corev3.GrpcService:
		if eg := m.GetEnvoyGrpc(); eg != nil {
			w.checkCluster(join(path, "envoy_grpc.cluster_name"), eg.GetClusterName())
		}
	case *header_mutationv3.HeaderMutation:
		w.checkFingerprintHeaders(m, path)
	}
}

func (w *walker) checkCluster(path, name string) {
	if w.clusters == nil || !w.checkClusterRefs {
		return
	}
	if name == "" {
		w.addf(path, "cluster name is empty; name one of the clusters in static_resources.clusters")
		return
	}
	if !w.clusters[name] {
		w.addf(path, "cluster %q is not defined in static_resources.clusters", name)
	}
}

// filterKind tells the HTTP filters apisessions cares about apart, by type when the filter
// has a typed_config and by name otherwise.
func filterKind(f *hcmv3.HttpFilter) string {
	if tc := f.GetTypedConfig(); tc != nil {
		switch tc.GetTypeUrl() {
		case typeHeaderMutation:
			return nameHeaderMutation
		case typeExtProc:
			return nameExtProc
		case typeRouter:
			return nameRouter
		}
		return ""
	}
	switch f.GetName() {
	case nameHeaderMutation, nameExtProc, nameRouter:
		return f.GetName()
	}
	return ""
}

// checkFilterOrder enforces header_mutation → ext_proc → router, router last. The header
// mutation must come first because ext_proc sees the request as the filters before it left it:
// fingerprint headers added later reach the upstream but not apisessions.
func (w *walker) checkFilterOrder(h *hcmv3.HttpConnectionManager, path string) {
	filters := h.GetHttpFilters()
	lastMutation, firstExtProc, router := -1, -1, -1
	for i, f := range filters {
		switch filterKind(f) {
		case nameHeaderMutation:
			lastMutation = i
		case nameExtProc:
			w.extProcFilters++
			if firstExtProc < 0 {
				firstExtProc = i
			}
		case nameRouter:
			if router >= 0 {
				w.addf(fmt.Sprintf("%s.http_filters[%d]", path, i), "a second router filter; keep exactly one, last")
			}
			router = i
		}
	}
	p := join(path, "http_filters")
	switch {
	case router < 0:
		w.addf(p, "no %s filter; the router must be the last HTTP filter", nameRouter)
	case router != len(filters)-1:
		w.addf(fmt.Sprintf("%s[%d]", p, router), "%s is not the last HTTP filter; filters after it never run", nameRouter)
	}
	if firstExtProc >= 0 && router >= 0 && firstExtProc > router {
		w.addf(fmt.Sprintf("%s[%d]", p, firstExtProc), "%s comes after %s; move it before the router", nameExtProc, nameRouter)
	}
	if firstExtProc >= 0 && lastMutation > firstExtProc {
		w.addf(fmt.Sprintf("%s[%d]", p, lastMutation),
			"%s comes after %s; headers it sets (JA3/JA4) would not reach apisessions, move it before ext_proc",
			nameHeaderMutation, nameExtProc)
	}
}

// checkFingerprintHeaders requires that a request header filled from %TLS_JA3_FINGERPRINT% or
// %TLS_JA4_FINGERPRINT% is removed earlier in the same mutation list: an empty formatter result
// adds nothing, so on a plaintext or failed handshake a client's forged copy would survive.
func (w *walker) checkFingerprintHeaders(m *header_mutationv3.HeaderMutation, path string) {
	removed := map[string]bool{}
	for i, mu := range m.GetMutations().GetRequestMutations() {
		if r := mu.GetRemove(); r != "" {
			removed[strings.ToLower(r)] = true
			continue
		}
		hdr := mu.GetAppend().GetHeader()
		if hdr == nil {
			continue
		}
		val := hdr.GetValue()
		if !strings.Contains(val, "%TLS_JA3_FINGERPRINT%") && !strings.Contains(val, "%TLS_JA4_FINGERPRINT%") {
			continue
		}
		if key := strings.ToLower(hdr.GetKey()); !removed[key] {
			w.addf(fmt.Sprintf("%s.mutations.request_mutations[%d]", path, i),
				"header %q is set from a TLS fingerprint without a preceding {remove: %s}; a client-sent copy would survive when the fingerprint is empty",
				key, key)
		}
	}
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}
