package config

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
	// Embedded zone data, so that day_boundary validates and works in static binaries and
	// minimal containers without /usr/share/zoneinfo.
	_ "time/tzdata"

	"github.com/ohler55/ojg/jp"

	"github.com/apisessions/apisessions/config/pathpattern"
)

// Limits that Validate enforces.
const (
	MaxParametersLimit = 1000
	MaxBodyBytesLimit  = 64 << 20
	MaxMessageBytesMin = 64 << 10
	// StreamIdleTimeoutMin keeps the idle timeout from cutting exchanges whose upstream takes
	// a moment to answer.
	StreamIdleTimeoutMin = Duration(time.Second)
	// SnapshotIntervalLimit keeps the records.md promise of a session record at least every
	// minute while a part is active.
	SnapshotIntervalLimit = Duration(time.Minute)
)

// Normalize puts c into canonical form, in place: header names lower-case (Envoy sends
// them so), HTTP methods upper-case, host patterns lower-case, and every sink named (its
// type, or type-2, type-3... when the type repeats). It is idempotent. ParseAndValidate
// calls it between decoding and Validate; a configuration built in code calls it before
// Validate.
func (c *Config) Normalize() {
	c.Traffic.ClientIP.From = strings.ToLower(c.Traffic.ClientIP.From)
	lowerAll(c.Traffic.Hosts.Include)
	lowerAll(c.Traffic.Hosts.Exclude)
	c.TLS.JA3Header = strings.ToLower(c.TLS.JA3Header)
	c.TLS.JA4Header = strings.ToLower(c.TLS.JA4Header)
	c.Inline.SessionHeader = strings.ToLower(c.Inline.SessionHeader)
	c.Attacks.ResponseHeader = strings.ToLower(c.Attacks.ResponseHeader)
	for i := range c.Parameters {
		p := &c.Parameters[i]
		if p.In == InRequestHeader || p.In == InResponseHeader {
			p.Key = strings.ToLower(p.Key)
		}
	}
	for i := range c.BusinessFlows.Rules {
		r := &c.BusinessFlows.Rules[i]
		r.Host = strings.ToLower(r.Host)
		for j, m := range r.Methods {
			r.Methods[j] = strings.ToUpper(m)
		}
	}
	c.normalizeProtection()
	c.normalizeLogin()
	used := map[string]bool{}
	for _, s := range c.Sinks {
		if s.Name != "" {
			used[s.Name] = true
		}
	}
	for i := range c.Sinks {
		s := &c.Sinks[i]
		if s.Name != "" || s.Type == "" {
			continue
		}
		name := s.Type
		for n := 2; used[name]; n++ {
			name = s.Type + "-" + strconv.Itoa(n)
		}
		s.Name = name
		used[name] = true
	}
}

func lowerAll(ss []string) {
	for i, s := range ss {
		ss[i] = strings.ToLower(s)
	}
}

// Validate checks c, returning every problem found as an *Errors, or nil. Each problem
// names the file, the line, the key path and the offending value (never a value that came
// from the environment or a sink header), and says how to fix it. Validate changes nothing:
// it checks c as it is, so a configuration built in code is normalized first (Normalize).
// Each sink's Options check themselves; that each sink's type is one the program has is
// checked while decoding (Parse with the sink types).
//
// Files are not opened (certificates, key files): a configuration may be checked on a
// machine other than the one that runs it.
func (c *Config) Validate() error {
	return newErrors(c.validate())
}

func (c *Config) validate() []Problem {
	v := &validator{c: c}
	v.server()
	v.traffic()
	v.sessions()
	v.parameters()
	v.businessFlows()
	v.tls()
	v.attacks()
	v.inline()
	v.sinks()
	v.state()
	v.protection()
	return v.problems
}

type validator struct {
	c        *Config
	problems []Problem
}

func (v *validator) add(keyPath, format string, args ...any) {
	v.problems = append(v.problems, Problem{
		File:    v.c.File,
		Line:    v.c.lineOf(keyPath),
		Path:    keyPath,
		Message: fmt.Sprintf(format, args...),
	})
}

