package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
)

func TestDefaultValidates(t *testing.T) {
	t.Parallel()
	if err := Default().Validate(); err != nil {
		t.Errorf("Default() does not validate:\n%v", err)
	}
}

func TestDefaultIsFresh(t *testing.T) {
	t.Parallel()
	a := Default()
	a.Sessions.Fallback[0] = "changed"
	a.Sinks[0].Name = "changed"
	if b := Default(); b.Sessions.Fallback[0] != FallbackIP || b.Sinks[0].Name != DefaultSinkType || b.Sinks[0].Type != DefaultSinkType {
		t.Error("Default() returns values that share slices between calls")
	}
}

func TestEmptyFileIsDefault(t *testing.T) {
	t.Parallel()
	for _, data := range []string{"", "\n", "# comment\n", "---\n", "null\n"} {
		c, err := Parse("empty.yaml", []byte(data))
		if err != nil {
			t.Fatalf("Parse(%q) = %v", data, err)
		}
		want := Default()
		want.File = "empty.yaml"
		if diff := cmp.Diff(want, c); diff != "" {
			t.Errorf("Parse(%q) is not the defaults (-want +got):\n%s", data, diff)
		}
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	valid := filepath.Join(dir, "valid.yaml")
	invalid := filepath.Join(dir, "invalid.yaml")
	undecodable := filepath.Join(dir, "undecodable.yaml")
	for name, data := range map[string]string{
		valid:       "max_parameters: 5\n",
		invalid:     "max_parameters: 0\n",
		undecodable: "max_paramters: 5\n",
	} {
		if err := os.WriteFile(name, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	load := func(p string) (*Config, error) { return Load(p) }
	loadAndValidate := func(p string) (*Config, error) { return LoadAndValidate(p) }
	tests := []struct {
		name       string
		load       func(string) (*Config, error)
		path       string
		wantFS     error // an fs error the result must wrap
		wantErrors int   // problems in the *Errors, -1 for none expected
	}{
		{name: "Load valid", load: load, path: valid, wantErrors: -1},
		{name: "Load does not validate", load: load, path: invalid, wantErrors: -1},
		{name: "Load reports decoding problems", load: load, path: undecodable, wantErrors: 1},
		{name: "Load missing file", load: load, path: filepath.Join(dir, "missing.yaml"), wantFS: fs.ErrNotExist},
		{name: "LoadAndValidate valid", load: loadAndValidate, path: valid, wantErrors: -1},
		{name: "LoadAndValidate invalid", load: loadAndValidate, path: invalid, wantErrors: 1},
		{name: "LoadAndValidate missing file", load: loadAndValidate, path: filepath.Join(dir, "missing.yaml"), wantFS: fs.ErrNotExist},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := tc.load(tc.path)
			var errs *Errors
			switch {
			case tc.wantFS != nil:
				if !errors.Is(err, tc.wantFS) || errors.As(err, &errs) {
					t.Errorf("error %v: want one wrapping %v and no *Errors", err, tc.wantFS)
				}
			case tc.wantErrors < 0:
				if err != nil || c == nil || c.File != tc.path {
					t.Errorf("got (%v, %v), want a config from %s", c, err, tc.path)
				}
			default:
				if !errors.As(err, &errs) || len(errs.Problems) != tc.wantErrors || c != nil {
					t.Errorf("got (%v, %v), want nil and an *Errors with %d problems", c, err, tc.wantErrors)
				}
				if errs != nil && !strings.HasPrefix(errs.Problems[0].String(), tc.path+":1: ") {
					t.Errorf("problem %q does not begin with the file and line", errs.Problems[0])
				}
			}
		})
	}
}

// TestLoadExpandsProcessEnvironment covers the os.LookupEnv path; t.Setenv rules out
// t.Parallel here.
func TestLoadExpandsProcessEnvironment(t *testing.T) {
	t.Setenv("APISESSIONS_TEST_DATA_DIR", "/srv/data")
	path := filepath.Join(t.TempDir(), "env.yaml")
	if err := os.WriteFile(path, []byte("server:\n  data_dir: ${APISESSIONS_TEST_DATA_DIR}\n  api_token_file: ${APISESSIONS_TEST_UNSET:-/etc/token}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadAndValidate(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Server.DataDir != "/srv/data" || c.Server.APITokenFile != "/etc/token" {
		t.Errorf("data_dir %q, api_token_file %q: want /srv/data and /etc/token", c.Server.DataDir, c.Server.APITokenFile)
	}
	if !c.Positions["server.data_dir"].Env || !c.Positions["server.api_token_file"].Env {
		t.Errorf("positions %+v do not mark the expanded keys", c.Positions)
	}
}

func TestExpandEnv(t *testing.T) {
	t.Parallel()
	env := envMap(map[string]string{"A": "alpha", "EMPTY": "", "B_2": "beta"})
	tests := []struct {
		name, in, want, wantErr string
		wantUsed                bool
	}{
		{name: "no reference", in: "$.token", want: "$.token"},
		{name: "whole value", in: "${A}", want: "alpha", wantUsed: true},
		{name: "inside text", in: "Bearer ${A}-${B_2}!", want: "Bearer alpha-beta!", wantUsed: true},
		{name: "default when unset", in: "${NOPE:-x:y}", want: "x:y", wantUsed: true},
		{name: "default when empty", in: "${EMPTY:-d}", want: "d", wantUsed: true},
		{name: "set but empty without default", in: "<${EMPTY}>", want: "<>", wantUsed: true},
		{name: "escaped", in: "$${A} ${A}", want: "${A} alpha", wantUsed: true},
		{name: "only escaped", in: "$${A}", want: "${A}"},
		{name: "lone dollar", in: "$ $$ $A", want: "$ $$ $A"},
		{name: "unset", in: "x${NOPE}", wantErr: "environment variable NOPE is not set; set it, or give a default with ${NOPE:-value}"},
		{name: "unterminated", in: "${A", wantErr: "${ is not closed; write ${NAME} or ${NAME:-default}, or $${ for a literal ${"},
		{name: "bad name", in: "${A B}", wantErr: `"${A B}" is not a valid variable reference; write ${NAME} or ${NAME:-default} with NAME made of letters, digits and _`},
		{name: "empty name", in: "${}", wantErr: `"${}" is not a valid variable reference; write ${NAME} or ${NAME:-default} with NAME made of letters, digits and _`},
		{name: "leading digit", in: "${1A}", wantErr: `"${1A}" is not a valid variable reference; write ${NAME} or ${NAME:-default} with NAME made of letters, digits and _`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, used, err := expandEnv(tc.in, env)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Errorf("expandEnv(%q) error = %v, want %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want || used != tc.wantUsed {
				t.Errorf("expandEnv(%q) = (%q, %v, %v), want (%q, %v, nil)", tc.in, got, used, err, tc.want, tc.wantUsed)
			}
		})
	}
}

// TestSecretsNeverEchoed puts the same secret in every string key through ${VAR} and in a
// sink header, makes each value wrong, and checks that no message shows it.
func TestSecretsNeverEchoed(t *testing.T) {
	t.Parallel()
	const secret = "Tr0ub4dor&3 {x}"
	yamlText := `server:
  grpc_listen: ${S}
  http_listen: ${S}
traffic:
  hosts: {include: ["${S}/"]}
  client_ip: {from: "${S}"}
sessions:
  fallback: ["${S}"]
  day_boundary: ${S}
  retention: ${S}
parameters:
  - {name: "${S}", in: "${S}", path: "${S}"}
  - {name: a, in: request.header, key: "${S}", decode: "${S}", type: "${S}"}
  - {name: b, in: response.body, path: "$${S}"}
  - {name: c, in: request.path, path: "${S}"}
  - {name: d, in: request.body, path: "$.${S}["}
business_flows:
  rules: [{flow: "${S}", methods: ["${S}"], host: "${S}", path: "${S}"}]
tls: {ja3_header: "${S}"}
inline: {session_header: "${S}"}
max_parameters: ${S}
sinks:
  - {type: file, name: "${S}", path: "-", headers: {Authorization: "Bearer ` + secret + `"}}
  - {type: http, url: "${S}", headers: {"${S}": "${S}"}}
  - {type: "${S}"}
`
	_, err := parseAndValidate("s.yaml", []byte(yamlText), envMap(map[string]string{"S": secret}), testSinkTypes)
	lines := problemLines(t, err)
	if len(lines) < 20 {
		t.Errorf("only %d problems; the test no longer exercises the messages:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	for _, l := range lines {
		if strings.Contains(l, "Tr0ub4dor") {
			t.Errorf("message echoes the secret: %s", l)
		}
	}
}

func TestSinkDefaults(t *testing.T) {
	t.Parallel()
	c, err := parseAndValidate("s.yaml", []byte(`sinks:
  - {type: file, path: a.jsonl}
  - {type: file, path: b.jsonl, queue_size: 7}
  - {type: file, path: c.jsonl, name: file-2}
  - {type: file, path: d.jsonl}
`), envMap(nil), testSinkTypes)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range c.Sinks {
		got = append(got, s.Name)
	}
	if diff := cmp.Diff([]string{"file", "file-3", "file-2", "file-4"}, got); diff != "" {
		t.Errorf("sink names (-want +got):\n%s", diff)
	}
	s := c.Sinks[1]
	if s.QueueSize != 7 || s.BatchSize != DefaultBatchSize || s.FlushInterval != DefaultFlushInterval {
		t.Errorf("sink %+v: written keys must win and the rest take the defaults", s)
	}
	if s := c.Sinks[0]; s.QueueSize != DefaultQueueSize {
		t.Errorf("sink %+v lacks the defaults", s)
	}
}

func TestListsReplaceDefaults(t *testing.T) {
	t.Parallel()
	c, err := Parse("l.yaml", []byte("sessions:\n  fallback: [ja4]\n  retention: 1h\nsinks:\n  - {type: jsonl, queue_size: 7}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"ja4"}, c.Sessions.Fallback); diff != "" {
		t.Errorf("fallback (-want +got):\n%s", diff)
	}
	if len(c.Sinks) != 1 || c.Sinks[0].QueueSize != 7 {
		t.Errorf("sinks %+v: want only the written one", c.Sinks)
	}
	// A mapping merges: keys not written keep their defaults.
	if !c.Sessions.BuiltinKeys || c.Sessions.DayBoundary != "UTC" || c.Sessions.Retention != Duration(time.Hour) {
		t.Errorf("sessions %+v: want unwritten keys at their defaults", c.Sessions)
	}
	// A null scalar keeps the default, as in yaml.v3.
	c, err = Parse("n.yaml", []byte("server:\n  grpc_listen:\n"))
	if err != nil || c.Server.GRPCListen != DefaultGRPCListen {
		t.Errorf("null grpc_listen: got (%q, %v), want the default", c.Server.GRPCListen, err)
	}
}

func TestNormalize(t *testing.T) {
	t.Parallel()
	c := Default()
	c.Traffic.ClientIP.From = "X-Forwarded-For"
	c.Traffic.Hosts.Include = []string{"API.Example.com"}
	c.TLS.JA3Header = "X-JA3"
	c.Inline.SessionHeader = "X-Session"
	c.Attacks.ResponseHeader = "X-WAF"
	c.Parameters = []Parameter{
		{Name: "h", In: InRequestHeader, Key: "Authorization"},
		{Name: "c", In: InRequestCookie, Key: "SID"},
	}
	c.BusinessFlows.Rules = []FlowRule{{Flow: "auth", Methods: []string{"post"}, Host: "Login.Example.com"}}
	c.Sinks = []Sink{DefaultSink("jsonl"), DefaultSink("jsonl")}
	c.Normalize()
	c.Normalize() // idempotent
	got := []string{
		c.Traffic.ClientIP.From, c.Traffic.Hosts.Include[0], c.TLS.JA3Header, c.Inline.SessionHeader,
		c.Attacks.ResponseHeader, c.Parameters[0].Key, c.Parameters[1].Key,
		c.BusinessFlows.Rules[0].Methods[0], c.BusinessFlows.Rules[0].Host, c.Sinks[0].Name, c.Sinks[1].Name,
	}
	want := []string{
		"x-forwarded-for", "api.example.com", "x-ja3", "x-session",
		"x-waf", "authorization", "SID", // cookie names are case-sensitive
		"POST", "login.example.com", "jsonl", "jsonl-2",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("normalized values (-want +got):\n%s", diff)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("normalized config does not validate: %v", err)
	}
}

// TestValidateBuiltInCode covers configurations that never saw a file: problems carry the
// key path only.
func TestValidateBuiltInCode(t *testing.T) {
	t.Parallel()
	c := Default()
	c.Sessions.Retention = 0
	c.Parameters = []Parameter{{Name: "x", In: InRequestQuery, Key: "x", Hidden: true}}
	c.MaxParameters = 1
	c.Parameters = append(c.Parameters, Parameter{Name: "y", In: InRequestQuery, Key: "y"})
	c.Sinks = append(c.Sinks, Sink{Type: DefaultSinkType})
	c.Normalize()
	got := problemLines(t, c.Validate())
	want := []string{
		"sessions.retention: 0s is not more than 0; use a duration such as 168h",
		"sinks[1].queue_size: 0 is too small; use at least 1 (default 10000)",
		"sinks[1].batch_size: 0 is too small; use at least 1 (default 500)",
		"sinks[1].flush_interval: 0s is not more than 0; use a duration such as 1s",
		"sinks[1].timeout: 0s is not more than 0; use a duration such as 30s",
		"sinks[1].retry.initial_interval: 0s is not more than 0; use a duration such as 1s",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
}

func TestProblemString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		p    Problem
		want string
	}{
		{name: "file line path", p: Problem{File: "a.yaml", Line: 3, Path: "x.y", Message: "m"}, want: "a.yaml:3: x.y: m"},
		{name: "file line", p: Problem{File: "a.yaml", Line: 3, Message: "m"}, want: "a.yaml:3: m"},
		{name: "file only", p: Problem{File: "a.yaml", Path: "x", Message: "m"}, want: "a.yaml: x: m"},
		{name: "line only", p: Problem{Line: 2, Message: "m"}, want: "line 2: m"},
		{name: "path only", p: Problem{Path: "x", Message: "m"}, want: "x: m"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tc.p.String(); got != tc.want {
				t.Errorf("String() = %q, want %q", got, tc.want)
			}
		})
	}
	if err := newErrors(nil); err != nil {
		t.Errorf("newErrors(nil) = %v, want nil", err)
	}
}

// TestAliasExpansionBounded makes sure a small file that names a large mapping many times
// is refused quickly instead of expanded.
func TestAliasExpansionBounded(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("x: &h {")
	for i := range 2000 {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("k")
		b.WriteString(strings.Repeat("a", i%7))
		b.WriteString(string(rune('a' + i%26)))
		b.WriteString(": v")
	}
	b.WriteString("}\nsinks: [")
	for i := range 1000 {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("{headers: *h}")
	}
	b.WriteString("]\n")
	start := time.Now()
	_, problems := parse("bomb.yaml", []byte(b.String()), envMap(nil), testSinkTypes)
	found := false
	for _, p := range problems {
		found = found || strings.Contains(p.Message, "expands to more than")
	}
	if !found {
		t.Errorf("no expansion limit problem among %d problems", len(problems))
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("decoding took %v", d)
	}
}

func TestDurationYAML(t *testing.T) {
	t.Parallel()
	var v struct {
		D Duration `yaml:"d"`
	}
	if err := yaml.Unmarshal([]byte("d: 90m\n"), &v); err != nil || v.D != Duration(90*time.Minute) {
		t.Errorf("Unmarshal 90m = (%v, %v)", v.D, err)
	}
	if err := yaml.Unmarshal([]byte("d: 7d\n"), &v); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("Unmarshal 7d error = %v, want one naming line 1", err)
	}
	if err := yaml.Unmarshal([]byte("d: [1]\n"), &v); err == nil {
		t.Error("Unmarshal of a list into a Duration succeeded")
	}
	out, err := yaml.Marshal(struct {
		D Duration `yaml:"d"`
	}{Duration(168 * time.Hour)})
	if err != nil || string(out) != "d: 168h0m0s\n" {
		t.Errorf("Marshal = (%q, %v)", out, err)
	}
	text, _ := Duration(time.Second).MarshalText()
	var back Duration
	if err := back.UnmarshalText(text); err != nil || back != Duration(time.Second) {
		t.Errorf("text round trip = (%v, %v)", back, err)
	}
}

