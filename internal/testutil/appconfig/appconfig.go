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

	"github.com/apisessions/apisessions/cmd/apisessions/app"
)

// Validate runs "apisessions validate --no-files" on text and returns its exit code and
// output: the files such a configuration names (tokens, keys) are those of the machine or
// container that runs it, not of the test's.
func Validate(t testing.TB, text string) (int, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "apisessions.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errs bytes.Buffer
	code := app.Run(context.Background(), []string{"validate", "--no-files", "--config", path}, &out, &errs)
	return code, out.String() + errs.String()
}