// lineOf returns the line of keyPath, or of its nearest written ancestor: a missing key is
// reported where its parent was written.
func (c *Config) lineOf(keyPath string) int {
	for p := keyPath; p != ""; p = parentPath(p) {
		if pos, ok := c.Positions[p]; ok {
			return pos.Line
		}
	}
	return 0
}

func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

func (c *Config) written(keyPath string) bool {
	_, ok := c.Positions[keyPath]
	return ok
}

// show quotes a value for a message unless it came from the environment.
func (v *validator) show(keyPath, value string) string {
	return shown(value, v.c.Positions[keyPath].Env)
}

func (v *validator) server() {
	s := &v.c.Server
	v.listen("server.grpc_listen", s.GRPCListen, "50051")
	v.listen("server.http_listen", s.HTTPListen, "8080")
	if s.GRPCListen == s.HTTPListen && !strings.HasSuffix(s.HTTPListen, ":0") {
		v.add("server.http_listen", "is the same address as server.grpc_listen; give each listener its own port")
	}
	v.metricsListen()
	v.exposure()
	v.allowedHosts()
	t := s.GRPCTLS
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		v.add("server.grpc_tls.key_file", "is empty while cert_file is set; set both or neither")
	case t.CertFile == "" && t.KeyFile != "":
		v.add("server.grpc_tls.cert_file", "is empty while key_file is set; set both or neither")
	case t.CertFile == "" && t.ClientCAFile != "":
		v.add("server.grpc_tls.client_ca_file", "requires cert_file and key_file (client certificates are asked for over TLS only); set them or remove client_ca_file")
	}
	if s.MaxMessageBytes < MaxMessageBytesMin {
		v.add("server.max_message_bytes", "%d is too small; use at least %d (64 KiB), the default is %d (16 MiB)", s.MaxMessageBytes, MaxMessageBytesMin, 16<<20)
	}
	v.streamBounds()
	if s.ShutdownTimeout <= 0 {
		v.add("server.shutdown_timeout", "%s is not more than 0; use a duration such as 15s", s.ShutdownTimeout)
	}
	if s.DataDir == "" {
		v.add("server.data_dir", "is empty; name the directory for the hash key and stored data, e.g. ./data")
	}
}

// streamBounds checks the bounds on ext_proc streams: none may be switched off, since each
// is what keeps a flood of streams from exhausting memory.
func (v *validator) streamBounds() {
	s := &v.c.Server
	if s.MaxConcurrentStreams == 0 {
		v.add("server.max_concurrent_streams", "is 0, which would let one connection open any number of streams; use 1 or more, the default is %d", DefaultMaxConcurrentStreams)
	}
	if s.MaxStreams < 1 {
		v.add("server.max_streams", "%d is less than 1; use the number of ext_proc streams all connections may hold open at once, the default is %d", s.MaxStreams, DefaultMaxStreams)
	}
	if s.MemoryLimitBytes != 0 && s.MemoryLimitBytes < MemoryLimitMin {
		v.add("server.memory_limit_bytes", "%d is below %d (64 MiB); give the memory the process may take (e.g. 90 %% of its container's limit), or leave it out: the default follows GOMEMLIMIT or the container's limit", s.MemoryLimitBytes, MemoryLimitMin)
	}
	if s.StreamIdleTimeout < StreamIdleTimeoutMin {
		v.add("server.stream_idle_timeout", "%s is too short; use at least %s and more than your longest upstream response time, the default is %s", s.StreamIdleTimeout, StreamIdleTimeoutMin, DefaultStreamIdleTimeout)
	}
}

