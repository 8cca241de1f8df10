package config

import (
	"fmt"
	"strings"
	"time"
)

// Sequence fires on the request that completes ordered steps within one session and a
// window: each step is a match, and the steps must come in order, the last within Within of
// the first (a password reset followed by an e-mail change within 5m).
type Sequence struct {
	Steps  []ProtectionMatch `yaml:"steps"`
	Within Duration          `yaml:"within"`
}

// Requires fires on a request the rule matches when no request of the same session matched
// Step within Within before it (a checkout without a cart view).
type Requires struct {
	Step   ProtectionMatch `yaml:"step"`
	Within Duration        `yaml:"within"`
}

// Enumeration fires when the requests a rule matches name more than MoreThan distinct object
// ids on one route template within Within, per session, user or client address. The object id
// is the path's {id} segments, or the value of the request parameter Param.
type Enumeration struct {
	MoreThan int      `yaml:"more_than"`
	Within   Duration `yaml:"within"`
	By       string   `yaml:"by"`
	Param    string   `yaml:"param"`
}

// Count fires when a signal over a sliding window is more than MoreThan: the requests the
// rule matches, or a login signal (protection.login).
type Count struct {
	Of       string   `yaml:"of"`
	MoreThan int      `yaml:"more_than"`
	Within   Duration `yaml:"within"`
	By       string   `yaml:"by"`
}

// Login says which requests are logins, who they log in and how their outcome reads.
type Login struct {
	// Routes are route templates; Methods their methods (default POST).
	Routes  []string `yaml:"routes"`
	Methods []string `yaml:"methods"`
	// Username names a request parameter (parameters) whose value is the username tried: a
	// JSON or form body field, a header, a query key. Usernames are kept only as HMACs.
	Username string       `yaml:"username"`
	Failure  LoginFailure `yaml:"failure"`
}

// LoginFailure says which answers to a login are failures; the other 2xx and 3xx answers
// are successes, and the rest (5xx, no answer) have no outcome.
type LoginFailure struct {
	// Status lists failure statuses (default 401 and 403).
	Status []int `yaml:"status"`
	// Header, when set, is a response header whose presence marks a failure whatever the
	// status (an API that answers 200 with x-login-failed).
	Header string `yaml:"header"`
}

// Count signals (Count.Of).
const (
	CountRequests          = "requests"
	CountFailedLogins      = "failed_logins"
	CountDistinctUsernames = "distinct_usernames"
	CountDistinctSessions  = "distinct_sessions"
)

// Window limits.
const (
	DefaultMaxWindows = 100000
	// MaxWindowEvents bounds more_than: a window holds at most more_than+1 events.
	MaxWindowEvents = 1000
	maxWindow       = 24 * time.Hour
	maxSequenceLen  = 16
)

var countSignals = []string{CountRequests, CountFailedLogins, CountDistinctUsernames, CountDistinctSessions}

// stateKinds are the window conditions of a rule, of which one at most is written.
var stateKinds = []string{"sequence", "requires", "enumeration", "count"}

// Enabled reports whether logins are configured.
func (l *Login) Enabled() bool { return len(l.Routes) > 0 }

// normalizeLogin fills the login defaults and the default keys of window conditions.
func (c *Config) normalizeLogin() {
	l := &c.Protection.Login
	if l.Enabled() {
		if len(l.Methods) == 0 {
			l.Methods = []string{"POST"}
		}
		for i, m := range l.Methods {
			l.Methods[i] = strings.ToUpper(m)
		}
		if len(l.Failure.Status) == 0 {
			l.Failure.Status = []int{401, 403}
		}
		l.Failure.Header = strings.ToLower(l.Failure.Header)
	}
	for i := range c.Protection.Rules {
		r := &c.Protection.Rules[i]
		for j := range r.Sequence.Steps {
			upper(r.Sequence.Steps[j].Methods)
		}
		upper(r.Requires.Step.Methods)
		if r.Enumeration.By == "" {
			r.Enumeration.By = BySession
		}
		if r.Count.By == "" {
			r.Count.By = BySession
			if r.Count.Of == CountDistinctSessions {
				r.Count.By = ByUser
			}
		}
	}
}

func upper(ss []string) {
	for i, s := range ss {
		ss[i] = strings.ToUpper(s)
	}
}

func (v *validator) login() {
	l := &v.c.Protection.Login
	at := "protection.login"
	if !v.c.written(at) {
		return
	}
	if len(l.Routes) == 0 {
		v.add(at+".routes", "is missing; list the login route templates, e.g. [/api/login]")
	}
	v.protectionMatch(at, &ProtectionMatch{Routes: l.Routes, Methods: l.Methods})
	if l.Username != "" {
		var p *Parameter
		for i := range v.c.Parameters {
			if v.c.Parameters[i].Name == l.Username {
				p = &v.c.Parameters[i]
			}
		}
		switch {
		case p == nil:
			v.add(at+".username", "%s names no parameter; declare it under parameters (e.g. {name: %s, in: request.body, path: $.username, hashed: true}) and name it here", v.show(at+".username", l.Username), l.Username)
		case !strings.HasPrefix(p.In, "request."):
			v.add(at+".username", "%s reads the response; a username is read from the login request (in: request.body, request.header, request.query or request.cookie)", v.show(at+".username", l.Username))
		}
	}
	for i, s := range l.Failure.Status {
		if s < 100 || s > 599 {
			v.add(fmt.Sprintf("%s.failure.status[%d]", at, i), "%d is not an HTTP status; use 100 to 599, e.g. 401", s)
		}
	}
	if h := l.Failure.Header; h != "" {
		v.headerName(at+".failure.header", h, "x-login-failed")
	}
}

