// Package cliflags holds the one rule every apisessions command follows for flags: a flag not
// given on the command line may come from the environment variable APISESSIONS_<FLAG>.
package cliflags

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

// Prefix starts the name of every flag's environment variable.
const Prefix = "APISESSIONS_"

// EnvName is the environment variable of a flag: --client-ip is APISESSIONS_CLIENT_IP.
func EnvName(flagName string) string {
	return Prefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// FromEnv sets every flag of the parsed fs that the command line did not give from its
// environment variable, when that is set. A value the flag refuses is an error naming the
// variable (never its value, which may be a secret).
func FromEnv(fs *flag.FlagSet) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []string
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		name := EnvName(f.Name)
		if v, ok := os.LookupEnv(name); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Sprintf("%s: not a valid value for --%s", name, f.Name))
			}
		}
	})
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}