// listen checks a listen address: host:port with an optional host (IP or name) and a
// numeric port.
func (v *validator) listen(keyPath, addr, examplePort string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.add(keyPath, "%s is not a host:port address; write e.g. \":%s\" or \"127.0.0.1:%s\"", v.show(keyPath, addr), examplePort, examplePort)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		v.add(keyPath, "%s has no valid port; use a number from 0 to 65535, e.g. \":%s\"", v.show(keyPath, addr), examplePort)
		return
	}
	if host == "" {
		return
	}
	if _, err := netip.ParseAddr(host); err != nil && !validHostname(host) {
		v.add(keyPath, "%s has an invalid host; use an IP address, a host name or nothing (all interfaces), e.g. \":%s\"", v.show(keyPath, addr), examplePort)
	}
}

func validHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c == '-' || c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
				return false
			}
		}
	}
	return true
}

func (v *validator) traffic() {
	t := &v.c.Traffic
	for i, h := range t.Hosts.Include {
		v.hostGlob(fmt.Sprintf("traffic.hosts.include[%d]", i), h)
	}
	for i, h := range t.Hosts.Exclude {
		v.hostGlob(fmt.Sprintf("traffic.hosts.exclude[%d]", i), h)
	}
	if t.MaxBodyBytes < 0 || t.MaxBodyBytes > MaxBodyBytesLimit {
		v.add("traffic.max_body_bytes", "%d is out of range; use 0 (read no bodies) to %d (64 MiB), the default is 65536", t.MaxBodyBytes, MaxBodyBytesLimit)
	}
	switch {
	case t.BodyBudgetBytes < 0:
		v.add("traffic.body_budget_bytes", "%d is negative; use the memory all streams may fill with bodies at once, the default is %d (256 MiB)", t.BodyBudgetBytes, DefaultBodyBudgetBytes)
	case t.BodyBudgetBytes < t.MaxBodyBytes:
		v.add("traffic.body_budget_bytes", "%d is less than traffic.max_body_bytes (%d), so no body of that size could be kept; raise it to at least %d, the default is %d (256 MiB)", t.BodyBudgetBytes, t.MaxBodyBytes, t.MaxBodyBytes, DefaultBodyBudgetBytes)
	}
	from := t.ClientIP.From
	switch {
	case from == "":
		v.add("traffic.client_ip.from", "is empty; write source (Envoy's source.address) or a header name such as x-forwarded-for")
	case from != "source" && !ValidToken(from):
		v.add("traffic.client_ip.from", "%s is neither source nor a header name; write source or a header name such as x-forwarded-for", v.show("traffic.client_ip.from", from))
	}
	switch {
	case t.ClientIP.TrustedHops < 0:
		v.add("traffic.client_ip.trusted_hops", "%d is negative; use 0 or the number of your proxies in front of Envoy", t.ClientIP.TrustedHops)
	case t.ClientIP.TrustedHops > 0 && from == "source":
		// With from: source Envoy already picked the address; hops here would be ignored,
		// and silently ignoring a security setting misleads.
		v.add("traffic.client_ip.trusted_hops", "applies only when from names a forwarding header; with from: source set xff_num_trusted_hops in Envoy instead, and remove this key")
	}
}

// hostGlob checks a host pattern: a path.Match glob over the host name without port.
func (v *validator) hostGlob(keyPath, p string) {
	switch {
	case p == "":
		v.add(keyPath, "is empty; write a host name or glob such as *.example.com")
	case strings.Contains(p, "/"):
		v.add(keyPath, "%s contains \"/\"; a host pattern has no scheme or path, e.g. api.example.com or *.example.com", v.show(keyPath, p))
	case strings.Count(p, ":") == 1:
		v.add(keyPath, "%s has a port; ports are stripped before matching, so remove it", v.show(keyPath, p))
	default:
		if _, err := path.Match(p, ""); err != nil {
			v.add(keyPath, "%s is not a valid glob; close every [ and escape literal *, ? and [ with \\", v.show(keyPath, p))
		}
	}
}

