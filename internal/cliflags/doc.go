// Package cliflags holds the one rule every apisessions command follows for flags: a flag not
// given on the command line may come from the environment variable APISESSIONS_<FLAG>.
// It imports nothing of apisessions.
package cliflags
