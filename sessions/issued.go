package sessions

import (
	"bytes"
	"strings"

	"github.com/apisessions/apisessions/sessions/extract"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// TrackerCookies name the analytics, advertising and bot-manager cookies (and headers) that
// are never identifiers, whatever a response does with them: a name equal to an entry, or
// starting with an entry that ends in "*". Names are compared without case.
var TrackerCookies = []string{
	"_ga", "_ga_*", "_gid", "_gat*", "_gcl_*", "__utm*", "_fbp", "_fbc", "_hj*", "_clck", "_clsk",
	"_uetsid", "_uetvid", "amcv_*", "amcvs_*", "s_cc", "s_sq", "s_vi", "s_fid", "mbox", "__gads",
	"__gpi", "ide", "nid", "1p_jar", "_pin_unauth", "_tt_*", "_ttp", "_scid", "_rdt_uuid",
	"optimizely*", "mp_*", "ajs_*", "_dd_s", "_abck", "ak_bmsc", "bm_sz", "bm_sv", "bm_mi",
	"bm_so", "bm_ss", "bm_s", "bm_lso", "__cf_bm", "cf_clearance", "__cfduid", "_cfuvid",
	"incap_ses_*", "visid_incap_*", "nlbi_*", "reese84", "datadome", "_px*", "__px*", "_pxhd",
	"bigipserver*", "ts01*", "awsalb*", "awselb*", "geoip", "lang", "locale", "cookieconsent*",
	"optanon*", "euconsent*",
}

// tracker reports whether a cookie or header name is on TrackerCookies, or names an
// anti-CSRF token (it holds "csrf" or "xsrf"): those change with every page and say nothing
// of the session.
func tracker(name string) bool {
	if containsFold(name, "csrf") || containsFold(name, "xsrf") {
		return true
	}
	for _, t := range TrackerCookies {
		if p, ok := strings.CutSuffix(t, "*"); ok {
			if len(name) >= len(p) && strings.EqualFold(name[:len(p)], p) {
				return true
			}
		} else if strings.EqualFold(name, t) {
			return true
		}
	}
	return false
}

// builtinCookie reports whether name is a built-in session cookie.
func builtinCookie(name string) bool {
	for _, b := range builtinCookies {
		if b.name == name {
			return true
		}
	}
	return len(name) > len(BuiltinCookieSuffix) && strings.HasSuffix(name, BuiltinCookieSuffix)
}

// idLike reports whether a value can identify one client: long enough to be random (16
// bytes), varied (8 distinct bytes), with a digit or a mix of cases, and no spaces. Flags,
// languages, counters and dates fail it.
func idLike(v string) bool {
	if len(v) < 16 || len(v) > 4096 {
		return false
	}
	var seen [256]bool
	distinct := 0
	digit, upper, lower := false, false, false
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == ' ' || c < 0x20 || c >= 0x7f:
			return false
		case c >= '0' && c <= '9':
			digit = true
		case c >= 'A' && c <= 'Z':
			upper = true
		case c >= 'a' && c <= 'z':
			lower = true
		}
		if !seen[c] {
			seen[c] = true
			distinct++
		}
	}
	return distinct >= 8 && (digit || (upper && lower)) && (upper || lower)
}

// TokenFields name the members of a JSON response body whose value is an identifier the
// response issues (at the top level or inside one object member, e.g. {"data": {"token": …}}).
var TokenFields = []string{"access_token", "accessToken", "token", "id_token", "idToken", "session_id",
	"sessionId", "session_token", "sessionToken", "refresh_token", "refreshToken"}

// quotedTokenFields are TokenFields as JSON keys ("token"), for a quick look into a body.
var quotedTokenFields = func() [][]byte {
	out := make([][]byte, len(TokenFields))
	for i, f := range TokenFields {
		out[i] = []byte(`"` + f + `"`)
	}
	return out
}()

// refreshFields name the request body fields (form or JSON) that carry a refresh token.
var refreshFields = []string{"refresh_token", "refreshToken"}

