package envoy

import (
	"strings"
	"testing"
)

// baseInline is a rendered inline bootstrap: it has every filter the negative cases break.
func baseInline(t *testing.T) string {
	t.Helper()
	b, err := Render(nil, Options{Mode: ModeInline})
	if err != nil {
		t.Fatalf("render the inline base: %v", err)
	}
	return string(b)
}

// replaceOnce replaces old, which must occur exactly once in s.
func replaceOnce(t *testing.T, s, old, new string) string {
	t.Helper()
	if n := strings.Count(s, old); n != 1 {
		t.Fatalf("the base bootstrap holds %q %d times, want once", old, n)
	}
	return strings.Replace(s, old, new, 1)
}

// cutBlock removes the lines from the one holding start up to (not including) the next line
// indented no deeper than it, and returns the rest and the removed block.
func cutBlock(t *testing.T, s, start string) (rest, block string) {
	t.Helper()
	lines := strings.SplitAfter(s, "\n")
	from := -1
	for i, l := range lines {
		if strings.Contains(l, start) {
			from = i
			break
		}
	}
	if from < 0 {
		t.Fatalf("the base bootstrap has no line with %q", start)
	}
	indent := len(lines[from]) - len(strings.TrimLeft(lines[from], " "))
	to := from + 1
	for to < len(lines) {
		l := lines[to]
		trimmed := strings.TrimLeft(l, " ")
		if trimmed != "" && trimmed != "\n" && len(l)-len(trimmed) <= indent {
			break
		}
		to++
	}
	block = strings.Join(lines[from:to], "")
	rest = strings.Join(lines[:from], "") + strings.Join(lines[to:], "")
	return rest, block
}

func TestValidateAcceptsRendered(t *testing.T) {
	t.Parallel()
	if err := Validate([]byte(baseInline(t))); err != nil {
		t.Fatalf("the rendered inline bootstrap fails validation: %v", err)
	}
}

