package config

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Protection holds the rules that act on requests at their headers: block, rate-limit or tag
// (docs/protection.md). Actions take effect in inline mode only; in observability mode every
// verdict is recorded as what would have happened.
type Protection struct {
	Rules []ProtectionRule `yaml:"rules"`
	// MaxBuckets bounds the rate-limit buckets held in memory; the least recently used bucket
	// is dropped (and counted) when the table is full.
	MaxBuckets int `yaml:"max_buckets"`
	// MaxBlocks bounds the manual blocks held in memory.
	MaxBlocks int `yaml:"max_blocks"`
	// Login says which requests are logins and how their outcome reads, for the count
	// signals failed_logins, distinct_usernames and distinct_sessions.
	Login Login `yaml:"login"`
	// MaxWindows bounds the sliding windows held in memory for sequence, requires,
	// enumeration and count conditions and for login outcomes.
	MaxWindows int `yaml:"max_windows"`
}

// ProtectionRule is one rule: what it matches and what it does.
type ProtectionRule struct {
	Name      string          `yaml:"name"`
	Match     ProtectionMatch `yaml:"match"`
	Action    string          `yaml:"action"`
	DryRun    bool            `yaml:"dry_run"`
	Block     BlockAction     `yaml:"block"`
	RateLimit RateLimitAction `yaml:"rate_limit"`
	Tag       TagAction       `yaml:"tag"`
	// Sequence, Requires, Enumeration and Count are conditions over a window of past
	// requests (protection_state.go); each is absent unless written.
	Sequence    Sequence    `yaml:"sequence"`
	Requires    Requires    `yaml:"requires"`
	Enumeration Enumeration `yaml:"enumeration"`
	Count       Count       `yaml:"count"`
}

// ProtectionMatch lists conditions; a rule matches a request when every condition written
// matches (a list matches when any of its items does). A rule without conditions matches every
// request.
type ProtectionMatch struct {
	// Keys are grouping key kinds: param, builtin, fallback, or param:<name> and
	// builtin:<name> for one key.
	Keys        []string `yaml:"keys"`
	Users       []string `yaml:"users"`
	Roles       []string `yaml:"roles"`
	Routes      []string `yaml:"routes"`
	Methods     []string `yaml:"methods"`
	Flows       []string `yaml:"flows"`
	Malicious   bool     `yaml:"malicious"`
	AttackTypes []string `yaml:"attack_types"`
	// ClientIPs are addresses or prefixes (203.0.113.0/24).
	ClientIPs []string `yaml:"client_ips"`
	JA3       []string `yaml:"ja3"`
	JA4       []string `yaml:"ja4"`
	// RiskAtLeast matches requests whose session part has at least this risk score (1 to
	// 100) in the replica's live part at the request's time; 0 is no condition.
	RiskAtLeast int `yaml:"risk_at_least"`
}

// BlockAction is the immediate response of action block.
type BlockAction struct {
	Status  int               `yaml:"status"`
	Body    string            `yaml:"body"`
	Headers map[string]string `yaml:"headers"`
}

// RateLimitAction is a token bucket: Rate requests per period on average, bursts of Burst.
type RateLimitAction struct {
	// Rate is "N/s", "N/m", "N/h" or "N/<duration>" such as "300/5m".
	Rate string `yaml:"rate"`
	// Burst is the bucket's size; 0 means the rate's N.
	Burst int `yaml:"burst"`
	// By is "session" (one bucket per session), "session_route" (one per session and route
	// template), "user" (one per user, across sessions; requests without a user are not
	// limited) or "ip" (one per client address).
	By string `yaml:"by"`
}

// TagAction is the request header a tag rule sets (and the dynamic metadata key "verdict").
type TagAction struct {
	Header string `yaml:"header"`
}

// Protection actions (ProtectionRule.Action).
const (
	ActionBlock     = "block"
	ActionRateLimit = "rate_limit"
	ActionTag       = "tag"
)

// Rate-limit bucket keys (RateLimitAction.By).
const (
	BySession      = "session"
	BySessionRoute = "session_route"
	ByUser         = "user"
	ByIP           = "ip"
)

// Protection defaults and limits.
const (
	DefaultBlockStatus   = 403
	DefaultVerdictHeader = "x-apisessions-verdict"
	DefaultMaxBuckets    = 100000
	DefaultMaxBlocks     = 100000
	maxProtectionRules   = 256
	maxBlockBody         = 64 << 10
	maxRuleName          = 64
	maxMatchItems        = 1024
)

var protectionActions = []string{ActionBlock, ActionRateLimit, ActionTag}

// Enabled reports whether any rule is configured.
func (p *Protection) Enabled() bool { return len(p.Rules) > 0 }

