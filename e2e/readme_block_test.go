package e2e

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/explore"
	"github.com/apisessions/apisessions/internal/secretfile"
	"github.com/apisessions/apisessions/internal/testutil/appconfig"
	"github.com/apisessions/apisessions/protect"
	"github.com/apisessions/apisessions/sessions"
	"github.com/apisessions/apisessions/sessions/record"
)

type dropRecords struct{}

func (dropRecords) Emit(record.Record) {}

// readmeBlock is the shell block of the README's "Block a session".
func readmeBlock(t *testing.T) string {
	t.Helper()
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(readme), "\n### Block a session\n")
	if !ok {
		t.Fatal(`the README has no "Block a session" section`)
	}
	_, code, ok := strings.Cut(sec, "```sh\n")
	code, _, ok2 := strings.Cut(code, "```")
	if !ok || !ok2 {
		t.Fatal(`"Block a session" has no sh block`)
	}
	return code
}

// TestReadmeBlockWalkthrough checks the README's "Block a session" against the stack it runs
// in: the compose file it names (default profile) publishes the ports it calls, the keygen
// service it reads the write token from writes one and apisessions reads it, the stack's
// configuration validates and runs Envoy in inline mode, and the API answers the walk-through's
// own block and unblock requests, with the token in the form keygen writes. The stack itself
// runs in TestDockerCompose, which needs a Docker engine.
func TestReadmeBlockWalkthrough(t *testing.T) {
	t.Parallel()
	code := readmeBlock(t)
	if !strings.Contains(code, `C="docker compose -f e2e/docker-compose.yaml"`) || !strings.Contains(code, "$C up --build -d") {
		t.Fatalf("the walk-through does not start the default stack of e2e/docker-compose.yaml:\n%s", code)
	}
	c := loadCompose(t)
	publishes := func(service, hostPort string) bool {
		return slices.ContainsFunc(c.Services[service].Ports, func(p string) bool { return strings.HasPrefix(p, hostPort+":") })
	}
	for _, m := range regexp.MustCompile(`(?:localhost|127\.0\.0\.1):(\d+)/(\S*)`).FindAllStringSubmatch(code, -1) {
		switch {
		case strings.HasPrefix(m[2], "api/v1/"):
			if !publishes("apisessions", "127.0.0.1:"+m[1]) {
				t.Errorf("the walk-through calls apisessions' API on port %s, which the stack does not publish", m[1])
			}
		default:
			if !publishes("envoy", "127.0.0.1:"+m[1]) {
				t.Errorf("the walk-through sends traffic to port %s, which the stack's Envoy does not publish", m[1])
			}
		}
	}

	// The write token: keygen writes it into the volume apisessions reads it from.
	if !strings.Contains(code, "$C run --rm keygen cat /keys/write-tokens | cut -d: -f2") {
		t.Fatalf("the walk-through does not read the write token from keygen:\n%s", code)
	}
	kg, app := c.Services["keygen"], c.Services["apisessions"]
	if len(kg.Profiles) != 0 || !slices.Contains(kg.Volumes, "hash-key:/keys") || !slices.Contains(app.Volumes, "hash-key:/keys:ro") ||
		!slices.Contains(app.dependencies(), "keygen") {
		t.Errorf("keygen (volumes %v, profiles %v) does not hand apisessions (volumes %v) its write token", kg.Volumes, kg.Profiles, app.Volumes)
	}
	data, err := os.ReadFile("docker-compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `printf 'demo:%s\n' "$$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" > /keys/write-tokens`) {
		t.Error("keygen no longer writes /keys/write-tokens as demo:<token>; update the walk-through")
	}
	stack, err := os.ReadFile("apisessions.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Server struct {
			WriteTokensFile string `json:"write_tokens_file"`
		} `json:"server"`
	}
	if err := yaml.Unmarshal(stack, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Server.WriteTokensFile != "/keys/write-tokens" {
		t.Errorf("e2e/apisessions.yaml reads write tokens from %q, not the file keygen writes", cfg.Server.WriteTokensFile)
	}
	if code, out := appconfig.Validate(t, string(stack)); code != 0 {
		t.Errorf("e2e/apisessions.yaml does not validate (exit %d):\n%s", code, out)
	}
	if b := composeBootstraps[0]; b.file != "envoy.yaml" || !slices.Contains(b.args, "inline") {
		t.Errorf("the stack's Envoy is not rendered in inline mode: %v", b.args)
	}

	// The walk-through's own requests, against the API with a token file as keygen writes it.
	post := regexp.MustCompile(`curl -s -X POST -H "Authorization: Bearer \$WRITE" -d '([^']+)' \\\s+"127\.0\.0\.1:\d+(/api/v1/sessions/)\$SESSION(/block)"`).FindStringSubmatch(code)
	del := regexp.MustCompile(`curl -s -X DELETE -H "Authorization: Bearer \$WRITE" "127\.0\.0\.1:\d+(/api/v1/sessions/)\$SESSION(/block)"`).FindStringSubmatch(code)
	if post == nil || del == nil {
		t.Fatalf("the walk-through lacks the block or the unblock request:\n%s", code)
	}
	tokens := filepath.Join(t.TempDir(), "write-tokens")
	const token = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
	if err := os.WriteFile(tokens, []byte("demo:"+token+"\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	named, err := secretfile.ReadNamedTokens("server.write_tokens_file", tokens)
	if err != nil {
		t.Fatal(err)
	}
	dc := config.Default()
	se, err := sessions.New(dc, sessions.Settings{Emitter: dropRecords{}, HashKey: []byte(strings.Repeat("k", 32))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(se.Close)
	pe := protect.New(dc.Protection, se, time.Now)
	h := explore.New(explore.Options{Blocks: pe, WriteTokens: named})
	const session = "s_3f9c0a51b2d47e8816aa"
	send := func(method, path, body string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, path, strings.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+token)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	if w := send(http.MethodPost, post[2]+session+post[3], post[1]); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"by":"demo"`) {
		t.Fatalf("the walk-through's block: %d %s", w.Code, w.Body)
	}
	if _, ok := pe.Blocked("session", session); !ok {
		t.Fatal("the walk-through's block did not block the session")
	}
	if w := send(http.MethodDelete, del[1]+session+del[2], ""); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"unblocked":true`) {
		t.Fatalf("the walk-through's unblock: %d %s", w.Code, w.Body)
	}
}