func (v *validator) sessions() {
	s := &v.c.Sessions
	if len(s.Fallback) == 0 {
		v.add("sessions.fallback", "is empty; list at least one of %s, e.g. [ip, user_agent]", strings.Join(FallbackParts, ", "))
	}
	seen := map[string]bool{}
	for i, part := range s.Fallback {
		at := fmt.Sprintf("sessions.fallback[%d]", i)
		switch {
		case !slices.Contains(FallbackParts, part):
			v.add(at, "%s is not a fallback part%s; use %s", v.show(at, part), didYouMean(part, FallbackParts), strings.Join(FallbackParts, ", "))
		case seen[part]:
			v.add(at, "%q is listed twice; remove one", part)
		case part == FallbackJA3 && v.c.TLS.JA3Header == "":
			v.add(v.fallbackSite(at, "tls.ja3_header"), "ja3 is never known because tls.ja3_header is empty; remove ja3 from sessions.fallback or set tls.ja3_header")
		case part == FallbackJA4 && v.c.TLS.JA4Header == "":
			v.add(v.fallbackSite(at, "tls.ja4_header"), "ja4 is never known because tls.ja4_header is empty; remove ja4 from sessions.fallback or set tls.ja4_header")
		}
		seen[part] = true
	}
	const zoneHint = "use UTC or an IANA time zone name such as Europe/Berlin or America/New_York"
	switch tz := s.DayBoundary; tz {
	case "":
		v.add("sessions.day_boundary", "is empty; "+zoneHint)
	case "Local":
		// Local is whatever the machine says: replicas would split days differently.
		v.add("sessions.day_boundary", "Local depends on the machine; "+zoneHint)
	default:
		if _, err := time.LoadLocation(tz); err != nil {
			v.add("sessions.day_boundary", "%s is not a known time zone; %s", v.show("sessions.day_boundary", tz), zoneHint)
		}
	}
	if s.IdleTimeout < 0 {
		v.add("sessions.idle_timeout", "%s is negative; use 0 (off) or a duration such as 30m", s.IdleTimeout)
	}
	if s.Retention <= 0 {
		v.add("sessions.retention", "%s is not more than 0; use a duration such as 168h", s.Retention)
	}
	if s.SnapshotInterval <= 0 || s.SnapshotInterval > SnapshotIntervalLimit {
		v.add("sessions.snapshot_interval", "%s is out of range; use more than 0 and at most 1m (session records are promised at least every minute)", s.SnapshotInterval)
	}
	if s.MaxLiveParts < 1 {
		v.add("sessions.max_live_parts", "%d is too small; use at least 1 (default 100000)", s.MaxLiveParts)
	}
	if s.Stitch.MaxLinks < 1 {
		v.add("sessions.stitch.max_links", "%d is too small; use at least 1 (default %d)", s.Stitch.MaxLinks, DefaultMaxLinks)
	}
	if s.LookupCacheMB < 1 {
		v.add("sessions.lookup_cache_mb", "%d is too small; use at least 1 (default 32)", s.LookupCacheMB)
	}
	v.risk(&s.Risk)
	if s.UsersFrom != UsersFromSucceeded && s.UsersFrom != UsersFromAny {
		v.add("sessions.users_from", "%s is not a choice; use %s (a request answered 4xx or 5xx only claims a user) or %s", v.show("sessions.users_from", s.UsersFrom), UsersFromSucceeded, UsersFromAny)
	}
}

// fallbackSite reports a fallback part that contradicts a tls header where the user wrote
// something: at the list item when the list is in the file, else at the header key.
func (v *validator) fallbackSite(item, header string) string {
	if !v.c.written(item) && v.c.written(header) {
		return header
	}
	return item
}

