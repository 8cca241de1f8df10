package cliflags

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// Exit statuses Parse returns: help was asked for, or the flags are unusable.
const (
	ExitHelp  = 0
	ExitUsage = 2
)

// Parse parses args into fs (named after the command), then fills every flag not given on the
// command line from its environment variable (FromEnv). It returns the exit status the command
// should end with when parsing stopped it (help asked for, or an error already reported on
// stderr), or -1 to go on.
func Parse(fs *flag.FlagSet, args []string, stderr io.Writer) int {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitHelp
		}
		return ExitUsage // the flag set printed the error and its usage
	}
	if err := FromEnv(fs); err != nil {
		fmt.Fprintf(stderr, "apisessions %s: %v\n", fs.Name(), err)
		return ExitUsage
	}
	return -1
}

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
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}