var keyRefresh = record.Key{Source: record.SourceBuiltin, Name: "body:refresh_token"}

// issuedBuiltin appends the built-in identifiers the response of v issues: session cookies
// (and other first-party cookies that look like identifiers, as candidates), the built-in
// headers, a header carrying a JWT, and the TokenFields of a JSON body. A JWT is keyed as a
// request carrying it would be (its sid, else its sub, else the token).
func (s *snapshot) issuedBuiltin(v *extract.View, h *hasher, out []issuedValue) []issuedValue {
	add := func(val string, key record.Key, name string, candidate bool) {
		if len(out) >= maxIssued {
			return
		}
		sid := h.sessionID(val)
		for _, o := range out {
			if o.session == sid {
				return
			}
		}
		out = append(out, issuedValue{session: sid, key: key, name: name, candidate: candidate})
	}
	v.EachSetCookie(func(name, val string) bool {
		switch {
		case builtinCookie(name):
			add(val, cookieKey(name).key, "cookie:"+name, false)
		case !tracker(name) && idLike(val):
			add(val, cookieKey(name).key, "cookie:"+name, true)
		}
		return len(out) < maxIssued
	})
	v.EachHeader(extract.Response, func(name, val string) bool {
		// Most headers are neither a built-in identifier nor a JWT: tell that first, and look
		// the name up among the trackers only for those that are.
		var builtin *builtinKey
		for i := range builtinHeaders {
			if strings.EqualFold(builtinHeaders[i].name, name) {
				builtin = &builtinHeaders[i]
				break
			}
		}
		tok := ""
		if builtin == nil {
			if tok = jwtOf(val); tok == "" {
				return true
			}
		}
		lname := strings.ToLower(name)
		if lname == "set-cookie" || tracker(lname) {
			return true
		}
		if builtin != nil {
			add(val, builtin.key, "header:"+lname, false)
			return len(out) < maxIssued
		}
		if tok != "" {
			val, key := jwtIdentity(v, tok)
			add(val, key, "header:"+lname, false)
		}
		return len(out) < maxIssued
	})
	// A body that holds no token field's key is not parsed for one (most responses).
	if hasTokenField(v.Exchange().ResponseBody) {
		if doc, ok := v.JSONBody(extract.Response); ok {
			if m, ok := doc.(map[string]any); ok {
				s.tokenFields(v, m, add, true)
			}
		}
	}
	return out
}

// hasTokenField reports whether body holds one of TokenFields as a JSON key. Each of them ends
// in oken", ession_id" or essionId": three scans tell most bodies apart before eleven.
func hasTokenField(body []byte) bool {
	if !bytes.Contains(body, []byte(`oken"`)) && !bytes.Contains(body, []byte(`ession_id"`)) && !bytes.Contains(body, []byte(`essionId"`)) {
		return false
	}
	for _, f := range quotedTokenFields {
		if bytes.Contains(body, f) {
			return true
		}
	}
	return false
}

// tokenFields adds the TokenFields of m, and of its object members when nested.
func (s *snapshot) tokenFields(v *extract.View, m map[string]any, add func(string, record.Key, string, bool), nested bool) {
	for _, f := range TokenFields {
		raw, ok := m[f].(string)
		if !ok || raw == "" || len(raw) > 8192 {
			continue
		}
		if tok := jwtOf(raw); tok != "" {
			val, key := jwtIdentity(v, tok)
			add(val, key, "body:"+f, false)
			continue
		}
		key := keyBearer
		if f == "refresh_token" || f == "refreshToken" {
			key = keyRefresh
		}
		add(raw, key, "body:"+f, false)
	}
	if !nested {
		return
	}
	n := 0
	for _, val := range m {
		if sub, ok := val.(map[string]any); ok {
			if n++; n > 8 {
				return
			}
			s.tokenFields(v, sub, add, false)
		}
	}
}

// jwtOf returns the JWT a header value is, with or without a Bearer scheme; "" when it is none.
func jwtOf(val string) string {
	if t := bearerToken(val); t != "" {
		val = t
	}
	if len(val) < 20 || !strings.HasPrefix(val, "eyJ") || strings.Count(val, ".") != 2 {
		return ""
	}
	return val
}

