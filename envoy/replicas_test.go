package envoy

import (
	"slices"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	ringhashv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/ring_hash/v3"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions"
)

// replicaSet is the apisessions cluster of a replica-set bootstrap with its parts unpacked.
type replicaSet struct {
	cluster   *clusterv3.Cluster
	ring      *ringhashv3.RingHash // nil without affinity
	metadata  map[string]string    // initial_metadata of the ext_proc gRPC service
	addresses []string
}

func unpackReplicas(t *testing.T, r rendered) replicaSet {
	t.Helper()
	rs := replicaSet{cluster: r.cluster(t, "apisessions"), metadata: map[string]string{}}
	for _, md := range r.extProc.GetGrpcService().GetInitialMetadata() {
		if _, dup := rs.metadata[md.GetKey()]; dup {
			t.Errorf("initial_metadata sets %q twice", md.GetKey())
		}
		rs.metadata[md.GetKey()] = md.GetValue()
	}
	for _, e := range rs.cluster.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints() {
		sa := e.GetEndpoint().GetAddress().GetSocketAddress()
		rs.addresses = append(rs.addresses, sa.GetAddress())
	}
	if p := rs.cluster.GetLoadBalancingPolicy().GetPolicies(); len(p) > 0 {
		rs.ring = &ringhashv3.RingHash{}
		if err := p[0].GetTypedExtensionConfig().GetTypedConfig().UnmarshalTo(rs.ring); err != nil {
			t.Fatalf("unpack the ring hash policy: %v", err)
		}
	}
	return rs
}

// hashKeys lists the hash policies as "header:NAME" and "cookie:NAME", checking each is
// terminal and each header is one initial_metadata fills.
func (rs replicaSet) hashKeys(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, hp := range rs.ring.GetConsistentHashingLbConfig().GetHashPolicy() {
		if !hp.GetTerminal() {
			t.Errorf("hash policy %v is not terminal: later keys would mix into the hash", hp)
		}
		switch {
		case hp.GetHeader() != nil:
			name := hp.GetHeader().GetHeaderName()
			if _, ok := rs.metadata[name]; !ok {
				t.Errorf("hash policy reads header %q, which initial_metadata never sets", name)
			}
			out = append(out, "header:"+name)
		case hp.GetCookie() != nil:
			if rs.metadata["cookie"] != "%REQ(cookie)%" {
				t.Errorf("cookie hash policy without the request cookies in initial_metadata: %v", rs.metadata)
			}
			if hp.GetCookie().GetTtl() != nil {
				t.Error("a cookie hash policy with a ttl would make Envoy set cookies")
			}
			out = append(out, "cookie:"+hp.GetCookie().GetName())
		default:
			t.Errorf("unexpected hash policy %v", hp)
		}
	}
	return out
}

// checkReplicaCluster checks what every replica-set cluster needs, whatever the affinity.
func checkReplicaCluster(t *testing.T, r rendered, rs replicaSet) {
	t.Helper()
	c := rs.cluster
	hc := c.GetHealthChecks()
	if len(hc) != 1 || hc[0].GetGrpcHealthCheck().GetServiceName() != healthServiceName {
		t.Errorf("health checks %v, want one gRPC health check of %s", hc, healthServiceName)
	}
	if !c.GetIgnoreHealthOnHostRemoval() {
		t.Error("ignore_health_on_host_removal is off: replicas that left DNS would keep streams")
	}
	if c.GetOutlierDetection().GetMaxEjectionPercent().GetValue() > 50 {
		t.Errorf("outlier detection may eject %v%% of the replicas", c.GetOutlierDetection().GetMaxEjectionPercent())
	}
	if th := c.GetCircuitBreakers().GetThresholds(); len(th) == 0 || th[0].GetMaxRequests().GetValue() < 100000 {
		t.Errorf("circuit breakers %v, want max_requests of at least 100000 over the set", th)
	}
	if !r.extProc.GetFailureModeAllow() {
		t.Error("failure_mode_allow is off in a replica-set bootstrap")
	}
}

