package sessions

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/config/pathpattern"
)

// flowNames are the sensitive business flows in the order records list them (sorted), so a
// request's flows are a bit mask and its list is precomputed: no allocation per request.
var flowNames = func() []string {
	s := slices.Clone(config.Flows)
	slices.Sort(s)
	if len(s) > 8 {
		panic("flowMask holds at most 8 flows")
	}
	return s
}()

// flowLists[mask] is the sorted list of the flows whose bits are set; records share them, and
// records are never mutated.
var flowLists = func() [][]string {
	out := make([][]string, 1<<len(flowNames))
	for mask := 1; mask < len(out); mask++ {
		for i, f := range flowNames {
			if mask&(1<<i) != 0 {
				out[mask] = append(out[mask], f)
			}
		}
	}
	return out
}()

// flowMask is a set of flows, bit i for flowNames[i].
type flowMask uint8

func flowBit(name string) (flowMask, bool) {
	i := slices.Index(flowNames, name)
	if i < 0 {
		return 0, false
	}
	return 1 << i, true
}

// list returns the flows of the mask, sorted; nil when empty.
func (m flowMask) list() []string { return flowLists[m] }

// builtinFlow is one entry of the documented built-in table: a path pattern matched against
// the lower-cased path, and the methods it applies to (none = any).
type builtinFlow struct {
	flow    string
	methods []string
	pattern string
}

var (
	anyMethod = []string(nil)
	post      = []string{"POST"}
	change    = []string{"PUT", "PATCH", "DELETE"}
)

// builtinFlows is the built-in list of well-known sensitive endpoints (docs/flows.md and the
// README list it; keep them in step). Patterns are matched against the lower-cased path, and
// most begin with "/**" so that any prefix (/api/v1, /auth, a tenant id) is accepted.
var builtinFlows = []builtinFlow{
	// auth: credentials are checked or tokens issued.
	{"auth", post, "/**/login"},
	{"auth", post, "/**/signin"},
	{"auth", post, "/**/sign-in"},
	{"auth", post, "/**/sign_in"},
	{"auth", post, "/**/log-in"},
	{"auth", post, "/**/authenticate"},
	{"auth", anyMethod, "/**/logout"},
	{"auth", anyMethod, "/**/signout"},
	{"auth", anyMethod, "/**/sign-out"},
	{"auth", anyMethod, "/**/oauth/token"},
	{"auth", anyMethod, "/**/oauth2/token"},
	{"auth", anyMethod, "/**/oauth/authorize"},
	{"auth", anyMethod, "/**/oauth2/authorize"},
	{"auth", anyMethod, "/**/connect/token"},
	{"auth", anyMethod, "/**/connect/authorize"},
	{"auth", anyMethod, "/**/openid-connect/token"},
	{"auth", anyMethod, "/**/openid-connect/auth"},
	{"auth", post, "/**/token"},
	{"auth", post, "/**/token/refresh"},
	{"auth", post, "/**/refresh-token"},
	{"auth", post, "/**/refresh_token"},
	{"auth", anyMethod, "/**/mfa/**"},
	{"auth", anyMethod, "/**/2fa/**"},
	{"auth", post, "/**/otp/verify"},
	{"auth", post, "/**/verify-otp"},
	{"auth", anyMethod, "/**/sso/**"},
	{"auth", anyMethod, "/**/saml/**"},

	// account_creation: new accounts.
	{"account_creation", post, "/**/register"},
	{"account_creation", post, "/**/signup"},
	{"account_creation", post, "/**/sign-up"},
	{"account_creation", post, "/**/sign_up"},
	{"account_creation", post, "/**/registration"},
	{"account_creation", post, "/**/create-account"},
	{"account_creation", post, "/**/users"},
	{"account_creation", post, "/**/accounts"},

	// account_management: passwords, profiles, account changes and deletion.
	{"account_management", anyMethod, "/**/password/**"},
	{"account_management", anyMethod, "/**/passwords/**"},
	{"account_management", anyMethod, "/**/change-password"},
	{"account_management", anyMethod, "/**/reset-password"},
	{"account_management", anyMethod, "/**/forgot-password"},
	{"account_management", anyMethod, "/**/password-reset"},
	{"account_management", change, "/**/profile"},
	{"account_management", change, "/**/me"},
	{"account_management", change, "/**/account"},
	{"account_management", change, "/**/users/*"},
	{"account_management", change, "/**/accounts/*"},

	// admin: administrative consoles and APIs.
	{"admin", anyMethod, "/**/admin/**"},
	{"admin", anyMethod, "/**/administrator/**"},
	{"admin", anyMethod, "/**/_admin/**"},
	{"admin", anyMethod, "/**/wp-admin/**"},
	{"admin", anyMethod, "/**/phpmyadmin/**"},
	{"admin", anyMethod, "/**/actuator/**"},

	// billing: payments, checkout, invoices, subscriptions.
	{"billing", anyMethod, "/**/checkout/**"},
	{"billing", anyMethod, "/**/payment/**"},
	{"billing", anyMethod, "/**/payments/**"},
	{"billing", anyMethod, "/**/payment-methods/**"},
	{"billing", anyMethod, "/**/payment_methods/**"},
	{"billing", anyMethod, "/**/payment_intents/**"},
	{"billing", anyMethod, "/**/payment-intents/**"},
	{"billing", anyMethod, "/**/billing/**"},
	{"billing", anyMethod, "/**/invoices/**"},
	{"billing", anyMethod, "/**/subscriptions/**"},
	{"billing", anyMethod, "/**/charges/**"},
	{"billing", anyMethod, "/**/refunds/**"},

	// sms_gateway: endpoints that make the application send a text message.
	{"sms_gateway", anyMethod, "/**/sms/**"},
	{"sms_gateway", post, "/**/otp"},
	{"sms_gateway", post, "/**/otp/send"},
	{"sms_gateway", post, "/**/send-otp"},
	{"sms_gateway", post, "/**/resend-otp"},
	{"sms_gateway", post, "/**/send-code"},
	{"sms_gateway", post, "/**/resend-code"},
	{"sms_gateway", post, "/**/send-sms"},
	{"sms_gateway", post, "/**/verification-code"},
	{"sms_gateway", post, "/**/messages.json"},
	{"sms_gateway", post, "/**/verifications"},

	// ai_llm: model inference APIs (OpenAI and compatible, Anthropic, Gemini, Bedrock, Ollama).
	{"ai_llm", post, "/**/completions"},
	{"ai_llm", post, "/**/embeddings"},
	{"ai_llm", post, "/**/v1/responses"},
	{"ai_llm", post, "/**/v1/messages"},
	{"ai_llm", post, "/**/images/generations"},
	{"ai_llm", post, "/**/audio/transcriptions"},
	{"ai_llm", post, "/**/models/*:generatecontent"},
	{"ai_llm", post, "/**/models/*:streamgeneratecontent"},
	{"ai_llm", post, "/**/model/*/invoke"},
	{"ai_llm", post, "/**/model/*/invoke-with-response-stream"},
	{"ai_llm", post, "/**/model/*/converse"},
	{"ai_llm", post, "/**/model/*/converse-stream"},
	{"ai_llm", post, "/api/generate"},
	{"ai_llm", post, "/api/chat"},
}