// ParseRate reads a rate ("10/s", "300/5m") as requests and period.
func ParseRate(s string) (n int, per time.Duration, err error) {
	num, unit, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return 0, 0, fmt.Errorf("is not a rate")
	}
	n, err = strconv.Atoi(strings.TrimSpace(num))
	if err != nil || n <= 0 {
		return 0, 0, fmt.Errorf("does not start with a positive number of requests")
	}
	switch unit = strings.TrimSpace(unit); unit {
	case "s":
		per = time.Second
	case "m":
		per = time.Minute
	case "h":
		per = time.Hour
	default:
		per, err = time.ParseDuration(unit)
		if err != nil || per <= 0 {
			return 0, 0, fmt.Errorf("has no period s, m, h or a duration such as 5m")
		}
	}
	if per < time.Millisecond || per > 24*time.Hour {
		return 0, 0, fmt.Errorf("has a period outside 1ms to 24h")
	}
	return n, per, nil
}

// normalizeProtection lower-cases header names and upper-cases methods; defaults fill the
// block status and the tag header.
func (c *Config) normalizeProtection() {
	for i := range c.Protection.Rules {
		r := &c.Protection.Rules[i]
		for j, m := range r.Match.Methods {
			r.Match.Methods[j] = strings.ToUpper(m)
		}
		for j, h := range r.Match.JA3 {
			r.Match.JA3[j] = strings.ToLower(h)
		}
		if r.Action == ActionBlock && r.Block.Status == 0 {
			r.Block.Status = DefaultBlockStatus
		}
		if r.Action == ActionTag && r.Tag.Header == "" {
			r.Tag.Header = DefaultVerdictHeader
		}
		r.Tag.Header = strings.ToLower(r.Tag.Header)
		if r.Action == ActionRateLimit && r.RateLimit.By == "" {
			r.RateLimit.By = BySession
		}
		if len(r.Block.Headers) > 0 {
			lower := make(map[string]string, len(r.Block.Headers))
			for k, v := range r.Block.Headers {
				lower[strings.ToLower(k)] = v
			}
			r.Block.Headers = lower
		}
	}
}

func (v *validator) protection() {
	p := &v.c.Protection
	if p.MaxBuckets < 1 {
		v.add("protection.max_buckets", "%d is too small; use at least 1, the default is %d", p.MaxBuckets, DefaultMaxBuckets)
	}
	if p.MaxBlocks < 1 {
		v.add("protection.max_blocks", "%d is too small; use at least 1, the default is %d", p.MaxBlocks, DefaultMaxBlocks)
	}
	if p.MaxWindows < 1 {
		v.add("protection.max_windows", "%d is too small; use at least 1, the default is %d", p.MaxWindows, DefaultMaxWindows)
	}
	v.login()
	if len(p.Rules) > maxProtectionRules {
		v.add("protection.rules", "has %d rules; use at most %d", len(p.Rules), maxProtectionRules)
	}
	names := map[string]int{}
	for i := range p.Rules {
		r := &p.Rules[i]
		at := fmt.Sprintf("protection.rules[%d]", i)
		switch {
		case r.Name == "":
			v.add(at+".name", "is missing; name the rule, e.g. block-scanners (it appears in records and metrics)")
		case !ValidName(r.Name, maxRuleName):
			v.add(at+".name", "%s is not a rule name; use at most %d letters, digits, -, _ and ., e.g. block-scanners", v.show(at+".name", r.Name), maxRuleName)
		default:
			if first, dup := names[r.Name]; dup {
				v.add(at+".name", "%s is also the name of protection.rules[%d]; give each rule its own name", v.show(at+".name", r.Name), first)
			}
			names[r.Name] = i
		}
		v.protectionMatch(at+".match", &r.Match)
		v.protectionState(at, r)
		switch r.Action {
		case "":
			v.add(at+".action", "is missing; use one of %s", strings.Join(protectionActions, ", "))
		case ActionBlock, ActionRateLimit, ActionTag:
		default:
			v.add(at+".action", "%s is not an action%s; use one of %s", v.show(at+".action", r.Action), didYouMean(r.Action, protectionActions), strings.Join(protectionActions, ", "))
		}
		written := func(k string) bool { return v.c.written(at + "." + k) }
		for _, other := range []string{"block", "rate_limit", "tag"} {
			if other != r.Action && written(other) && r.Action != "" {
				v.add(at+"."+other, "is set but the action is %s; remove it or set action: %s", r.Action, other)
			}
		}
		switch r.Action {
		case ActionBlock:
			b := &r.Block
			if b.Status < 200 || b.Status > 599 {
				v.add(at+".block.status", "%d is not an HTTP status to answer with; use 200 to 599, e.g. 403 (the default)", b.Status)
			}
			if len(b.Body) > maxBlockBody {
				v.add(at+".block.body", "is %d bytes; keep it under %d", len(b.Body), maxBlockBody)
			}
			for _, k := range slices.Sorted(maps.Keys(b.Headers)) {
				val := b.Headers[k]
				hp := at + ".block.headers." + k
				switch {
				case strings.HasPrefix(k, ":") || !ValidToken(k):
					v.add(hp, "is not a header name Envoy can send; use letters, digits and -, e.g. x-blocked-by")
				case k == "content-length" || k == "transfer-encoding":
					v.add(hp, "is set by Envoy from the body; remove it")
				case !validHeaderText(val):
					v.add(hp, "has a value with control characters; write visible text")
				}
			}
		case ActionRateLimit:
			rl := &r.RateLimit
			n, _, err := ParseRate(rl.Rate)
			switch {
			case rl.Rate == "":
				v.add(at+".rate_limit.rate", "is missing; write requests per period, e.g. 10/s, 600/m or 300/5m")
			case err != nil:
				v.add(at+".rate_limit.rate", "%s %s; write requests per period, e.g. 10/s, 600/m or 300/5m", v.show(at+".rate_limit.rate", rl.Rate), err.Error())
			}
			if rl.Burst < 0 {
				v.add(at+".rate_limit.burst", "%d is negative; use 0 (the rate's %d requests) or more", rl.Burst, n)
			}
			switch rl.By {
			case BySession, BySessionRoute, ByUser, ByIP:
			default:
				v.add(at+".rate_limit.by", "%s is not a bucket key; use session (one bucket per session), session_route (per session and route template), user or ip", v.show(at+".rate_limit.by", rl.By))
			}
		case ActionTag:
			v.headerName(at+".tag.header", r.Tag.Header, DefaultVerdictHeader)
			if h := r.Tag.Header; h == "host" || strings.HasPrefix(h, "x-envoy-") {
				v.add(at+".tag.header", "%s is a header Envoy does not let ext_proc set; choose another name such as %s", v.show(at+".tag.header", h), DefaultVerdictHeader)
			}
		}
	}
}

