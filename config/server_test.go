package config

import (
	"strings"
	"testing"
)

func TestLoopbackListen(t *testing.T) {
	t.Parallel()
	tests := []struct {
		addr string
		want bool
	}{
		{"127.0.0.1:8080", true},
		{"127.1.2.3:0", true},
		{"[::1]:50051", true},
		{"[::ffff:127.0.0.1]:1", true},
		{"localhost:8080", true},
		{"LocalHost.:8080", true},
		{"ui.localhost:8080", true},
		{":8080", false},
		{"0.0.0.0:8080", false},
		{"[::]:8080", false},
		{"10.0.0.5:8080", false},
		{"apisessions.internal:8080", false},
		{"localhost.example.com:8080", false},
		{"not an address", false},
	}
	for _, tc := range tests {
		if got := LoopbackListen(tc.addr); got != tc.want {
			t.Errorf("LoopbackListen(%q) = %v, want %v", tc.addr, got, tc.want)
		}
	}
}

// TestServerExposure: a listener other machines can reach needs authentication or an explicit
// opt-out, and the message names the key, the value and every way out.
func TestServerExposure(t *testing.T) {
	t.Parallel()
	const f = "apisessions.yaml"
	httpFix := []string{"server.api_token_file", "listen on 127.0.0.1", "server.allow_unauthenticated_api: true"}
	grpcFix := []string{"server.grpc_token_file", "client_ca_file", "listen on 127.0.0.1", "server.allow_unauthenticated_grpc: true"}
	tests := []struct {
		name string
		yaml string
		env  map[string]string
		// want maps the start of each expected line to words it must contain; nil = valid.
		want map[string][]string
	}{
		{name: "the defaults listen on loopback", yaml: ""},
		{name: "loopback names need nothing", yaml: "server:\n  grpc_listen: \"[::1]:50051\"\n  http_listen: localhost:8080\n"},
		{name: "every interface without an API token", yaml: "server:\n  http_listen: \":8080\"\n",
			want: map[string][]string{f + `:2: server.http_listen: ":8080" accepts connections from other machines`: httpFix}},
		{name: "a host name may resolve to any interface", yaml: "server:\n  http_listen: apisessions.internal:8080\n",
			want: map[string][]string{f + `:2: server.http_listen: "apisessions.internal:8080" accepts`: httpFix}},
		{name: "an API token opens the HTTP listener", yaml: "server:\n  http_listen: 0.0.0.0:8080\n  api_token_file: /run/secrets/api-token\n"},
		{name: "the explicit HTTP opt-out", yaml: "server:\n  http_listen: \"[::]:8080\"\n  allow_unauthenticated_api: true\n"},
		{name: "every interface without a gRPC token or mTLS", yaml: "server:\n  grpc_listen: 0.0.0.0:50051\n",
			want: map[string][]string{f + `:2: server.grpc_listen: "0.0.0.0:50051" accepts connections from other machines`: grpcFix}},
		{name: "TLS without client certificates authenticates nobody",
			yaml: "server:\n  grpc_listen: 0.0.0.0:50051\n  grpc_tls:\n    cert_file: c.pem\n    key_file: k.pem\n",
			want: map[string][]string{f + `:2: server.grpc_listen: "0.0.0.0:50051" accepts`: grpcFix}},
		{name: "mTLS opens the gRPC listener",
			yaml: "server:\n  grpc_listen: 0.0.0.0:50051\n  grpc_tls:\n    cert_file: c.pem\n    key_file: k.pem\n    client_ca_file: ca.pem\n"},
		{name: "a gRPC token opens the gRPC listener", yaml: "server:\n  grpc_listen: 0.0.0.0:50051\n  grpc_token_file: /run/secrets/grpc-token\n"},
		{name: "the explicit gRPC opt-out", yaml: "server:\n  grpc_listen: \":50051\"\n  allow_unauthenticated_grpc: true\n"},
		{name: "a value from the environment is not echoed", yaml: "server:\n  http_listen: ${ADDR}\n", env: map[string]string{"ADDR": "10.9.8.7:8080"},
			want: map[string][]string{f + `:2: server.http_listen: the value from the environment accepts connections`: httpFix}},
		{name: "a malformed address is reported once", yaml: "server:\n  grpc_listen: \"50051\"\n",
			want: map[string][]string{f + `:2: server.grpc_listen: "50051" is not a host:port address`: nil}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := parseAndValidate(f, []byte(tc.yaml), envMap(tc.env), testSinkTypes)
			got := problemLines(t, err)
			if len(got) != len(tc.want) {
				t.Fatalf("%s: got %d problems, want %d:\n%s", tc.name, len(got), len(tc.want), strings.Join(got, "\n"))
			}
			for prefix, words := range tc.want {
				found := false
				for _, line := range got {
					if !strings.HasPrefix(line, prefix) {
						continue
					}
					found = true
					for _, w := range words {
						if !strings.Contains(line, w) {
							t.Errorf("%s: the problem does not name %q: %s", tc.name, w, line)
						}
					}
					if tc.env != nil && strings.Contains(line, tc.env["ADDR"]) {
						t.Errorf("%s: the problem echoes the environment value: %s", tc.name, line)
					}
				}
				if !found {
					t.Errorf("%s: no problem starts with %q; got:\n%s", tc.name, prefix, strings.Join(got, "\n"))
				}
			}
		})
	}
}