func (v *validator) parameters() {
	c := v.c
	names := map[string]int{}
	visible := 0
	for i := range c.Parameters {
		p := &c.Parameters[i]
		at := fmt.Sprintf("parameters[%d]", i)
		if !p.Hidden {
			visible++
		}
		switch {
		case p.Name == "":
			v.add(at+".name", "is missing; name the parameter with lower-case letters, digits and _, e.g. login_token")
		case !validParamName(p.Name):
			v.add(at+".name", "%s is not a valid name; use lower-case letters, digits and _ (at most 64), e.g. login_token", v.show(at+".name", p.Name))
		default:
			if j, dup := names[p.Name]; dup {
				v.add(at+".name", "%q is already the name of parameters[%d]; names must be unique", p.Name, j)
			} else {
				names[p.Name] = i
			}
		}
		switch {
		case p.In == "":
			v.add(at+".in", "is missing; use one of %s", strings.Join(Sources, ", "))
		case !slices.Contains(Sources, p.In):
			v.add(at+".in", "%s is not a source%s; use one of %s", v.show(at+".in", p.In), sourceHint(p.In), strings.Join(Sources, ", "))
			if strings.HasPrefix(p.Path, "$") {
				v.jsonPath(at+".path", p.Path)
			}
		default:
			v.source(at, p)
		}
		if p.Decode != "" && !slices.Contains(Decodings, p.Decode) {
			v.add(at+".decode", "%s is not a decoding%s; use jwt, json or base64", v.show(at+".decode", p.Decode), didYouMean(p.Decode, Decodings))
		}
		if p.Type != "" && p.Type != TypeUser && p.Type != TypeRole {
			v.add(at+".type", "%s is not a parameter type%s; use user, role, or leave type out", v.show(at+".type", p.Type), didYouMean(p.Type, []string{TypeUser, TypeRole}))
		}
	}
	v.shadowedGroups()

	switch max := c.MaxParameters; {
	case max < 1 || max > MaxParametersLimit:
		v.add("max_parameters", "%d is out of range; use 1 to %d (default 20)", max, MaxParametersLimit)
	case visible > max:
		v.add("parameters", "%d parameters are configured but max_parameters is %d; remove %d or raise max_parameters", visible, max, visible-max)
	}
}

// sourceHint suggests a source for a mistyped in, including the common shorthand that
// leaves out the direction ("header" for "request.header").
func sourceHint(in string) string {
	if !strings.Contains(in, ".") && slices.Contains(Sources, "request."+strings.ToLower(in)) {
		return ` (did you mean "request.` + strings.ToLower(in) + `"?)`
	}
	return didYouMean(in, Sources)
}

