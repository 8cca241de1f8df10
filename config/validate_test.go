package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// envMap is a lookup over a fixed environment, so that tests run in parallel.
func envMap(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

// problemCase is a YAML file and the problems its validation must report, in order.
type problemCase struct {
	name, yaml string
	want       []string
}

// runProblemCases validates each case's YAML as file f (no environment, no sink types) in a
// subtest and compares the problems with the case's.
func runProblemCases(t *testing.T, f string, cases []problemCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := parseAndValidate(f, []byte(tc.yaml), envMap(nil), nil)
			if diff := cmp.Diff(tc.want, problemLines(t, err)); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

// problemLines returns the rendered problems of err, failing the test on any other error.
func problemLines(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error %v is not an *Errors", err)
	}
	if got, want := errs.Error(), strings.Join(errs.Lines(), "\n"); got != want {
		t.Errorf("Error() = %q, want the lines joined: %q", got, want)
	}
	return errs.Lines()
}

// TestParseAndValidate feeds small files through decoding and validation; each case lists
// the exact lines "apisessions validate" would print.
func TestParseAndValidate(t *testing.T) {
	t.Parallel()
	const f = "apisessions.yaml"
	tests := []struct {
		name string
		yaml string
		env  map[string]string
		want []string
	}{
		{name: "empty file is valid", yaml: ""},
		{name: "comments only is valid", yaml: "# nothing here\n"},
		{name: "explicit null document is valid", yaml: "~\n"},

		// Decoding.
		{
			name: "unknown top-level key suggests the closest",
			yaml: "paramaters: []\n",
			want: []string{f + `:1: unknown key "paramaters" (did you mean "parameters"?)`},
		},
		{
			name: "every unknown key is reported, nested ones with their section",
			yaml: "sesions:\n  retention: 1h\nserver:\n  grpc-listen: \":1\"\n  bogus_thing: 1\nparameters:\n  - nmae: x\n    in: request.query\n    key: t\n",
			want: []string{
				f + `:1: unknown key "sesions" (did you mean "sessions"?)`,
				f + `:4: server: unknown key "grpc-listen" (did you mean "grpc_listen"?)`,
				f + `:5: server: unknown key "bogus_thing"; the keys here are grpc_listen, http_listen, grpc_tls, api_token_file, write_tokens_file, allow_unauthenticated_api, allowed_hosts, metrics_listen, grpc_token_file, allow_unauthenticated_grpc, grpc_reflection, data_dir, max_concurrent_streams, max_streams, stream_idle_timeout, max_message_bytes, memory_limit_bytes, shutdown_timeout`,
				f + `:7: parameters[0]: unknown key "nmae" (did you mean "name"?)`,
				f + `:7: parameters[0].name: is missing; name the parameter with lower-case letters, digits and _, e.g. login_token`,
			},
		},
		{
			name: "duplicate key",
			yaml: "sessions:\n  retention: 1h\n  retention: 2h\n",
			want: []string{f + `:3: sessions.retention: key written twice (first on line 2); keep one`},
		},
		{
			name: "string where a number is wanted",
			yaml: "traffic:\n  max_body_bytes: 64KiB\n",
			want: []string{f + `:2: traffic.max_body_bytes: "64KiB" is not a whole number; write digits only, e.g. 65536`},
		},
		{
			name: "negative number into an unsigned key",
			yaml: "server:\n  max_concurrent_streams: -1\n",
			want: []string{f + `:2: server.max_concurrent_streams: "-1" is not a whole number from 0 to 4294967295; write digits only`},
		},
		{
			name: "bad duration",
			yaml: "sessions:\n  retention: 7d\n",
			want: []string{f + `:2: sessions.retention: "7d" is not a duration; use Go syntax such as 30s, 15m or 168h (units: ms, s, m, h)`},
		},
		{
			name: "bad boolean",
			yaml: "inline:\n  dynamic_metadata: yes please\n",
			want: []string{f + `:2: inline.dynamic_metadata: "yes please" is not a boolean; write true or false`},
		},
		{
			name: "mapping where a list is wanted",
			yaml: "sessions:\n  fallback: {ip: true}\n",
			want: []string{f + `:2: sessions.fallback: expected a list (e.g. [a, b] or items starting with "- "); found a mapping`},
		},
		{
			name: "list where a mapping is wanted",
			yaml: "server: [a]\n",
			want: []string{f + `:1: server: expected a mapping with keys such as grpc_listen, http_listen, grpc_tls; found a list`},
		},
		{
			name: "a value that fails to decode is not reported again by validation",
			yaml: "parameters: [abc]\nsinks:\n  - {type: file, path: \"${NOPE}\"}\n",
			want: []string{
				f + `:1: parameters[0]: expected a mapping with keys such as name, in, key; found "abc"`,
				f + `:3: sinks[0].path: environment variable NOPE is not set; set it, or give a default with ${NOPE:-value}`,
			},
		},
		{
			name: "sink headers written as one value are not echoed",
			yaml: "sinks:\n  - type: file\n    path: \"-\"\n    headers: Bearer abc\n",
			want: []string{f + `:4: sinks[0].headers: expected a mapping of names to values; found a single value`},
		},
		{
			name: "scalar where a string is wanted is taken as text",
			yaml: "parameters:\n  - {name: n, in: request.query, key: 123}\n",
		},
		{
			name: "top level must be a mapping",
			yaml: "- a\n- b\n",
			want: []string{f + `:1: the file must be a mapping of keys such as server, sessions, parameters and sinks; found a list`},
		},
		{
			name: "YAML syntax error carries its line",
			yaml: "server:\n  grpc_listen: \":1\"\n bad: [\n",
			want: []string{f + `:3: invalid YAML: did not find expected key; check the indentation and quoting here`},
		},
		{
			name: "unclosed flow list",
			yaml: "a: 1\nb: 2\nc: [1, 2\nd: 4\n",
			want: []string{f + `:3: invalid YAML: did not find expected ',' or ']'; check the indentation and quoting here`},
		},
		{
			name: "YAML scanner error carries its line",
			yaml: "a: 1\nb: 2\nc: 3\nd: @x\n",
			want: []string{f + `:4: invalid YAML: found character that cannot start any token; check the indentation and quoting here`},
		},
		{
			name: "second document",
			yaml: "max_parameters: 5\n---\nmax_parameters: 6\n",
			want: []string{f + `:2: a second YAML document begins here; keep the configuration in one document`},
		},
		{
			name: "merge keys are refused",
			yaml: "base: &b {retention: 1h}\n",
			want: []string{f + `:1: unknown key "base"; the keys here are server, traffic, sessions, parameters, max_parameters, business_flows, tls, attacks, inline, hashing, sinks, state, protection`},
		},
		{
			name: "aliases resolve",
			yaml: "traffic:\n  hosts:\n    include: &h [\"*.example.com\"]\n    exclude: *h\n",
		},
		{
			name: "octal-looking numbers are decimal",
			yaml: "max_parameters: 010\n",
		},

		// Environment.
		{
			name: "unset variable is named, never valued",
			yaml: "server:\n  data_dir: ${DATA_DIR}\n",
			want: []string{f + `:2: server.data_dir: environment variable DATA_DIR is not set; set it, or give a default with ${DATA_DIR:-value}`},
		},
		{
			name: "default used when unset",
			yaml: "server:\n  data_dir: ${DATA_DIR:-/var/lib/apisessions}\n",
		},
		{
			name: "expanded value that is wrong is not echoed",
			yaml: "sessions:\n  retention: ${RETENTION}\n  day_boundary: ${TZ_NAME}\n",
			env:  map[string]string{"RETENTION": "hunter2", "TZ_NAME": "hunter3"},
			want: []string{
				f + `:2: sessions.retention: the value from the environment is not a duration; use Go syntax such as 30s, 15m or 168h (units: ms, s, m, h)`,
				f + `:3: sessions.day_boundary: the value from the environment is not a known time zone; use UTC or an IANA time zone name such as Europe/Berlin or America/New_York`,
			},
		},
		{
			name: "expansion into a number",
			yaml: "max_parameters: ${MAXP}\n",
			env:  map[string]string{"MAXP": "30"},
		},

		// server
		{
			name: "listen addresses",
			yaml: "server:\n  grpc_listen: \"50051\"\n  http_listen: \":99999\"\n",
			want: []string{
				f + `:2: server.grpc_listen: "50051" is not a host:port address; write e.g. ":50051" or "127.0.0.1:50051"`,
				f + `:3: server.http_listen: ":99999" has no valid port; use a number from 0 to 65535, e.g. ":8080"`,
			},
		},
		{
			name: "listen host must be an IP or a name",
			yaml: "server:\n  grpc_listen: \"bad host!:1\"\n  http_listen: \"localhost:8080\"\n",
			want: []string{f + `:2: server.grpc_listen: "bad host!:1" has an invalid host; use an IP address, a host name or nothing (all interfaces), e.g. ":50051"`},
		},
		{
			name: "same listen address twice",
			yaml: "server:\n  grpc_listen: \"127.0.0.1:9000\"\n  http_listen: \"127.0.0.1:9000\"\n",
			want: []string{f + `:3: server.http_listen: is the same address as server.grpc_listen; give each listener its own port`},
		},
		{
			name: "tls cert without key",
			yaml: "server:\n  grpc_tls:\n    cert_file: c.pem\n",
			want: []string{f + `:2: server.grpc_tls.key_file: is empty while cert_file is set; set both or neither`},
		},
		{
			name: "client CA without a certificate",
			yaml: "server:\n  grpc_tls:\n    client_ca_file: ca.pem\n",
			want: []string{f + `:3: server.grpc_tls.client_ca_file: requires cert_file and key_file (client certificates are asked for over TLS only); set them or remove client_ca_file`},
		},
		{
			name: "small message limit, zero shutdown, no data dir",
			yaml: "server:\n  max_message_bytes: 1000\n  shutdown_timeout: 0s\n  data_dir: \"\"\n",
			want: []string{
				f + `:2: server.max_message_bytes: 1000 is too small; use at least 65536 (64 KiB), the default is 16777216 (16 MiB)`,
				f + `:3: server.shutdown_timeout: 0s is not more than 0; use a duration such as 15s`,
				f + `:4: server.data_dir: is empty; name the directory for the hash key and stored data, e.g. ./data`,
			},
		},
		{
			name: "stream bounds cannot be switched off",
			yaml: "server:\n  max_concurrent_streams: 0\n  max_streams: 0\n  stream_idle_timeout: 0s\n",
			want: []string{
				f + `:2: server.max_concurrent_streams: is 0, which would let one connection open any number of streams; use 1 or more, the default is 1000`,
				f + `:3: server.max_streams: 0 is less than 1; use the number of ext_proc streams all connections may hold open at once, the default is 10000`,
				f + `:4: server.stream_idle_timeout: 0s is too short; use at least 1s and more than your longest upstream response time, the default is 1m0s`,
			},
		},
		{
			name: "a memory limit too small to run in",
			yaml: "server:\n  memory_limit_bytes: 1000000\n",
			want: []string{
				f + `:2: server.memory_limit_bytes: 1000000 is below 67108864 (64 MiB); give the memory the process may take (e.g. 90 % of its container's limit), or leave it out: the default follows GOMEMLIMIT or the container's limit`,
			},
		},
		{
			name: "stream bounds at their smallest are valid",
			yaml: "server:\n  max_concurrent_streams: 1\n  max_streams: 1\n  stream_idle_timeout: 1s\n",
		},

		// traffic
		{
			name: "host globs",
			yaml: "traffic:\n  hosts:\n    include: [\"[a\", \"\"]\n    exclude:\n      - api.example.com:443\n      - https://x\n",
			want: []string{
				f + `:3: traffic.hosts.include[0]: "[a" is not a valid glob; close every [ and escape literal *, ? and [ with \`,
				f + `:3: traffic.hosts.include[1]: is empty; write a host name or glob such as *.example.com`,
				f + `:5: traffic.hosts.exclude[0]: "api.example.com:443" has a port; ports are stripped before matching, so remove it`,
				f + `:6: traffic.hosts.exclude[1]: "https://x" contains "/"; a host pattern has no scheme or path, e.g. api.example.com or *.example.com`,
			},
		},
		{
			name: "body limit out of range",
			yaml: "traffic:\n  max_body_bytes: 67108865\n",
			want: []string{f + `:2: traffic.max_body_bytes: 67108865 is out of range; use 0 (read no bodies) to 67108864 (64 MiB), the default is 65536`},
		},
		{
			name: "negative body budget",
			yaml: "traffic:\n  body_budget_bytes: -1\n",
			want: []string{f + `:2: traffic.body_budget_bytes: -1 is negative; use the memory all streams may fill with bodies at once, the default is 268435456 (256 MiB)`},
		},
		{
			name: "body budget below one body",
			yaml: "traffic:\n  max_body_bytes: 65536\n  body_budget_bytes: 1000\n",
			want: []string{f + `:3: traffic.body_budget_bytes: 1000 is less than traffic.max_body_bytes (65536), so no body of that size could be kept; raise it to at least 65536, the default is 268435456 (256 MiB)`},
		},
		{
			name: "body budget of 0 with no body read is valid",
			yaml: "traffic:\n  max_body_bytes: 0\n  body_budget_bytes: 0\n",
		},
		{
			name: "client ip header is lower-cased and accepted",
			yaml: "traffic:\n  client_ip:\n    from: X-Forwarded-For\n    trusted_hops: 1\n",
		},
		{
			name: "client ip problems",
			yaml: "traffic:\n  client_ip:\n    from: \"x forwarded\"\n    trusted_hops: -1\n",
			want: []string{
				f + `:3: traffic.client_ip.from: "x forwarded" is neither source nor a header name; write source or a header name such as x-forwarded-for`,
				f + `:4: traffic.client_ip.trusted_hops: -1 is negative; use 0 or the number of your proxies in front of Envoy`,
			},
		},
		{
			name: "trusted hops with source",
			yaml: "traffic:\n  client_ip:\n    trusted_hops: 2\n",
			want: []string{f + `:3: traffic.client_ip.trusted_hops: applies only when from names a forwarding header; with from: source set xff_num_trusted_hops in Envoy instead, and remove this key`},
		},

		// sessions
		{
			name: "fallback problems",
			yaml: "sessions:\n  fallback: [ip, useragent, ip, ja5]\n",
			want: []string{
				f + `:2: sessions.fallback[1]: "useragent" is not a fallback part (did you mean "user_agent"?); use ip, user_agent, ja3, ja4`,
				f + `:2: sessions.fallback[2]: "ip" is listed twice; remove one`,
				f + `:2: sessions.fallback[3]: "ja5" is not a fallback part (did you mean "ja3"?); use ip, user_agent, ja3, ja4`,
			},
		},
		{
			name: "empty fallback list replaces the default and is refused",
			yaml: "sessions:\n  fallback: []\n",
			want: []string{f + `:2: sessions.fallback: is empty; list at least one of ip, user_agent, ja3, ja4, e.g. [ip, user_agent]`},
		},
		{
			name: "default fallback with ja3 header switched off",
			yaml: "tls:\n  ja3_header: \"\"\n",
			want: []string{f + `:2: tls.ja3_header: ja3 is never known because tls.ja3_header is empty; remove ja3 from sessions.fallback or set tls.ja3_header`},
		},
		{
			name: "written fallback with ja4 header switched off",
			yaml: "sessions:\n  fallback:\n    - ip\n    - ja4\ntls:\n  ja4_header: \"\"\n",
			want: []string{f + `:4: sessions.fallback[1]: ja4 is never known because tls.ja4_header is empty; remove ja4 from sessions.fallback or set tls.ja4_header`},
		},
		{
			name: "fallback without ja3 and no ja3 header",
			yaml: "sessions:\n  fallback: [ip]\ntls:\n  ja3_header: \"\"\n",
		},
		{
			name: "time zones",
			yaml: "sessions:\n  day_boundary: Local\n",
			want: []string{f + `:2: sessions.day_boundary: Local depends on the machine; use UTC or an IANA time zone name such as Europe/Berlin or America/New_York`},
		},
		{
			name: "IANA time zone",
			yaml: "sessions:\n  day_boundary: Europe/Berlin\n",
		},
		{
			name: "session numbers and durations",
			yaml: "sessions:\n  idle_timeout: -1s\n  retention: 0s\n  snapshot_interval: 2m\n  max_live_parts: 0\n  lookup_cache_mb: 0\n",
			want: []string{
				f + `:2: sessions.idle_timeout: -1s is negative; use 0 (off) or a duration such as 30m`,
				f + `:3: sessions.retention: 0s is not more than 0; use a duration such as 168h`,
				f + `:4: sessions.snapshot_interval: 2m0s is out of range; use more than 0 and at most 1m (session records are promised at least every minute)`,
				f + `:5: sessions.max_live_parts: 0 is too small; use at least 1 (default 100000)`,
				f + `:6: sessions.lookup_cache_mb: 0 is too small; use at least 1 (default 32)`,
			},
		},
		{
			name: "risk model",
			yaml: "sessions:\n  risk:\n    half_life: 1m\n    weights: {denied: -1, not_found: 1001}\n    attack_types: {sqli: 60, xss: -5}\n",
			want: []string{
				f + `:3: sessions.risk.half_life: 1m0s is out of range; use 2m0s to 24h0m0s (default 10m0s)`,
				f + `:4: sessions.risk.weights.denied: -1 is out of range; use 0 (off) to 1000 points`,
				f + `:4: sessions.risk.weights.not_found: 1001 is out of range; use 0 (off) to 1000 points`,
				f + `:5: sessions.risk.attack_types.xss: -5 is out of range; use 0 (off) to 1000 points`,
			},
		},
		{
			name: "risk rule threshold",
			yaml: "protection:\n  rules:\n    - {name: r, action: block, match: {risk_at_least: 101}}\n",
			want: []string{f + `:3: protection.rules[0].match.risk_at_least: 101 is out of range; use a risk score from 1 to 100 (0 or absent: no condition)`},
		},

		// parameters
		{
			name: "parameter names",
			yaml: "parameters:\n  - {name: Token, in: request.query, key: t}\n  - {name: tok, in: request.query, key: a}\n  - {name: tok, in: request.query, key: b}\n  - {in: request.query, key: c}\n",
			want: []string{
				f + `:2: parameters[0].name: "Token" is not a valid name; use lower-case letters, digits and _ (at most 64), e.g. login_token`,
				f + `:4: parameters[2].name: "tok" is already the name of parameters[1]; names must be unique`,
				f + `:5: parameters[3].name: is missing; name the parameter with lower-case letters, digits and _, e.g. login_token`,
			},
		},
		{
			name: "unknown source suggests the closest",
			yaml: "parameters:\n  - name: a\n    in: request.headers\n    key: x\n  - name: b\n    in: cookie\n    key: sid\n  - name: c\n",
			want: []string{
				f + `:3: parameters[0].in: "request.headers" is not a source (did you mean "request.header"?); use one of request.header, request.cookie, request.query, request.body, request.path, response.header, response.cookie, response.body`,
				f + `:6: parameters[1].in: "cookie" is not a source (did you mean "request.cookie"?); use one of request.header, request.cookie, request.query, request.body, request.path, response.header, response.cookie, response.body`,
				f + `:8: parameters[2].in: is missing; use one of request.header, request.cookie, request.query, request.body, request.path, response.header, response.cookie, response.body`,
			},
		},
		{
			name: "key required for header, cookie and query",
			yaml: "parameters:\n  - {name: a, in: request.header}\n  - {name: b, in: response.cookie}\n  - {name: c, in: request.query}\n",
			want: []string{
				f + `:2: parameters[0].key: is missing; request.header needs the header name, e.g. authorization`,
				f + `:3: parameters[1].key: is missing; response.cookie needs the cookie name, e.g. sid`,
				f + `:4: parameters[2].key: is missing; request.query needs the query parameter name, e.g. token`,
			},
		},
		{
			name: "path on a header needs decode",
			yaml: "parameters:\n  - name: a\n    in: request.header\n    key: authorization\n    path: $.sub\n",
			want: []string{f + `:5: parameters[0].path: selects inside a decoded value but decode is not set; add decode (jwt, json or base64) or remove path`},
		},
		{
			name: "body parameter shapes",
			yaml: "parameters:\n  - {name: a, in: request.body}\n  - {name: b, in: response.body, key: f, path: $.x}\n  - {name: c, in: request.body, path: $.x, decode: jwt}\n  - {name: d, in: request.body, key: f, path: $.x, decode: base64}\n  - {name: e, in: response.body, key: f}\n",
			want: []string{
				f + `:2: parameters[0]: request.body needs key (a form field of a urlencoded body) or path (JSONPath into a JSON body); add one`,
				f + `:3: parameters[1].path: key and path together need decode: key names a form field and path selects inside its decoded value; add decode or remove key or path`,
				f + `:4: parameters[2].decode: on a body applies to a form field; add key, or remove decode (path already reads JSON bodies)`,
			},
		},
		{
			name: "body parameter with bodies switched off",
			yaml: "traffic:\n  max_body_bytes: 0\nparameters:\n  - name: a\n    in: response.body\n    path: $.token\n",
			want: []string{f + `:5: parameters[0].in: reads the body but traffic.max_body_bytes is 0, so no body is ever read; raise traffic.max_body_bytes or remove this parameter`},
		},
		{
			name: "request path parameters",
			yaml: "parameters:\n  - {name: a, in: request.path, path: \"/api/sessions/{sid}/**\"}\n  - {name: b, in: request.path, path: /api/sessions/*}\n  - {name: c, in: request.path, path: \"/a/{x}/{y}\"}\n  - {name: d, in: request.path, path: \"api/{x}\"}\n  - {name: e, in: request.path, key: k, decode: jwt}\n",
			want: []string{
				f + `:3: parameters[1].path: "/api/sessions/*" has no {name} capture, so it never yields a value; write {name} where the value is, e.g. /api/sessions/{sid}/**`,
				f + `:4: parameters[2].path: "/a/{x}/{y}" has 2 captures; keep exactly one {name} and write * for the other segments`,
				f + `:5: parameters[3].path: "api/{x}" is not a valid path pattern: must begin with "/" (segments: literal, *, **, {name})`,
				f + `:6: parameters[4].key: does not apply to request.path; put the pattern in path and remove key`,
				f + `:6: parameters[4].decode: does not apply to request.path; remove it`,
				f + `:6: parameters[4].path: is missing; request.path needs a path pattern with one {name} capture, e.g. /api/sessions/{sid}/**`,
			},
		},
		{
			name: "JSONPath problems",
			yaml: "parameters:\n  - name: a\n    in: response.body\n    path: $.user[\n  - name: b\n    in: response.body\n    path: token\n  - name: c\n    in: request.body\n    path: $.a.\n",
			want: []string{
				f + `:4: parameters[0].path: "$.user[" is not valid JSONPath (not terminated at 8); close the bracket`,
				f + `:7: parameters[1].path: "token" must start with $ (the whole value); write e.g. "$.token"`,
				f + `:10: parameters[2].path: "$.a." is not valid JSONPath (not terminated at 5); name a field after the last dot`,
			},
		},
		{
			name: "decode and type values",
			yaml: "parameters:\n  - {name: a, in: request.header, key: authorization, decode: jwtt, type: users}\n",
			want: []string{
				f + `:2: parameters[0].decode: "jwtt" is not a decoding (did you mean "jwt"?); use jwt, json or base64`,
				f + `:2: parameters[0].type: "users" is not a parameter type (did you mean "user"?); use user, role, or leave type out`,
			},
		},
		{
			name: "pseudo-headers on the wrong side",
			yaml: "parameters:\n  - {name: a, in: request.header, key: \":status\"}\n  - {name: b, in: response.header, key: \":path\"}\n  - {name: c, in: request.header, key: \":foo\"}\n  - {name: d, in: response.header, key: \":status\"}\n  - {name: e, in: request.header, key: \":Authority\"}\n",
			want: []string{
				f + `:2: parameters[0].key: :status is a response pseudo-header; use in: response.header`,
				f + `:3: parameters[1].key: ":path" is a request pseudo-header; use in: request.header`,
				f + `:4: parameters[2].key: ":foo" is not a pseudo-header Envoy sends; requests carry :method, :path, :authority, :scheme`,
			},
		},
		{
			name: "headers Envoy never sends",
			yaml: "parameters:\n  - {name: a, in: request.header, key: Host}\n  - {name: b, in: request.header, key: transfer-encoding}\n  - {name: c, in: request.header, key: set-cookie}\n  - {name: d, in: response.header, key: cookie}\n  - {name: e, in: request.header, key: \"x user\"}\n  - {name: f, in: request.cookie, key: \"a=b\"}\n",
			want: []string{
				f + `:2: parameters[0].key: Envoy passes the Host header as :authority; write key: ":authority"`,
				f + `:3: parameters[1].key: "transfer-encoding" is a connection header that Envoy consumes and never passes on; choose another header`,
				f + `:4: parameters[2].key: set-cookie is a response header; use in: response.cookie or in: response.header`,
				f + `:5: parameters[3].key: cookie is a request header; use in: request.cookie or in: request.header`,
				f + `:6: parameters[4].key: "x user" is not a valid header name, so it never matches; use letters, digits and -, e.g. x-session-token`,
				f + `:7: parameters[5].key: "a=b" is not a valid cookie name, so it never matches; cookie names have no spaces, quotes, =, ; or ,`,
			},
		},
		{
			name: "shadowed grouping parameter",
			yaml: "parameters:\n  - {name: a, in: request.header, key: X-Token, group: true}\n  - {name: b, in: request.header, key: x-token}\n  - {name: c, in: request.header, key: x-token, group: true}\n  - {name: d, in: request.cookie, key: SID, group: true}\n  - {name: e, in: request.cookie, key: sid, group: true}\n",
			want: []string{f + `:4: parameters[2]: reads the same value as parameters[0] (a), which is tried first, so this grouping key never decides; remove it or change in, key, path or decode`},
		},
		{
			name: "too many parameters",
			yaml: "max_parameters: 2\nparameters:\n  - {name: a, in: request.query, key: a}\n  - {name: b, in: request.query, key: b}\n  - {name: c, in: request.query, key: c}\n",
			want: []string{f + `:2: parameters: 3 parameters are configured but max_parameters is 2; remove 1 or raise max_parameters`},
		},
		{
			name: "max_parameters out of range",
			yaml: "max_parameters: 1001\n",
			want: []string{f + `:1: max_parameters: 1001 is out of range; use 1 to 1000 (default 20)`},
		},

		// business flows
		{
			name: "flow rules",
			yaml: "business_flows:\n  rules:\n    - flow: biling\n      methods: [post, \"GE T\"]\n      host: \"[x\"\n      path: /a/**b\n    - path: /x\n    - flow: auth\n",
			want: []string{
				f + `:3: business_flows.rules[0].flow: "biling" is not a business flow (did you mean "billing"?); use one of ai_llm, account_creation, account_management, admin, auth, billing, sms_gateway`,
				f + `:4: business_flows.rules[0].methods[1]: "GE T" is not an HTTP method; write a method such as GET or POST`,
				f + `:5: business_flows.rules[0].host: "[x" is not a valid glob; close every [ and escape literal *, ? and [ with \`,
				f + `:6: business_flows.rules[0].path: "/a/**b" is not a valid path pattern: "**" must be a whole segment (segments: literal, *, **, {name})`,
				f + `:7: business_flows.rules[1].flow: is missing; use one of ai_llm, account_creation, account_management, admin, auth, billing, sms_gateway`,
				f + `:8: business_flows.rules[2]: matches every request; add methods, host or path (write path: /** if every request really belongs to auth)`,
			},
		},

		// tls, attacks, inline
		{
			name: "header names",
			yaml: "tls:\n  ja3_header: \"x ja3\"\n  ja4_header: \":ja4\"\nattacks:\n  response_header: \"a,b\"\ninline:\n  session_header: X-Envoy-Session\n",
			want: []string{
				f + `:2: tls.ja3_header: "x ja3" is not a valid header name; use letters, digits and -, e.g. x-client-ja3`,
				f + `:3: tls.ja4_header: ":ja4" is a pseudo-header; name a regular header such as x-client-ja4`,
				f + `:5: attacks.response_header: "a,b" is not a valid header name; use letters, digits and -, e.g. x-waf-attack`,
				f + `:7: inline.session_header: "x-envoy-session" is a header Envoy does not let ext_proc set; choose another name such as x-apisessions-session`,
			},
		},
		{
			name: "same fingerprint header twice",
			yaml: "tls:\n  ja3_header: x-fp\n  ja4_header: X-FP\n",
			want: []string{f + `:3: tls.ja4_header: is the same header as tls.ja3_header; give each fingerprint its own header, e.g. x-client-ja4`},
		},
		{
			name: "attack metadata needs namespace and key",
			yaml: "attacks:\n  metadata:\n    - types_key: t\n",
			want: []string{
				f + `:3: attacks.metadata[0].namespace: is missing; name the dynamic metadata namespace the filter writes, e.g. envoy.filters.http.coraza`,
				f + `:3: attacks.metadata[0].key: is missing; name the key whose value marks the request malicious, e.g. malicious`,
			},
		},
		{
			name: "scrub field names",
			yaml: "attacks:\n  scrub_fields:\n    defaults: false\n    extra:\n      - ssn\n      - \"\"\n      - \"card number\"\n      - X-Card_No.v2\n",
			want: []string{
				f + `:6: attacks.scrub_fields.extra[1]: is empty; name a field whose values to hide, e.g. ssn`,
				f + `:7: attacks.scrub_fields.extra[2]: "card number" is not a field name; use at most 64 letters, digits, -, _ and ., e.g. card_number`,
			},
		},
		{
			name: "scrub fields take a mapping",
			yaml: "attacks:\n  scrub_fields: [password]\n",
			want: []string{f + `:2: attacks.scrub_fields: expected a mapping with keys such as defaults, extra; found a list`},
		},
		{
			name: "inline session header may be switched off",
			yaml: "inline:\n  session_header: \"\"\n",
		},

		// sinks
		{
			name: "empty sinks replace the default and are refused",
			yaml: "sinks:\n",
			want: []string{f + `:1: sinks: no sink is configured, so records go nowhere; add one, e.g. - {type: jsonl, path: "-"}`},
		},
		{
			name: "delivery keys",
			yaml: "sinks:\n  - type: file\n    path: a\n    timeout: 0s\n    retry: {initial_interval: 0s, max_interval: -1s, max_elapsed: -1s}\n    spool: {max_mb: -1, dir: /s}\n" +
				"  - type: file\n    path: b\n    retry: {initial_interval: 10s, max_interval: 5s}\n    spool: {dir: /s/}\n",
			want: []string{
				f + `:4: sinks[0].timeout: 0s is not more than 0; use a duration such as 30s`,
				f + `:5: sinks[0].retry.initial_interval: 0s is not more than 0; use a duration such as 1s`,
				f + `:5: sinks[0].retry.max_interval: -1s is less than initial_interval (0s); use at least that, e.g. 30s`,
				f + `:5: sinks[0].retry.max_elapsed: -1s is negative; use 0 (retry until delivered) or a duration such as 1h`,
				f + `:6: sinks[0].spool.max_mb: -1 is negative; use 0 (no spool) or a size in MiB (default 256)`,
				f + `:9: sinks[1].retry.max_interval: 5s is less than initial_interval (10s); use at least that, e.g. 30s`,
				f + `:10: sinks[1].spool.dir: is also the spool of sinks[0]; give each sink its own directory`,
			},
		},
		{
			name: "sink queue and batch values",
			yaml: "sinks:\n  - type: file\n    path: a.jsonl\n    queue_size: 0\n    batch_size: 0\n    flush_interval: 0s\n",
			want: []string{
				f + `:4: sinks[0].queue_size: 0 is too small; use at least 1 (default 10000)`,
				f + `:5: sinks[0].batch_size: 0 is too small; use at least 1 (default 500)`,
				f + `:6: sinks[0].flush_interval: 0s is not more than 0; use a duration such as 1s`,
			},
		},
		{
			name: "sink names",
			yaml: "sinks:\n  - {type: file, path: a, name: out}\n  - {type: file, path: b, name: out}\n  - {type: file, path: c, name: \"bad name\"}\n",
			want: []string{
				f + `:3: sinks[1].name: "out" is already the name of sinks[0]; give each sink its own name`,
				f + `:4: sinks[2].name: "bad name" is not a valid sink name; use letters, digits, ., _ and - (at most 64): it labels logs and metrics`,
			},
		},
		{
			name: "sink type missing, unknown or not text",
			yaml: "sinks:\n  - path: x\n  - type: fil\n    path: x\n  - ~\n  - type: [file]\n    path: x\n  - type: \"${T}\"\n",
			env:  map[string]string{"T": "secret-type"},
			want: []string{
				f + `:2: sinks[0].type: is missing; use file, http`,
				f + `:3: sinks[1].type: "fil" is not a sink type (did you mean "file"?); use file, http`,
				f + `:5: sinks[2].type: is missing; use file, http`,
				f + `:6: sinks[3].type: expected a text value; found a list`,
				f + `:8: sinks[4].type: the value from the environment is not a sink type; use file, http`,
			},
		},
		{
			name: "keys of another type, their values checked first",
			yaml: "sinks:\n  - type: file\n    path: \"-\"\n    url: https://x\n    headers: {Authorization: secret}\n    retri: x\n" +
				"  - type: http\n    url: https://x\n    path: [a]\n",
			want: []string{
				f + `:4: sinks[0].url: does not apply to a file sink; remove it`,
				f + `:5: sinks[0].headers: does not apply to a file sink; remove it`,
				f + `:6: sinks[0]: unknown key "retri" (did you mean "retry"?)`,
				f + `:9: sinks[1].path: expected a text value; found a list`,
			},
		},
		{
			name: "keys of the type are decoded and validated in any order",
			yaml: "sinks:\n  - path: a\n    keep: -1\n    type: file\n  - {path: a, type: file, keep: x}\n",
			want: []string{
				f + `:3: sinks[0].keep: -1 is negative; use 0 or more`,
				f + `:5: sinks[1].keep: "x" is not a whole number; write digits only, e.g. 65536`,
				f + `:5: sinks[1].path: is also the file of sinks[0]; give each sink its own file`,
			},
		},
		{
			name: "unknown sink keys name every key a sink may have",
			yaml: "sinks:\n  - type: http\n    url: https://x\n    zzz: 1\n",
			want: []string{
				f + `:4: sinks[0]: unknown key "zzz"; the keys here are type, name, path, keep, url, headers, queue_size, batch_size, flush_interval, timeout, retry, spool`,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := parseAndValidate(f, []byte(tc.yaml), envMap(tc.env), testSinkTypes)
			got := problemLines(t, err)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("problems of %q differ (-want +got):\n%s", tc.yaml, diff)
			}
		})
	}
}