func TestAllowedHostsAndMetricsListen(t *testing.T) {
	t.Parallel()
	const f = "apisessions.yaml"
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{name: "names, globs, addresses and prefixes",
			yaml: "server:\n  allowed_hosts: [apisessions.example.com, \"*.internal.example.com\", 10.1.2.3, \"[fd00::1]\", 10.0.0.0/8, \"fd00::/8\"]\n  metrics_listen: 127.0.0.1:9090\n"},
		{name: "bad entries",
			yaml: "server:\n  allowed_hosts:\n    - \"\"\n    - \"*\"\n    - \"*.*\"\n    - 10.0.0.0/33\n    - ui.example.com:8443\n    - https://ui.example.com\n",
			want: []string{
				f + `:3: server.allowed_hosts[0]: is empty; write the host name analysts use, e.g. apisessions.example.com, or an IP prefix such as 10.0.0.0/8`,
				f + `:4: server.allowed_hosts[1]: "*" matches every host name, which turns the Host check off; list the names analysts use, e.g. apisessions.example.com or *.internal.example.com`,
				f + `:5: server.allowed_hosts[2]: "*.*" matches every host name, which turns the Host check off; list the names analysts use, e.g. apisessions.example.com or *.internal.example.com`,
				f + `:6: server.allowed_hosts[3]: "10.0.0.0/33" is not an IP prefix; write it like 10.0.0.0/8 or fd00::/8`,
				f + `:7: server.allowed_hosts[4]: "ui.example.com:8443" has a port; ports are stripped before matching, so remove it`,
				f + `:8: server.allowed_hosts[5]: "https://ui.example.com" is not an IP prefix; write it like 10.0.0.0/8 or fd00::/8`,
			}},
		{name: "metrics listener on a port of its own",
			yaml: "server:\n  metrics_listen: 127.0.0.1:8080\n",
			want: []string{f + `:2: server.metrics_listen: is the same address as server.http_listen; give the metrics listener its own port, e.g. "127.0.0.1:9090"`}},
		{name: "metrics listener address",
			yaml: "server:\n  metrics_listen: \"9090\"\n",
			want: []string{f + `:2: server.metrics_listen: "9090" is not a host:port address; write e.g. ":9090" or "127.0.0.1:9090"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := parseAndValidate(f, []byte(tc.yaml), envMap(nil), testSinkTypes)
			got := problemLines(t, err)
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("%s: problems\n%s\nwant\n%s", tc.name, strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}
