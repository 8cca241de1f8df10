package webhook_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/internal/testutil"
	"github.com/apisessions/apisessions/sinks/webhook"
)

// problems returns the lines "apisessions validate" prints for a file holding text.
func problems(t *testing.T, text string) []string {
	return testutil.ConfigProblems(t, text, webhook.Factory.ConfigType())
}

// TestConfigProblems reads a header value from the environment, so it cannot run in
// parallel with other tests.
func TestConfigProblems(t *testing.T) {
	t.Setenv("TOK", "line\nbreak-secret")
	const f = "apisessions.yaml"
	text := "sinks:\n  - type: webhook\n    url: ftp://user:pw@x\n    headers: {\"Content-Type\": a, \"bad name\": b, X-Token: \"${TOK}\"}\n    tls: {cert_file: c.pem}\n" +
		"  - type: webhook\n    url: http://siem:8080/in\n    tls: {insecure_skip_verify: true}\n    gzip: false\n" +
		"  - type: webhook\n    url: \"not a url\"\n    gzip: false\n  - type: webhook\n"
	want := []string{
		f + `:3: sinks[0].url: holds a user name or password; send credentials in headers instead, e.g. Authorization: "Bearer ${SIEM_TOKEN}"`,
		f + `:4: sinks[0].headers.Content-Type: is set by the webhook sink itself; remove it`,
		f + `:4: sinks[0].headers.X-Token: the value holds a line break or NUL, which cannot be sent in a header; remove it`,
		f + `:4: sinks[0].headers.bad name: "bad name" is not a valid header name; use letters, digits and - (e.g. Authorization)`,
		f + `:5: sinks[0].tls.key_file: is empty while cert_file is set; set both or neither`,
		f + `:8: sinks[1].tls: applies to https URLs only; use an https URL or remove tls`,
		f + `:11: sinks[2].url: "not a url" is not an http or https URL; write e.g. https://siem.example.com/ingest`,
		f + `:13: sinks[3].url: is missing; write the endpoint that receives the batches, e.g. https://siem.example.com/ingest`,
	}
	got := problems(t, text)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("problems differ (-want +got):\n%s", diff)
	}
	if strings.Contains(strings.Join(got, "\n"), "secret") || strings.Contains(strings.Join(got, "\n"), "pw@") {
		t.Error("the problems echo a credential")
	}
}

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	c, err := config.ParseAndValidate("s.yaml", []byte("sinks:\n  - {type: webhook, url: \"https://a/in\"}\n  - {type: webhook, url: \"https://b/in\", gzip: false}\n"), webhook.Factory.ConfigType())
	if err != nil {
		t.Fatalf("valid sinks refused: %v", err)
	}
	if !c.Sinks[0].Options.(*webhook.Config).Gzip {
		t.Error("a webhook does not compress by default")
	}
	if c.Sinks[1].Options.(*webhook.Config).Gzip {
		t.Error("gzip: false is not kept")
	}
}
