package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// LoopbackHost reports whether host, the host part of an address without port or brackets,
// names this machine only: localhost (and names under .localhost), 127.0.0.0/8 or ::1.
func LoopbackHost(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// LoopbackListen reports whether a listen address (host:port) takes connections from this
// machine only. An empty host means every interface; a host name other than localhost may
// resolve to any interface, so it counts as reachable from other machines.
func LoopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	return err == nil && host != "" && LoopbackHost(host)
}

// validListen reports whether listen would accept addr, so that an address already
// reported as malformed is not reported again for where it listens.
func validListen(addr string) bool {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return false
	}
	if _, err := netip.ParseAddr(host); host != "" && err != nil && !validHostname(host) {
		return false
	}
	return true
}

// metricsListen checks server.metrics_listen, which is optional.
func (v *validator) metricsListen() {
	s := &v.c.Server
	if s.MetricsListen == "" {
		return
	}
	v.listen("server.metrics_listen", s.MetricsListen, "9090")
	if strings.HasSuffix(s.MetricsListen, ":0") {
		return
	}
	for _, other := range []struct{ key, addr string }{
		{"server.grpc_listen", s.GRPCListen},
		{"server.http_listen", s.HTTPListen},
	} {
		if s.MetricsListen == other.addr {
			v.add("server.metrics_listen", "is the same address as %s; give the metrics listener its own port, e.g. \"127.0.0.1:9090\"", other.key)
		}
	}
}

// exposure refuses listeners that other machines can reach without any authentication, unless
// the file says that something else protects them.
func (v *validator) exposure() {
	s := &v.c.Server
	if validListen(s.HTTPListen) && !LoopbackListen(s.HTTPListen) && s.APITokenFile == "" && !s.AllowUnauthenticatedAPI {
		v.add("server.http_listen", "%s accepts connections from other machines, and without server.api_token_file anyone who reaches it reads the stored sessions (malicious requests with their headers and bodies included); set server.api_token_file to a file holding a token (chmod 600), listen on 127.0.0.1, or set server.allow_unauthenticated_api: true if a firewall or network policy decides who connects",
			v.show("server.http_listen", s.HTTPListen))
	}
	mtls := s.GRPCTLS.CertFile != "" && s.GRPCTLS.ClientCAFile != ""
	if validListen(s.GRPCListen) && !LoopbackListen(s.GRPCListen) && !mtls && s.GRPCTokenFile == "" && !s.AllowUnauthenticatedGRPC {
		v.add("server.grpc_listen", "%s accepts connections from other machines, and without server.grpc_token_file or mTLS (server.grpc_tls with client_ca_file) anyone who reaches it can feed forged traffic into the sessions; set server.grpc_token_file to a file holding a token (chmod 600; apisessions envoy-config puts it in Envoy's bootstrap), require client certificates, listen on 127.0.0.1, or set server.allow_unauthenticated_grpc: true if a firewall or network policy decides who connects",
			v.show("server.grpc_listen", s.GRPCListen))
	}
}

// allowedHosts checks server.allowed_hosts: host name globs, IP addresses or IP prefixes.
func (v *validator) allowedHosts() {
	for i, h := range v.c.Server.AllowedHosts {
		at := fmt.Sprintf("server.allowed_hosts[%d]", i)
		switch {
		case h == "":
			v.add(at, "is empty; write the host name analysts use, e.g. apisessions.example.com, or an IP prefix such as 10.0.0.0/8")
		case strings.Trim(h, "*.") == "":
			// A pattern that matches every name would let any web page read the API through
			// DNS rebinding.
			v.add(at, "%s matches every host name, which turns the Host check off; list the names analysts use, e.g. apisessions.example.com or *.internal.example.com", v.show(at, h))
		case strings.Contains(h, "/"):
			if _, err := netip.ParsePrefix(h); err != nil {
				v.add(at, "%s is not an IP prefix; write it like 10.0.0.0/8 or fd00::/8", v.show(at, h))
			}
		default:
			if _, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
				continue
			}
			v.hostGlob(at, h)
		}
	}
}
