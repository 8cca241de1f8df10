package testutil

import (
	"errors"
	"testing"

	"github.com/apisessions/apisessions/config"
)

// ConfigProblems returns the lines "apisessions validate" prints for a file apisessions.yaml
// holding text, with the given sink types known; nil when the file is valid.
func ConfigProblems(t testing.TB, text string, types ...config.SinkType) []string {
	t.Helper()
	_, err := config.ParseAndValidate("apisessions.yaml", []byte(text), types...)
	if err == nil {
		return nil
	}
	var errs *config.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error %v is not a *config.Errors", err)
	}
	return errs.Lines()
}