func (v *validator) protectionMatch(at string, m *ProtectionMatch) {
	if m.RiskAtLeast < 0 || m.RiskAtLeast > 100 {
		v.add(at+".risk_at_least", "%d is out of range; use a risk score from 1 to 100 (0 or absent: no condition)", m.RiskAtLeast)
	}
	lists := []struct {
		key   string
		items []string
	}{{"keys", m.Keys}, {"users", m.Users}, {"roles", m.Roles}, {"routes", m.Routes}, {"methods", m.Methods},
		{"flows", m.Flows}, {"attack_types", m.AttackTypes}, {"client_ips", m.ClientIPs}, {"ja3", m.JA3}, {"ja4", m.JA4}}
	for _, l := range lists {
		if len(l.items) > maxMatchItems {
			v.add(at+"."+l.key, "has %d items; use at most %d", len(l.items), maxMatchItems)
		}
		for j, s := range l.items {
			ip := fmt.Sprintf("%s.%s[%d]", at, l.key, j)
			if s == "" {
				v.add(ip, "is empty; write a value or remove the item")
				continue
			}
			switch l.key {
			case "keys":
				src, _, _ := strings.Cut(s, ":")
				if src != "param" && src != "builtin" && src != "fallback" {
					v.add(ip, "%s is not a grouping key kind; use param, builtin or fallback, or param:<name> / builtin:<name> for one key (e.g. builtin:cookie:PHPSESSID)", v.show(ip, s))
				}
			case "routes":
				if !strings.HasPrefix(s, "/") {
					v.add(ip, "%s is not a route template; write it as records show it, starting with /, e.g. /api/items/{id}", v.show(ip, s))
				}
			case "methods":
				if !ValidToken(s) {
					v.add(ip, "%s is not an HTTP method; write a method such as GET or POST", v.show(ip, s))
				}
			case "flows":
				if !containsString(Flows, s) {
					v.add(ip, "%s is not a business flow%s; use one of %s", v.show(ip, s), didYouMean(s, Flows), strings.Join(Flows, ", "))
				}
			case "client_ips":
				if _, err := ParseIPOrPrefix(s); err != nil {
					v.add(ip, "%s is not an IP address or prefix; write e.g. 203.0.113.7 or 203.0.113.0/24", v.show(ip, s))
				}
			}
		}
	}
}

// ParseIPOrPrefix reads an address (a one-address prefix) or a prefix, masked.
func ParseIPOrPrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func containsString(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// validHeaderText accepts visible ASCII, spaces and tabs inside.
func validHeaderText(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
