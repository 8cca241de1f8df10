package app

import (
	"flag"
	"fmt"
	"io"
	"net/netip"

	"github.com/apisessions/apisessions/sessions/traffic/recorded"
)

// The commands that read recorded traffic (replay, recommend) share the flags and checks below.

// clientIPFlag defines --client-ip: HAR has no field for the client address.
func clientIPFlag(fs *flag.FlagSet) *string {
	return fs.String("client-ip", recorded.DefaultClientIP, "client IP of HAR entries without a _clientIP field (HAR does not record the client)")
}

// oneFile reports whether exactly one file was given, and says what to do when not.
func oneFile(fs *flag.FlagSet, stderr io.Writer) bool {
	if fs.NArg() == 1 {
		return true
	}
	fmt.Fprintf(stderr, "apisessions %s: give exactly one file, e.g. apisessions %[1]s examples/demo.har\n", fs.Name())
	return false
}

// validClientIP reports whether --client-ip is an IP address, and says so when not.
func validClientIP(fs *flag.FlagSet, ip string, stderr io.Writer) bool {
	if _, err := netip.ParseAddr(ip); err == nil {
		return true
	}
	fmt.Fprintf(stderr, "apisessions %s: --client-ip %q is not an IP address\n", fs.Name(), ip)
	return false
}
