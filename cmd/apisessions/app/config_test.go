package app

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sinks/jsonl"
)

// The tests here read whole configuration files the way "apisessions validate" does, with
// every sink type of this build: the sink packages test their own keys, config the rest.

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/name, rewriting the file under -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("read golden file (run go test -update to create it): %v", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s differs (-want +got); run go test -update if the change is intended:\n%s", p, diff)
	}
}

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// problemLines returns the lines "apisessions validate" prints for err.
func problemLines(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var errs *config.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error %v is not a *config.Errors", err)
	}
	return errs.Lines()
}

// unsetenv removes name from the environment for the rest of the test.
func unsetenv(t *testing.T, name string) {
	t.Setenv(name, "")
	os.Unsetenv(name)
}

// TestFullYAML decodes config.md's block, with jsonl sinks in place of the types that need a
// destination, and checks every value.
func TestFullYAML(t *testing.T) {
	t.Parallel()
	c, err := config.ParseAndValidate("full.yaml", readTestdata(t, "full.yaml"), sinkTypes()...)
	if err != nil {
		t.Fatalf("full.yaml does not validate:\n%v", err)
	}
	want := config.Default()
	want.File = "full.yaml"
	want.Traffic.Hosts = config.Hosts{Include: []string{}, Exclude: []string{}}
	want.Parameters = []config.Parameter{
		{Name: "login_token", In: config.InResponseBody, Path: "$.token", Group: true, Hashed: true, Line: 30},
		{Name: "query_token", In: config.InRequestQuery, Key: "token", Group: true, Hashed: true, Line: 35},
		{Name: "body_token", In: config.InRequestBody, Path: "$.token", Group: true, Hashed: true, Line: 40},
		{Name: "username", In: config.InRequestHeader, Key: "authorization", Decode: config.DecodeJWT, Path: "$.details.username", Type: config.TypeUser, Line: 45},
		{Name: "email", In: config.InRequestBody, Path: "$.email", Hashed: true, Line: 51},
		{Name: "product_id", In: config.InResponseBody, Path: "$.product_id", Line: 55},
	}
	want.Inline.DynamicMetadata = true // off by default; the file turns it on
	want.BusinessFlows.Rules = []config.FlowRule{{Flow: "billing", Methods: []string{"POST"}, Path: "/api/v1/payments/**", Line: 63}}
	want.Attacks.Metadata = []config.AttackMetadata{{Namespace: "envoy.filters.http.coraza", Key: "malicious", TypesKey: "attack_types", RulesKey: "rule_ids"}}
	archive := config.DefaultSink(jsonl.Type)
	archive.Options = &jsonl.Config{Path: "./data/records.jsonl", MaxSizeMB: jsonl.DefaultMaxSizeMB}
	archive.Name, archive.QueueSize, archive.BatchSize = "archive", 2000, 100
	archive.FlushInterval = config.Duration(250 * time.Millisecond)
	archive.Line = 94
	stdout := config.DefaultSink(jsonl.Type)
	stdout.Options = &jsonl.Config{Path: "-", MaxSizeMB: 100, MaxBackups: jsonl.DefaultMaxBackups}
	stdout.Name, stdout.Line = "jsonl", 91
	want.Sinks = []config.Sink{stdout, archive}
	if diff := cmp.Diff(want, c, cmpopts.IgnoreFields(config.Config{}, "Positions")); diff != "" {
		t.Errorf("full.yaml decoded wrongly (-want +got):\n%s", diff)
	}
	for path, line := range map[string]int{
		"server.grpc_listen":      2,
		"sessions.retention":      27,
		"parameters[3].path":      49,
		"sinks[1].flush_interval": 100,
		"sinks[1].max_backups":    97,
	} {
		if got := c.Positions[path]; got.Line != line || got.Env {
			t.Errorf("Positions[%q] = %+v, want line %d", path, got, line)
		}
	}
}

// TestSpecYAML decodes config.md's block exactly as printed, every sink type included.
func TestSpecYAML(t *testing.T) {
	data := readTestdata(t, "spec.yaml")
	t.Setenv("SIEM_TOKEN", "s3cr3t-token")
	_, err := config.ParseAndValidate("apisessions.yaml", data, sinkTypes()...)
	got := problemLines(t, err)
	golden(t, "spec.golden", strings.Join(got, "\n")+"\n")

	unsetenv(t, "SIEM_TOKEN")
	_, err = config.ParseAndValidate("apisessions.yaml", data, sinkTypes()...)
	got = problemLines(t, err)
	want := "apisessions.yaml:98: sinks[2].headers.Authorization: environment variable SIEM_TOKEN is not set; set it, or give a default with ${SIEM_TOKEN:-value}"
	if !slices.Contains(got, want) || len(got) > 2 {
		t.Errorf("without SIEM_TOKEN got:\n%s\nwant at most the store line and:\n%s", strings.Join(got, "\n"), want)
	}
}