// jwtIdentity is the value and key a request carrying tok as a bearer token is grouped by.
func jwtIdentity(v *extract.View, tok string) (string, record.Key) {
	if claims, ok := v.UnverifiedClaims(tok); ok {
		if m, ok := claims.(map[string]any); ok {
			if val, ok := claimValue(m, "sid"); ok {
				return val, keyJWTSid
			}
			if val, ok := claimValue(m, "sub"); ok {
				return val, keyJWTSub
			}
		}
	}
	return tok, keyBearer
}

// refreshToken returns a refresh token the request body carries (form or JSON).
func refreshToken(v *extract.View) (string, bool) {
	for _, f := range refreshFields {
		if val, ok := v.FormField(extract.Request, f); ok && val != "" {
			return val, true
		}
	}
	if doc, ok := v.JSONBody(extract.Request); ok {
		if m, ok := doc.(map[string]any); ok {
			for _, f := range refreshFields {
				if val, ok := m[f].(string); ok && val != "" {
					return val, true
				}
			}
		}
	}
	return "", false
}

// containsFold reports whether s holds the lower-case ASCII word sub, ignoring case.
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

// BodyRegroups reports whether a request body may change the grouping Peek gave by key at the
// request headers: a request-body grouping parameter comes before the parameter that decided
// (in file order, the grouping rule), or, when no parameter decided, any does, or the body's
// refresh token (the last built-in identifier) may come before what decided: a first-party
// cookie or the fallback. It reads the configuration only, so that the response-phase inline
// answer of a request with a body runs Peek again only where the body can change its answer.
// The zero key (no Peek yet) asks whether any request body may decide the grouping.
func (e *Engine) BodyRegroups(key record.Key) bool {
	s := e.snap.Load()
	for i := range s.params {
		p := &s.params[i]
		if p.key == key {
			// The parameter that decided; a body one may read more of the body now.
			return p.body && p.side == extract.Request
		}
		if p.group && p.body && p.side == extract.Request {
			return true
		}
	}
	return s.builtin && !headerBuiltin(key)
}

// headerBuiltin reports whether key is a built-in identifier that the request headers carry
// and that comes before the refresh token: a built-in cookie or header, or a bearer token.
func headerBuiltin(key record.Key) bool {
	if key.Source != record.SourceBuiltin {
		return false
	}
	if key == keyJWTSid || key == keyJWTSub || key == keyBearer {
		return true
	}
	for _, b := range builtinCookies {
		if b.key == key {
			return true
		}
	}
	for _, b := range builtinHeaders {
		if b.key == key {
			return true
		}
	}
	name, ok := strings.CutPrefix(key.Name, "cookie:")
	return ok && len(name) > len(BuiltinCookieSuffix) && strings.HasSuffix(name, BuiltinCookieSuffix)
}

// Regroups reports whether the response seen so far in x may change the grouping Peek gave at
// the request: a grouping parameter reads the response, or, with the built-in keys, the
// response may issue a value (a Set-Cookie, a built-in identifier header, a JWT in a header,
// or, at the body, a JSON key of TokenFields). It reads header names and looks for a few
// bytes only, so that the response-phase inline answer runs Peek again where its answer can
// change and nowhere else. body selects the response body's part of the question (the
// headers' was asked at the response headers).
func (e *Engine) Regroups(x *traffic.Exchange, body bool) bool {
	s := e.snap.Load()
	for i := range s.params {
		if p := &s.params[i]; p.group && p.side == extract.Response {
			return true
		}
	}
	if !s.builtin {
		return false
	}
	if body {
		return hasTokenField(x.ResponseBody)
	}
	for _, h := range x.ResponseHeaders {
		if strings.EqualFold(h.Name, "set-cookie") || jwtOf(h.Value) != "" {
			return true
		}
		for _, b := range builtinHeaders {
			if strings.EqualFold(b.name, h.Name) {
				return true
			}
		}
	}
	return false
}