func TestValidateRejects(t *testing.T) {
	t.Parallel()
	const (
		extProcLine   = "          - name: envoy.filters.http.ext_proc\n"
		routerLine    = "          - name: envoy.filters.http.router\n"
		mutationLine  = "          - name: envoy.filters.http.header_mutation\n"
		removeJA3Line = "                - remove: \"x-client-ja3\"\n"
	)
	tests := []struct {
		name   string
		mutate func(t *testing.T, base string) string
		want   []string // every one must appear in the error
	}{
		{
			name: "message_timeout over 3600s inside the ext_proc typed_config",
			mutate: func(t *testing.T, b string) string {
				return replaceOnce(t, b, "message_timeout: 0.2s", "message_timeout: 7200s")
			},
			want: []string{"<ExternalProcessor>", "MessageTimeout"},
		},
		{
			name: "empty ext_proc cluster_name",
			mutate: func(t *testing.T, b string) string {
				return replaceOnce(t, b, "envoy_grpc: {cluster_name: apisessions}", `envoy_grpc: {cluster_name: ""}`)
			},
			want: []string{"ClusterName", "envoy_grpc.cluster_name: cluster name is empty"},
		},
		{
			name: "ext_proc names a cluster that does not exist",
			mutate: func(t *testing.T, b string) string {
				return replaceOnce(t, b, "envoy_grpc: {cluster_name: apisessions}", "envoy_grpc: {cluster_name: apisession}")
			},
			want: []string{`cluster "apisession" is not defined`},
		},
		{
			name: "route to an undefined cluster",
			mutate: func(t *testing.T, b string) string {
				return replaceOnce(t, b, "route: {cluster: backend}", "route: {cluster: nowhere}")
			},
			want: []string{"route.cluster", `cluster "nowhere" is not defined`},
		},
		{
			name: "ext_proc after the router",
			mutate: func(t *testing.T, b string) string {
				rest, router := cutBlock(t, b, routerLine)
				return replaceOnce(t, rest, extProcLine, router+extProcLine)
			},
			want: []string{"is not the last HTTP filter", "envoy.filters.http.ext_proc comes after envoy.filters.http.router"},
		},
		{
			name: "header_mutation after ext_proc",
			mutate: func(t *testing.T, b string) string {
				rest, mutation := cutBlock(t, b, mutationLine)
				return replaceOnce(t, rest, routerLine, mutation+routerLine)
			},
			want: []string{"envoy.filters.http.header_mutation comes after envoy.filters.http.ext_proc"},
		},
		{
			name: "no router",
			mutate: func(t *testing.T, b string) string {
				rest, _ := cutBlock(t, b, routerLine)
				return rest
			},
			want: []string{"no envoy.filters.http.router filter"},
		},
		{
			name: "no ext_proc filter",
			mutate: func(t *testing.T, b string) string {
				rest, _ := cutBlock(t, b, extProcLine)
				return rest
			},
			want: []string{"no HTTP filter chain has an envoy.filters.http.ext_proc filter"},
		},
		{
			name: "fingerprint header set without removing the client copy",
			mutate: func(t *testing.T, b string) string {
				return replaceOnce(t, b, removeJA3Line, "")
			},
			want: []string{`header "x-client-ja3" is set from a TLS fingerprint without a preceding {remove: x-client-ja3}`},
		},
		{
			name: "unknown field",
			mutate: func(t *testing.T, b string) string {
				return replaceOnce(t, b, "message_timeout: 0.2s\n", "message_timeout: 0.2s\n              message_timeuot: 1s\n")
			},
			want: []string{"decode bootstrap", "message_timeuot"},
		},
		{
			name: "unresolvable @type",
			mutate: func(t *testing.T, b string) string {
				return replaceOnce(t, b, "envoy.extensions.filters.http.router.v3.Router", "envoy.extensions.filters.http.nosuch.v3.Nothing")
			},
			want: []string{"decode bootstrap", "nosuch"},
		},
		{
			name: "bad enum name",
			mutate: func(t *testing.T, b string) string {
				return replaceOnce(t, b, "route_cache_action: RETAIN", "route_cache_action: KEEP")
			},
			want: []string{"decode bootstrap", "KEEP"},
		},
		{
			name: "cluster defined twice",
			mutate: func(t *testing.T, b string) string {
				return replaceOnce(t, b, "  - name: backend\n", "  - name: apisessions\n")
			},
			want: []string{`cluster name "apisessions" is defined twice`, `cluster "backend" is not defined`},
		},
		{
			name: "nested validation rule of a listener filter",
			mutate: func(t *testing.T, b string) string {
				return replaceOnce(t, b, "port_value: 10000", "port_value: 70000")
			},
			want: []string{"PortValue"},
		},
		{
			name: "not YAML",
			mutate: func(t *testing.T, b string) string {
				return "admin: [unclosed"
			},
			want: []string{"parse YAML"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			doc := tc.mutate(t, baseInline(t))
			err := Validate([]byte(doc))
			if err == nil {
				t.Fatalf("Validate accepted a bootstrap with %s", tc.name)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("the error for %s does not mention %q:\n%v", tc.name, w, err)
				}
			}
		})
	}
}

func TestValidateStopsAtTheBound(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString(baseInline(t))
	// Many routes to clusters that do not exist: the report must stay bounded.
	doc := replaceOnce(t, b.String(), "              - match: {prefix: \"/\"}\n",
		strings.Repeat("              - {match: {prefix: \"/x\"}, route: {cluster: missing}}\n", 3*maxProblems)+
			"              - match: {prefix: \"/\"}\n")
	err := Validate([]byte(doc))
	if err == nil {
		t.Fatal("Validate accepted routes to a missing cluster")
	}
	if n := strings.Count(err.Error(), "is not defined"); n > maxProblems {
		t.Errorf("the report holds %d problems, want at most %d", n, maxProblems)
	}
	if !strings.Contains(err.Error(), "stopped after") {
		t.Errorf("the report does not say it stopped early:\n%v", err)
	}
}

func FuzzValidate(f *testing.F) {
	for _, name := range []string{"observability.yaml", "inline.yaml", "observability-plaintext.yaml"} {
		b, err := Files.ReadFile(name)
		if err != nil {
			f.Fatalf("read %s: %v", name, err)
		}
		f.Add(b)
	}
	f.Add([]byte("static_resources: {clusters: [{name: a}]}"))
	f.Fuzz(func(t *testing.T, doc []byte) {
		// Validate must not panic on any input; whether it accepts is not the question here.
		_ = Validate(doc)
	})
}
