package sinks

import (
	"net/url"
	"slices"
	"strings"

	"github.com/apisessions/apisessions/config"
)

// CheckHTTPURL reports the problems of the URL raw written under key of a sink that sends to it:
// missing (missing says what to write), holding a credential (never echoed: send it in
// headers, as credHint shows), or not an http or https URL with a host (example shows one). It
// returns the parsed URL, nil when it is unusable.
func CheckHTTPURL(check *config.SinkCheck, key, raw, missing, example, credHint string) *url.URL {
	u, err := url.Parse(raw)
	switch {
	case raw == "":
		check.Errorf(key, "is missing; write %s", missing)
	case err == nil && u.User != nil:
		check.Errorf(key, "holds a user name or password; send credentials in headers instead, e.g. %s", credHint)
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		check.Errorf(key, "%s is not an http or https URL; write e.g. %s", check.Show(key, raw), example)
	default:
		return u
	}
	return nil
}

// CheckHeaders reports header names that are not tokens or that the sink sets itself
// (reserved, lower case), and values that cannot be sent in a header (never echoed: they may
// be credentials), under headers.<name>, in name order. example is a valid name.
func CheckHeaders(check *config.SinkCheck, headers map[string]string, reserved []string, sinkType, example string) {
	names := make([]string, 0, len(headers))
	for name := range headers {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		key := "headers." + name
		switch {
		case !config.ValidToken(name):
			check.Errorf(key, "%q is not a valid header name; use letters, digits and - (e.g. %s)", name, example)
		case slices.Contains(reserved, strings.ToLower(name)):
			check.Errorf(key, "is set by the %s sink itself; remove it", sinkType)
		}
		if strings.ContainsAny(headers[name], "\r\n\x00") {
			check.Errorf(key, "the value holds a line break or NUL, which cannot be sent in a header; remove it")
		}
	}
}
