// Package appconfig checks configuration files the way "apisessions validate" does, with
// every sink type the binary can create, for tests of files shipped beside the code
// (deployment manifests, the docker-compose stack). It lives apart from testutil because it
// imports the command package, whose own tests import testutil.
package appconfig

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/apisessions/apisessions/cmd/apisessions/app"
)

// Validate runs "apisessions validate" on text and returns its exit code and output.
func Validate(t testing.TB, text string) (int, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "apisessions.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errs bytes.Buffer
	code := app.Run(context.Background(), []string{"validate", "--config", path}, &out, &errs)
	return code, out.String() + errs.String()
}

// sharedStateProbe uses every key of the shared store and live state.
const sharedStateProbe = "sinks:\n  - type: store\n    driver: postgres\n    dsn: postgres://x@y/z\nstate:\n  redis:\n    address: 127.0.0.1:6379\n"

// ValidateShared validates a configuration written for several replicas (sinks[].driver and
// dsn, state.redis). A build that does not know those keys yet validates the rest: the keys
// are removed first and the test log says so.
func ValidateShared(t testing.TB, text string) (int, string) {
	t.Helper()
	if code, _ := Validate(t, sharedStateProbe); code != 0 {
		t.Log("this build does not know sinks[].driver/dsn and state.redis yet: validating the rest of the configuration")
		text = withoutSharedState(t, text)
	}
	return Validate(t, text)
}

// withoutSharedState removes the shared store and state keys from a configuration.
func withoutSharedState(t testing.TB, text string) string {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		t.Fatal(err)
	}
	delete(doc, "state")
	sinks, _ := doc["sinks"].([]any)
	for _, s := range sinks {
		if m, ok := s.(map[string]any); ok {
			delete(m, "driver")
			delete(m, "dsn")
		}
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}