// source checks that a parameter with a known source can yield a value at all.
func (v *validator) source(at string, p *Parameter) {
	switch p.In {
	case InRequestHeader, InRequestCookie, InRequestQuery, InResponseHeader, InResponseCookie:
		what := map[string]string{
			InRequestHeader:  "the header name, e.g. authorization",
			InResponseHeader: "the header name, e.g. x-session-token",
			InRequestCookie:  "the cookie name, e.g. sid",
			InResponseCookie: "the cookie name, e.g. sid",
			InRequestQuery:   "the query parameter name, e.g. token",
		}[p.In]
		if p.Key == "" {
			v.add(at+".key", "is missing; %s needs %s", p.In, what)
		}
		// A header, cookie or query value is text: a JSONPath has nothing to select in it
		// until decode turned it into JSON.
		if p.Path != "" && p.Decode == "" {
			v.add(at+".path", "selects inside a decoded value but decode is not set; add decode (jwt, json or base64) or remove path")
		}
		switch p.In {
		case InRequestHeader, InResponseHeader:
			if p.Key != "" {
				v.headerKey(at+".key", p.In, p.Key)
			}
		case InRequestCookie, InResponseCookie:
			// Cookie names are tokens (RFC 6265): a name with a space, "=" or ";" is
			// split apart by every cookie parser and never matches.
			if p.Key != "" && !ValidToken(p.Key) {
				v.add(at+".key", "%s is not a valid cookie name, so it never matches; cookie names have no spaces, quotes, =, ; or ,", v.show(at+".key", p.Key))
			}
		}
	case InRequestBody, InResponseBody:
		switch {
		case p.Key == "" && p.Path == "":
			v.add(at, "%s needs key (a form field of a urlencoded body) or path (JSONPath into a JSON body); add one", p.In)
		case p.Key != "" && p.Path != "" && p.Decode == "":
			v.add(at+".path", "key and path together need decode: key names a form field and path selects inside its decoded value; add decode or remove key or path")
		case p.Key == "" && p.Decode != "":
			v.add(at+".decode", "on a body applies to a form field; add key, or remove decode (path already reads JSON bodies)")
		}
		// With max_body_bytes 0 no body byte is kept, so a body parameter never works.
		if v.c.Traffic.MaxBodyBytes == 0 {
			v.add(at+".in", "reads the body but traffic.max_body_bytes is 0, so no body is ever read; raise traffic.max_body_bytes or remove this parameter")
		}
	case InRequestPath:
		if p.Key != "" {
			v.add(at+".key", "does not apply to request.path; put the pattern in path and remove key")
		}
		if p.Decode != "" {
			v.add(at+".decode", "does not apply to request.path; remove it")
		}
		if p.Path == "" {
			v.add(at+".path", "is missing; request.path needs a path pattern with one {name} capture, e.g. /api/sessions/{sid}/**")
			return
		}
		pat, ok := v.pattern(at+".path", p.Path)
		if !ok {
			return
		}
		// The value of a request.path parameter is its one capture: without one it never
		// yields a value, with several it would be ambiguous which one.
		switch n := len(pat.Captures()); {
		case n == 0:
			v.add(at+".path", "%s has no {name} capture, so it never yields a value; write {name} where the value is, e.g. /api/sessions/{sid}/**", v.show(at+".path", p.Path))
		case n > 1:
			v.add(at+".path", "%s has %d captures; keep exactly one {name} and write * for the other segments", v.show(at+".path", p.Path), n)
		}
		return
	}
	if p.Path != "" {
		v.jsonPath(at+".path", p.Path)
	}
}

// Request pseudo-headers Envoy passes to ext_proc; responses carry only :status.
var requestPseudoHeaders = []string{":method", ":path", ":authority", ":scheme", ":protocol"}

// hopByHopHeaders are consumed by Envoy's HTTP codecs and never reach ext_proc.
var hopByHopHeaders = []string{"connection", "keep-alive", "proxy-connection", "transfer-encoding"}

// headerKey checks that a header parameter names a header Envoy can actually send on
// that side; a key that can never be present makes a parameter (and a grouping key) that
// never works.
func (v *validator) headerKey(keyPath, in, key string) {
	shownKey := v.show(keyPath, key)
	if strings.HasPrefix(key, ":") {
		switch {
		case in == InRequestHeader && key == ":status":
			v.add(keyPath, ":status is a response pseudo-header; use in: response.header")
		case in == InRequestHeader && !slices.Contains(requestPseudoHeaders, key):
			v.add(keyPath, "%s is not a pseudo-header Envoy sends; requests carry %s", shownKey, strings.Join(requestPseudoHeaders[:4], ", "))
		case in == InResponseHeader && slices.Contains(requestPseudoHeaders, key):
			v.add(keyPath, "%s is a request pseudo-header; use in: request.header", shownKey)
		case in == InResponseHeader && key != ":status":
			v.add(keyPath, "%s is not a pseudo-header Envoy sends; responses carry only :status", shownKey)
		}
		return
	}
	switch {
	case !ValidToken(key):
		v.add(keyPath, "%s is not a valid header name, so it never matches; use letters, digits and -, e.g. x-session-token", shownKey)
	case slices.Contains(hopByHopHeaders, key):
		v.add(keyPath, "%s is a connection header that Envoy consumes and never passes on; choose another header", shownKey)
	case in == InRequestHeader && key == "host":
		v.add(keyPath, "Envoy passes the Host header as :authority; write key: \":authority\"")
	case in == InRequestHeader && key == "set-cookie":
		v.add(keyPath, "set-cookie is a response header; use in: response.cookie or in: response.header")
	case in == InResponseHeader && key == "cookie":
		v.add(keyPath, "cookie is a request header; use in: request.cookie or in: request.header")
	}
}