// protectionState validates the window conditions of rule r at at.
func (v *validator) protectionState(at string, r *ProtectionRule) {
	var kinds []string
	for _, k := range stateKinds {
		if v.c.written(at + "." + k) {
			kinds = append(kinds, k)
		}
	}
	if len(kinds) > 1 {
		v.add(at+"."+kinds[1], "is set with %s; a rule has at most one of %s (write two rules)", kinds[0], strings.Join(stateKinds, ", "))
	}
	if len(kinds) > 0 && r.Action == ActionRateLimit {
		v.add(at+"."+kinds[0], "is set on a rate_limit rule; use it with action block or tag (a rate limit counts requests itself)")
	}
	for _, k := range kinds {
		switch k {
		case "sequence":
			s := &r.Sequence
			p := at + ".sequence"
			if len(s.Steps) < 2 || len(s.Steps) > maxSequenceLen {
				v.add(p+".steps", "has %d steps; write 2 to %d, in the order they must come (or use requires for one step that must come before)", len(s.Steps), maxSequenceLen)
			}
			for i := range s.Steps {
				v.step(fmt.Sprintf("%s.steps[%d]", p, i), &s.Steps[i])
			}
			v.window(p+".within", s.Within)
		case "requires":
			v.step(at+".requires.step", &r.Requires.Step)
			v.window(at+".requires.within", r.Requires.Within)
		case "enumeration":
			e := &r.Enumeration
			p := at + ".enumeration"
			v.moreThan(p+".more_than", e.MoreThan)
			v.window(p+".within", e.Within)
			v.windowBy(p+".by", e.By, BySession, ByUser, ByIP)
			if e.Param != "" && !v.requestParam(e.Param) {
				v.add(p+".param", "%s names no request parameter; declare it under parameters or leave param out to use the path's {id} segments", v.show(p+".param", e.Param))
			}
		case "count":
			c := &r.Count
			p := at + ".count"
			switch c.Of {
			case "":
				v.add(p+".of", "is missing; use one of %s", strings.Join(countSignals, ", "))
			case CountRequests:
				v.windowBy(p+".by", c.By, BySession, ByUser, ByIP)
			case CountFailedLogins:
				v.windowBy(p+".by", c.By, BySession, ByUser, ByIP)
			case CountDistinctUsernames:
				v.windowBy(p+".by", c.By, BySession, ByIP)
			case CountDistinctSessions:
				v.windowBy(p+".by", c.By, ByUser)
			default:
				v.add(p+".of", "%s is not a signal%s; use one of %s", v.show(p+".of", c.Of), didYouMean(c.Of, countSignals), strings.Join(countSignals, ", "))
			}
			if c.Of != CountRequests && containsString(countSignals, c.Of) {
				l := &v.c.Protection.Login
				switch {
				case !l.Enabled() && !v.c.written("protection.login"):
					v.add(p+".of", "%s counts login outcomes; configure protection.login (routes, username, failure)", c.Of)
				case c.Of != CountFailedLogins && l.Username == "":
					v.add(p+".of", "%s counts usernames; set protection.login.username", c.Of)
				case c.Of == CountFailedLogins && c.By == ByUser && l.Username == "":
					v.add(p+".by", "user counts by the username tried; set protection.login.username")
				}
			}
			v.moreThan(p+".more_than", c.MoreThan)
			v.window(p+".within", c.Within)
		}
	}
}

func (v *validator) step(at string, m *ProtectionMatch) {
	v.protectionMatch(at, m)
	if len(m.Keys)+len(m.Users)+len(m.Roles)+len(m.Routes)+len(m.Methods)+len(m.Flows)+len(m.AttackTypes)+len(m.ClientIPs)+len(m.JA3)+len(m.JA4) == 0 && !m.Malicious {
		v.add(at, "has no condition and would match every request; write e.g. {routes: [/api/cart], methods: [GET]}")
	}
}

func (v *validator) window(at string, d Duration) {
	if time.Duration(d) < time.Second || time.Duration(d) > maxWindow {
		v.add(at, "%s is not a window; write a duration from 1s to 24h, e.g. 5m", time.Duration(d))
	}
}

func (v *validator) moreThan(at string, n int) {
	if n < 0 || n > MaxWindowEvents {
		v.add(at, "%d is out of range; use 0 to %d", n, MaxWindowEvents)
	}
}

func (v *validator) windowBy(at, by string, allowed ...string) {
	for _, a := range allowed {
		if by == a {
			return
		}
	}
	v.add(at, "%s is not a key here; use %s", v.show(at, by), strings.Join(allowed, " or "))
}

func (v *validator) requestParam(name string) bool {
	for _, p := range v.c.Parameters {
		if p.Name == name && strings.HasPrefix(p.In, "request.") {
			return true
		}
	}
	return false
}