// flowRule is one compiled rule, built-in or user-written.
type flowRule struct {
	bit     flowMask
	methods []string // upper case; empty = any
	host    string   // lower case; "" = any
	hostExa bool     // host has no glob characters: compare, do not match
	pat     *pathpattern.Pattern
}

func (r *flowRule) methodOK(m string) bool {
	if len(r.methods) == 0 {
		return true
	}
	for _, x := range r.methods {
		if x == m || strings.EqualFold(x, m) {
			return true
		}
	}
	return false
}

func (r *flowRule) hostOK(host string) bool {
	switch {
	case r.host == "":
		return true
	case r.hostExa:
		return r.host == host
	}
	ok, err := path.Match(r.host, host)
	return ok && err == nil
}

// flowMatcher tags requests with flows. Rules are bucketed so that a request costs a few map
// lookups, not one pattern match per rule: built-in rules by the first literal segment of
// their pattern (the "anchor", looked up for every segment of the path), user rules by their
// first segment when it is literal.
type flowMatcher struct {
	// builtin maps an anchor segment to the built-in rules it anchors.
	builtin map[string][]*flowRule
	// userPrefix maps the literal prefix of user rules ("/api/v1/payments" for
	// "/api/v1/payments/**") to the rules; the path's prefixes of up to prefixDepth segments
	// are looked up. userAny are the rules that begin with a wildcard, a capture or a glob, or
	// have no path.
	userPrefix  map[string][]*flowRule
	prefixDepth int
	userAny     []*flowRule
}