// shadowedGroups reports grouping parameters that read exactly what an earlier grouping
// parameter reads: the earlier one is tried first and decides whenever the later one
// could, so the later one never does.
func (v *validator) shadowedGroups() {
	type source struct{ in, key, path, decode string }
	first := map[source]int{}
	for i, p := range v.c.Parameters {
		if !p.Group || !slices.Contains(Sources, p.In) {
			continue
		}
		s := source{p.In, p.Key, p.Path, p.Decode}
		if j, ok := first[s]; ok {
			v.add(fmt.Sprintf("parameters[%d]", i), "reads the same value as parameters[%d] (%s), which is tried first, so this grouping key never decides; remove it or change in, key, path or decode", j, v.c.Parameters[j].Name)
			continue
		}
		first[s] = i
	}
}

// jsonPath checks a JSONPath the way the engine compiles it (ojg).
func (v *validator) jsonPath(keyPath, p string) {
	shownPath := v.show(keyPath, p)
	if !strings.HasPrefix(p, "$") {
		example := "$.token"
		if !v.c.Positions[keyPath].Env {
			example = quote("$." + p)
		}
		v.add(keyPath, "%s must start with $ (the whole value); write e.g. %s", shownPath, example)
		return
	}
	if _, err := jp.ParseString(p); err != nil {
		// ojg ends its messages with " in <path>": drop it so that an env value is not echoed.
		reason := strings.TrimSuffix(err.Error(), " in "+p)
		v.add(keyPath, "%s is not valid JSONPath (%s); %s", shownPath, reason, jsonPathHint(p))
	}
}

func jsonPathHint(p string) string {
	switch {
	case strings.Count(p, "[") > strings.Count(p, "]"):
		return "close the bracket"
	case strings.Count(p, "[") < strings.Count(p, "]"):
		return "remove the extra ] or open the bracket"
	case strings.Count(p, "'")%2 == 1 || strings.Count(p, `"`)%2 == 1:
		return "close the quote"
	case strings.HasSuffix(p, "."):
		return "name a field after the last dot"
	}
	return "write it like $.user.id, $.items[0].id or $['odd key']"
}

// pattern compiles a path pattern, reporting a problem when it does not compile.
func (v *validator) pattern(keyPath, src string) (*pathpattern.Pattern, bool) {
	pat, err := pathpattern.Compile(src)
	if err == nil {
		return pat, true
	}
	// pathpattern errors read `invalid path pattern "SRC": reason`; keep the reason only,
	// so that a value from the environment is not echoed.
	reason := err.Error()
	if _, after, ok := strings.Cut(reason, strconv.Quote(src)+": "); ok {
		reason = after
	}
	v.add(keyPath, "%s is not a valid path pattern: %s (segments: literal, *, **, {name})", v.show(keyPath, src), reason)
	return nil, false
}

func (v *validator) businessFlows() {
	for i := range v.c.BusinessFlows.Rules {
		r := &v.c.BusinessFlows.Rules[i]
		at := fmt.Sprintf("business_flows.rules[%d]", i)
		switch {
		case r.Flow == "":
			v.add(at+".flow", "is missing; use one of %s", strings.Join(Flows, ", "))
		case !slices.Contains(Flows, r.Flow):
			v.add(at+".flow", "%s is not a business flow%s; use one of %s", v.show(at+".flow", r.Flow), didYouMean(r.Flow, Flows), strings.Join(Flows, ", "))
		}
		for j, m := range r.Methods {
			mp := fmt.Sprintf("%s.methods[%d]", at, j)
			if !ValidToken(m) {
				v.add(mp, "%s is not an HTTP method; write a method such as GET or POST", v.show(mp, m))
			}
		}
		if r.Host != "" {
			v.hostGlob(at+".host", r.Host)
		}
		if r.Path != "" {
			v.pattern(at+".path", r.Path)
		}
		if len(r.Methods) == 0 && r.Host == "" && r.Path == "" {
			v.add(at, "matches every request; add methods, host or path (write path: /** if every request really belongs to %s)", r.Flow)
		}
	}
}