// FuzzParse feeds arbitrary bytes through decoding and validation: it must never panic,
// and whatever it accepts must stay valid when validated again.
func FuzzParse(f *testing.F) {
	// Small seeds: the fuzzer minimizes every new input it finds interesting, and that is
	// slow for inputs the size of a whole configuration file.
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("server: {grpc_listen: \":1\", max_message_bytes: 0x10000, shutdown_timeout: 1s}\n"))
	f.Add([]byte("parameters:\n  - {name: t, in: response.body, path: $.token, group: true}\n  - {name: u, in: request.path, path: \"/u/{id}\"}\n"))
	f.Add([]byte("business_flows: {rules: [{flow: billing, methods: [post], host: \"*.x\", path: /p/**}]}\n"))
	f.Add([]byte("traffic: {hosts: {include: [\"*.example.com\"]}, client_ip: {from: X-Forwarded-For, trusted_hops: 1}}\n"))
	f.Add([]byte("sinks: [~, {type: file}, {path: a, type: http, url: 1}]\nparameters: [~]\n"))
	f.Add([]byte("sessions: {fallback: ${X:-ip}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := parseAndValidate("fuzz.yaml", data, envMap(map[string]string{"X": "ip"}), testSinkTypes)
		if err != nil {
			var errs *Errors
			if !errors.As(err, &errs) || len(errs.Problems) == 0 {
				t.Fatalf("error %v is not a non-empty *Errors", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted config fails a second Validate: %v", err)
		}
	})
}

func TestDeliveryDefaults(t *testing.T) {
	t.Parallel()
	c, err := parseAndValidate("s.yaml", []byte(`sinks:
  - {type: http, url: "https://a/in"}
  - {type: http, url: "https://b/in", retry: {max_elapsed: 1h}, spool: {max_mb: 0}}
  - {type: file, path: f}
`), envMap(nil), testSinkTypes)
	if err != nil {
		t.Fatalf("valid sinks refused: %v", err)
	}
	tests := []struct {
		name string
		got  bool
	}{
		{"retry defaults apply", c.Sinks[0].Retry == Retry{InitialInterval: DefaultRetryInitial, MaxInterval: DefaultRetryMax}},
		{"written retry keys win, the rest default", c.Sinks[1].Retry == Retry{InitialInterval: DefaultRetryInitial, MaxInterval: DefaultRetryMax, MaxElapsed: Duration(time.Hour)}},
		{"the spool defaults to 256 MiB in the data directory", c.Sinks[2].Spool == Spool{MaxMB: DefaultSpoolMaxMB}},
		{"spool max_mb 0 turns it off", c.Sinks[1].Spool.MaxMB == 0},
		{"timeout defaults", c.Sinks[2].Timeout == DefaultSinkTimeout},
	}
	for _, tc := range tests {
		if !tc.got {
			t.Errorf("%s: sinks decoded as %+v", tc.name, c.Sinks)
		}
	}
}