// TestManyProblems checks that one file with a problem in every section reports all of
// them, in file order, and never echoes the secret; "apisessions validate" prints the same.
func TestManyProblems(t *testing.T) {
	t.Setenv("SIEM_TOKEN", "s3cr3t-token")
	_, err := config.ParseAndValidate("many.yaml", readTestdata(t, "many.yaml"), sinkTypes()...)
	got := strings.Join(problemLines(t, err), "\n") + "\n"
	if strings.Contains(got, "s3cr3t") {
		t.Error("the problems echo the secret")
	}
	golden(t, "many.golden", got)

	path := filepath.Join("testdata", "many.yaml")
	if printed := validateOutput(t, path); printed != strings.ReplaceAll(got, "many.yaml:", path+":") {
		t.Errorf("apisessions validate printed:\n%s\nwant:\n%s", printed, got)
	}
}

// validateOutput runs "apisessions validate" on the file at path, which must be invalid, and
// returns what it printed.
func validateOutput(t *testing.T, path string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := Run(context.Background(), []string{"validate", "--config", path}, &stdout, &stderr); code != exitFailure {
		t.Errorf("validate %s exited %d, want %d", path, code, exitFailure)
	}
	return stderr.String()
}

// TestSinkTypeProblems covers what only the whole list of types decides, as the command and
// "apisessions validate" see it: which types exist, and which keys belong to another type
// than the sink's.
func TestSinkTypeProblems(t *testing.T) {
	t.Parallel()
	const f = "apisessions.yaml"
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{
			name: "sink type missing or unknown",
			yaml: "sinks:\n  - path: x\n  - type: jsonlines\n",
			want: []string{
				f + `:2: sinks[0].type: is missing; use store, jsonl, webhook, kafka, otlp`,
				f + `:3: sinks[1].type: "jsonlines" is not a sink type; use store, jsonl, webhook, kafka, otlp`,
			},
		},
		{
			name: "keys that do not apply to the type",
			yaml: "sinks:\n  - type: jsonl\n    path: \"-\"\n    url: https://x\n    headers: {Authorization: secret}\n    topic: t\n",
			want: []string{
				f + `:4: sinks[0].url: does not apply to a jsonl sink; remove it`,
				f + `:5: sinks[0].headers: does not apply to a jsonl sink; remove it`,
				f + `:6: sinks[0].topic: does not apply to a jsonl sink; remove it`,
			},
		},
		{
			name: "keys of a webhook and of kafka on each other",
			yaml: "sinks:\n  - type: kafka\n    brokers: [k:9092]\n    topic: t\n    gzip: true\n    url: https://x\n" +
				"  - type: webhook\n    url: http://siem:8080/in\n    brokers: [k:9092]\n",
			want: []string{
				f + `:5: sinks[0].gzip: does not apply to a kafka sink; remove it`,
				f + `:6: sinks[0].url: does not apply to a kafka sink; remove it`,
				f + `:9: sinks[1].brokers: does not apply to a webhook sink; remove it`,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := config.ParseAndValidate(f, []byte(tc.yaml), sinkTypes()...)
			if diff := cmp.Diff(tc.want, problemLines(t, err)); diff != "" {
				t.Errorf("problems of %q differ (-want +got):\n%s", tc.yaml, diff)
			}
			path := filepath.Join(t.TempDir(), f)
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			want := strings.ReplaceAll(strings.Join(tc.want, "\n")+"\n", f+":", path+":")
			if printed := validateOutput(t, path); printed != want {
				t.Errorf("apisessions validate printed:\n%s\nwant:\n%s", printed, want)
			}
		})
	}
}

// TestSinkFactories checks that every type config accepts is one buildOutputs can create,
// under the name the type gives itself, and that the default sink is one of them.
func TestSinkFactories(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, f := range sinkFactories() {
		if seen[f.Type] {
			t.Errorf("sink type %q is listed twice", f.Type)
		}
		seen[f.Type] = true
		if f.Options == nil || f.Create == nil || f.Options() == nil {
			t.Errorf("sink type %q lacks its options or its constructor", f.Type)
		}
	}
	if !seen[config.DefaultSinkType] {
		t.Errorf("the default sink type %q is not among the factories", config.DefaultSinkType)
	}
}