func (v *validator) tls() {
	t := &v.c.TLS
	v.headerName("tls.ja3_header", t.JA3Header, "x-client-ja3")
	v.headerName("tls.ja4_header", t.JA4Header, "x-client-ja4")
	if t.JA3Header != "" && t.JA3Header == t.JA4Header {
		v.add("tls.ja4_header", "is the same header as tls.ja3_header; give each fingerprint its own header, e.g. x-client-ja4")
	}
}

// headerName checks an optional header name the configuration names on its own ("" is off).
func (v *validator) headerName(keyPath, name, example string) {
	switch {
	case name == "":
	case strings.HasPrefix(name, ":"):
		v.add(keyPath, "%s is a pseudo-header; name a regular header such as %s", v.show(keyPath, name), example)
	case !ValidToken(name):
		v.add(keyPath, "%s is not a valid header name; use letters, digits and -, e.g. %s", v.show(keyPath, name), example)
	}
}

func (v *validator) attacks() {
	for i, m := range v.c.Attacks.Metadata {
		at := fmt.Sprintf("attacks.metadata[%d]", i)
		if m.Namespace == "" {
			v.add(at+".namespace", "is missing; name the dynamic metadata namespace the filter writes, e.g. envoy.filters.http.coraza")
		}
		if m.Key == "" {
			v.add(at+".key", "is missing; name the key whose value marks the request malicious, e.g. malicious")
		}
	}
	v.headerName("attacks.response_header", v.c.Attacks.ResponseHeader, "x-waf-attack")
	for i, f := range v.c.Attacks.ScrubFields.Extra {
		at := fmt.Sprintf("attacks.scrub_fields.extra[%d]", i)
		switch {
		case strings.Trim(f, "-_") == "":
			v.add(at, "is empty; name a field whose values to hide, e.g. ssn")
		case !ValidName(f, 64):
			v.add(at, "%s is not a field name; use at most 64 letters, digits, -, _ and ., e.g. card_number", v.show(at, f))
		}
	}
}

func (v *validator) inline() {
	h := v.c.Inline.SessionHeader
	v.headerName("inline.session_header", h, "x-apisessions-session")
	// Envoy ignores ext_proc mutations of these by default (HeaderMutationRules), so the
	// header would silently never be set.
	if h == "host" || strings.HasPrefix(h, "x-envoy-") {
		v.add("inline.session_header", "%s is a header Envoy does not let ext_proc set; choose another name such as x-apisessions-session", v.show("inline.session_header", h))
	}
}

func validParamName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// risk checks sessions.risk: a half-life in range and weights between 0 and 1000.
func (v *validator) risk(r *Risk) {
	if r.HalfLife < RiskHalfLifeMin || r.HalfLife > RiskHalfLifeMax {
		v.add("sessions.risk.half_life", "%s is out of range; use %s to %s (default %s)", r.HalfLife, RiskHalfLifeMin, RiskHalfLifeMax, DefaultRiskHalfLife)
	}
	w := r.Weights
	for _, f := range []struct {
		name string
		v    int
	}{{"malicious", w.Malicious}, {"protection", w.Protection}, {"denied", w.Denied}, {"not_found", w.NotFound}, {"failed_claim", w.FailedClaim}} {
		if f.v < 0 || f.v > riskWeightMax {
			v.add("sessions.risk.weights."+f.name, "%v is out of range; use 0 (off) to %d points", f.v, riskWeightMax)
		}
	}
	for _, t := range slices.Sorted(maps.Keys(r.AttackTypes)) {
		if p := r.AttackTypes[t]; p < 0 || p > riskWeightMax {
			v.add("sessions.risk.attack_types."+t, "%v is out of range; use 0 (off) to %d points", p, riskWeightMax)
		}
	}
}