// compileFlows compiles the user rules (validated: flows known, patterns valid) and, when
// builtin is on, the built-in table.
func compileFlows(bf config.BusinessFlows) (*flowMatcher, error) {
	m := &flowMatcher{}
	for i, r := range bf.Rules {
		bit, ok := flowBit(r.Flow)
		if !ok {
			return nil, fmt.Errorf("%w: business_flows.rules[%d].flow %q: use one of %s", ErrConfig, i, r.Flow, strings.Join(config.Flows, ", "))
		}
		fr := &flowRule{bit: bit, host: strings.ToLower(r.Host)}
		for _, meth := range r.Methods {
			fr.methods = append(fr.methods, strings.ToUpper(meth))
		}
		fr.hostExa = !strings.ContainsAny(fr.host, `*?[\`)
		if r.Path == "" {
			m.userAny = append(m.userAny, fr)
			continue
		}
		pat, err := pathpattern.Compile(r.Path)
		if err != nil {
			return nil, fmt.Errorf("%w: business_flows.rules[%d].path: %w", ErrConfig, i, err)
		}
		fr.pat = pat
		if prefix, depth := literalPrefix(r.Path); depth > 0 {
			if m.userPrefix == nil {
				m.userPrefix = map[string][]*flowRule{}
			}
			m.userPrefix[prefix] = append(m.userPrefix[prefix], fr)
			m.prefixDepth = max(m.prefixDepth, depth)
		} else {
			m.userAny = append(m.userAny, fr)
		}
	}
	if bf.Builtin {
		m.builtin = builtinIndex
	}
	return m, nil
}

// builtinIndex is the compiled built-in table. It is the same for every configuration, so it
// is built once and shared; nothing modifies it.
var builtinIndex = compileBuiltinFlows()

func compileBuiltinFlows() map[string][]*flowRule {
	out := make(map[string][]*flowRule, len(builtinFlows))
	for _, b := range builtinFlows {
		bit, ok := flowBit(b.flow)
		if !ok {
			panic("built-in flow table names unknown flow " + b.flow)
		}
		anchor, ok := firstLiteral(b.pattern)
		if !ok {
			panic("built-in flow pattern without a literal segment: " + b.pattern)
		}
		out[anchor] = append(out[anchor], &flowRule{bit: bit, methods: b.methods, pat: pathpattern.MustCompile(b.pattern)})
	}
	return out
}

// literalPrefix returns the leading literal segments of a pattern, as "/a/b", and their
// number (at most maxPrefixDepth).
func literalPrefix(pattern string) (string, int) {
	var b strings.Builder
	n := 0
	for seg := range strings.SplitSeq(pattern, "/") {
		if seg == "" {
			continue
		}
		if n == maxPrefixDepth || strings.ContainsAny(seg, "*?[{}") {
			break
		}
		b.WriteByte('/')
		b.WriteString(seg)
		n++
	}
	return b.String(), n
}

// maxPrefixDepth bounds the prefix lookups per request.
const maxPrefixDepth = 4

// firstLiteral returns the first segment of a pattern that is a plain literal.
func firstLiteral(pattern string) (string, bool) {
	for seg := range strings.SplitSeq(pattern, "/") {
		if seg != "" && !strings.ContainsAny(seg, "*?[{}") {
			return seg, true
		}
	}
	return "", false
}

// match returns the flows of a request. host is lower case without its port; urlPath has no
// query string.
func (m *flowMatcher) match(method, host, urlPath string) flowMask {
	if m == nil {
		return 0
	}
	var got flowMask
	if len(m.userPrefix) > 0 {
		p := urlPath
		if strings.Contains(p, "//") {
			// Patterns ignore empty segments; prefixes are looked up in the clean form.
			p = cleanSlashes(p)
		}
		depth := 0
		for i := 1; i <= len(p) && depth < m.prefixDepth; i++ {
			if i < len(p) && p[i] != '/' {
				continue
			}
			depth++
			for _, r := range m.userPrefix[p[:i]] {
				got |= r.try(got, method, host, urlPath)
			}
		}
	}
	for _, r := range m.userAny {
		got |= r.try(got, method, host, urlPath)
	}
	if m.builtin != nil {
		lower := lowerASCII(urlPath)
		var seenBuf [8]string
		seen := seenBuf[:0]
		rest := lower
		for rest != "" {
			var seg string
			if i := strings.IndexByte(rest, '/'); i >= 0 {
				seg, rest = rest[:i], rest[i+1:]
			} else {
				seg, rest = rest, ""
			}
			if seg == "" {
				continue
			}
			rules, ok := m.builtin[seg]
			if !ok || slices.Contains(seen, seg) {
				continue
			}
			// Each anchor is tried once: a path repeating "/login" thousands of times
			// must not cost thousands of pattern matches.
			seen = append(seen, seg)
			for _, r := range rules {
				got |= r.try(got, method, host, lower)
			}
		}
	}
	return got
}

// try returns the rule's bit when the request matches and the flow is not already known.
func (r *flowRule) try(got flowMask, method, host, urlPath string) flowMask {
	if got&r.bit != 0 || !r.methodOK(method) || !r.hostOK(host) {
		return 0
	}
	if r.pat != nil && !r.pat.Match(urlPath) {
		return 0
	}
	return r.bit
}

// cleanSlashes collapses runs of "/" into one.
func cleanSlashes(p string) string {
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		if p[i] == '/' && i > 0 && p[i-1] == '/' {
			continue
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

// lowerASCII lowers ASCII letters, allocating only when there is one to lower.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; c >= 'A' && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