func TestRenderReplicas(t *testing.T) {
	t.Parallel()
	builtinCount := len(sessions.BuiltinCookies) + len(sessions.BuiltinHeaders) + 1
	tests := []struct {
		name  string
		cfg   *config.Config
		opts  Options
		check func(t *testing.T, rs replicaSet)
	}{
		{
			name: "replicas headless service",
			opts: Options{Replicas: true, Processor: "apisessions-grpc.apisessions.svc.cluster.local:50051"},
			check: func(t *testing.T, rs replicaSet) {
				if rs.cluster.GetType() != clusterv3.Cluster_STRICT_DNS {
					t.Errorf("cluster type %v, want STRICT_DNS", rs.cluster.GetType())
				}
				keys := rs.hashKeys(t)
				// Built-in cookies, built-in headers and authorization, then the client address.
				if len(keys) != builtinCount+1 || keys[0] != "cookie:"+sessions.BuiltinCookies[0] || keys[len(keys)-1] != "header:x-apisessions-affinity-ip" {
					t.Errorf("hash keys %v, want the built-in identifiers then the client address", keys)
				}
				if got := rs.metadata["x-apisessions-affinity-ip"]; got != "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%" {
					t.Errorf("client address metadata %q", got)
				}
				if got := rs.ring.GetConsistentHashingLbConfig().GetHashBalanceFactor().GetValue(); got < 100 || got > 200 {
					t.Errorf("hash_balance_factor %d, want a bound between 100 and 200", got)
				}
			},
		},
		{
			name: "replicas without affinity",
			opts: Options{Replicas: true, Affinity: AffinityNone, Processor: "10.0.0.1:50051,10.0.0.2:50051,[fd00::3]:50051"},
			check: func(t *testing.T, rs replicaSet) {
				if rs.cluster.GetType() != clusterv3.Cluster_STATIC || !slices.Equal(rs.addresses, []string{"10.0.0.1", "10.0.0.2", "fd00::3"}) {
					t.Errorf("cluster %v with %v, want STATIC with the three addresses", rs.cluster.GetType(), rs.addresses)
				}
				if rs.ring != nil || rs.cluster.GetLbPolicy() != clusterv3.Cluster_LEAST_REQUEST {
					t.Errorf("lb_policy %v with a hash policy %v, want LEAST_REQUEST alone", rs.cluster.GetLbPolicy(), rs.ring)
				}
				if len(rs.metadata) != 0 {
					t.Errorf("initial_metadata %v without affinity or token", rs.metadata)
				}
			},
		},
		{
			name: "replicas grouping parameters and token",
			cfg: func() *config.Config {
				c := withParams(
					config.Parameter{Name: "api_key", In: config.InRequestHeader, Key: "X-Api-Key", Group: true},
					config.Parameter{Name: "sess", In: config.InRequestCookie, Key: "app_session", Group: true},
					config.Parameter{Name: "body_token", In: config.InRequestBody, Path: "$.token", Group: true},
					config.Parameter{Name: "tenant", In: config.InRequestHeader, Key: "x-tenant"},
				)
				c.Sessions.BuiltinKeys = false
				c.Sessions.Fallback = []string{config.FallbackUserAgent}
				c.Server.GRPCTokenFile = "/run/secrets/grpc-token"
				return c
			}(),
			opts: Options{Mode: ModeInline, Replicas: true, Processor: "apisessions-grpc:50051", GRPCToken: "tok-0123456789abcdef"},
			check: func(t *testing.T, rs replicaSet) {
				want := []string{"header:x-apisessions-affinity-1", "cookie:app_session"}
				if got := rs.hashKeys(t); !slices.Equal(got, want) {
					t.Errorf("hash keys %v, want %v (grouping keys Envoy can read, no fallback ip)", got, want)
				}
				if rs.metadata["x-apisessions-affinity-1"] != "%REQ(x-api-key)%" || rs.metadata["authorization"] != "Bearer tok-0123456789abcdef" {
					t.Errorf("initial_metadata %v, want the token and x-api-key", rs.metadata)
				}
			},
		},
		{
			name: "replicas explicit affinity",
			cfg: func() *config.Config {
				c := config.Default()
				c.Traffic.ClientIP = config.ClientIP{From: "X-Real-IP", TrustedHops: 1}
				return c
			}(),
			opts: Options{Replicas: true, Affinity: "cookie:sid, header:X-User, ip, cookie:sid", Processor: "a.internal:50051,b.internal:50051"},
			check: func(t *testing.T, rs replicaSet) {
				want := []string{"cookie:sid", "header:x-apisessions-affinity-1", "header:x-apisessions-affinity-ip"}
				if got := rs.hashKeys(t); !slices.Equal(got, want) {
					t.Errorf("hash keys %v, want %v", got, want)
				}
				if rs.metadata["x-apisessions-affinity-ip"] != "%REQ(x-real-ip)%" {
					t.Errorf("client address metadata %q, want the header apisessions reads it from", rs.metadata["x-apisessions-affinity-ip"])
				}
				if !slices.Equal(rs.addresses, []string{"a.internal", "b.internal"}) {
					t.Errorf("addresses %v", rs.addresses)
				}
			},
		},
		{
			name: "replicas over mtls",
			cfg: func() *config.Config {
				c := config.Default()
				c.Server.GRPCTLS = config.GRPCTLS{CertFile: "/tls/apisessions.crt", KeyFile: "/tls/apisessions.key", ClientCAFile: "/tls/ca.crt"}
				return c
			}(),
			opts: Options{Replicas: true, Processor: "apisessions-grpc:50051"},
			check: func(t *testing.T, rs replicaSet) {
				if rs.cluster.GetTransportSocket() == nil {
					t.Error("no TLS transport socket; health checks and streams would speak cleartext")
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := Render(tc.cfg, tc.opts)
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			if err := Validate(got); err != nil {
				t.Fatalf("the rendered bootstrap fails validation: %v", err)
			}
			r := unpack(t, got)
			if err := r.boot.ValidateAll(); err != nil {
				t.Fatalf("Bootstrap.ValidateAll: %v", err)
			}
			rs := unpackReplicas(t, r)
			if rs.ring != nil {
				if err := rs.ring.ValidateAll(); err != nil {
					t.Fatalf("RingHash.ValidateAll: %v", err)
				}
				if !strings.Contains(string(got), "# Envoy >= 1.35 (") {
					t.Error("a bootstrap with a load balancer hash_policy does not say it needs Envoy 1.35")
				}
			}
			checkReplicaCluster(t, r, rs)
			tc.check(t, rs)
			checkGolden(t, tc.name, got)
		})
	}
}

func TestRenderReplicasErrors(t *testing.T) {
	t.Parallel()
	mtls := func(c *config.Config) {
		c.Server.GRPCTLS = config.GRPCTLS{CertFile: "/c", KeyFile: "/k"}
	}
	tests := []renderError{
		{name: "list without replicas", opts: Options{Processor: "a:1,b:1"}, want: "add --replicas"},
		{name: "affinity without replicas", opts: Options{Affinity: "ip"}, want: "affinity is for a replica set"},
		{name: "duplicate address", opts: Options{Replicas: true, Processor: "a:1, a:1"}, want: "listed twice"},
		{name: "bad address in list", opts: Options{Replicas: true, Processor: "a:1,b"}, want: `processor "b": missing port`},
		{name: "too many addresses", opts: Options{Replicas: true, Processor: strings.Repeat("a:1,", maxProcessors) + "a:2"}, want: "at most 64"},
		{name: "tls with several names", cfg: mtls, opts: Options{Replicas: true, Processor: "a:1,b:1"}, want: "one DNS name that resolves to every replica"},
		{name: "unknown affinity", opts: Options{Replicas: true, Affinity: "query:token"}, want: "unknown source"},
		{name: "bad affinity header", opts: Options{Replicas: true, Affinity: "header:x y"}, want: "not a header name"},
		{name: "bad affinity cookie", opts: Options{Replicas: true, Affinity: "cookie:a;b"}, want: "not a cookie name"},
		{name: "empty affinity item", opts: Options{Replicas: true, Affinity: "ip,"}, want: "unknown source"},
	}
	checkRenderErrors(t, tests)
}

// TestRenderReplicasHostileKeys: grouping keys come from the configuration and end up in
// formatter strings; none may inject another formatter or a YAML line.
func TestRenderReplicasHostileKeys(t *testing.T) {
	t.Parallel()
	c := withParams(
		config.Parameter{Name: "a", In: config.InRequestHeader, Key: "x%DYNAMIC_METADATA(a:b)%", Group: true},
		config.Parameter{Name: "b", In: config.InRequestCookie, Key: "c\"\n- {key: evil}", Group: true},
	)
	out, err := Render(c, Options{Replicas: true, Processor: "apisessions:50051"})
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	if strings.Contains(string(out), "DYNAMIC_METADATA") || strings.Contains(string(out), "evil") {
		t.Errorf("a hostile grouping key reached the bootstrap:\n%s", out)
	}
}
