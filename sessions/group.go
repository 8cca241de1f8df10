package sessions

import (
	"strings"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions/extract"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// BuiltinCookies and BuiltinHeaders name the documented built-in identifiers, in the order
// they are tried (docs/configuration.md "Grouping"). Treat them as read-only.
var (
	BuiltinCookies = []string{"PHPSESSID", "JSESSIONID", "ASP.NET_SessionId", ".AspNetCore.Session", "connect.sid",
		"rack.session", "laravel_session", "sessionid", "sid", "session"}
	BuiltinHeaders = []string{"session-id", "x-session-id", "mcp-session-id", "x-session-token", "x-auth-token",
		"x-api-key", "api-key"}
	// BuiltinCookieSuffix makes any cookie whose name ends with it a built-in identifier
	// (Rails' _app_session and the like), tried after BuiltinCookies.
	BuiltinCookieSuffix = "_session"
)

// builtinCookies and builtinHeaders are the same lists with their record names precomputed.
var (
	builtinCookies = builtinKeys(BuiltinCookies, cookieKey)
	builtinHeaders = builtinKeys(BuiltinHeaders, headerKey)
	keyJWTSid      = record.Key{Source: record.SourceBuiltin, Name: "jwt:sid"}
	keyJWTSub      = record.Key{Source: record.SourceBuiltin, Name: "jwt:sub"}
	keyBearer      = record.Key{Source: record.SourceBuiltin, Name: "bearer"}
)

type builtinKey struct {
	name string
	key  record.Key
}

func cookieKey(name string) builtinKey {
	return builtinKey{name: name, key: record.Key{Source: record.SourceBuiltin, Name: "cookie:" + name}}
}

func headerKey(name string) builtinKey {
	return builtinKey{name: name, key: record.Key{Source: record.SourceBuiltin, Name: "header:" + name}}
}

func builtinKeys(names []string, key func(string) builtinKey) []builtinKey {
	out := make([]builtinKey, len(names))
	for i, n := range names {
		out[i] = key(n)
	}
	return out
}

// Fallback parts (sessions.fallback).
const (
	fallbackIP        = config.FallbackIP
	fallbackUserAgent = config.FallbackUserAgent
	fallbackJA3       = config.FallbackJA3
	fallbackJA4       = config.FallbackJA4
)

// client is what a request says about its sender, resolved once per exchange.
type client struct {
	ip        string
	userAgent string // full value: the fallback key hashes all of it
	ja3, ja4  string
}

func (c *client) part(name string) string {
	switch name {
	case fallbackIP:
		return c.ip
	case fallbackUserAgent:
		return c.userAgent
	case fallbackJA3:
		return c.ja3
	case fallbackJA4:
		return c.ja4
	}
	return ""
}

// resolveClient reads the client address, user agent and TLS fingerprints. Fingerprints that
// do not look like fingerprints are treated as absent rather than trusted as keys.
func (s *snapshot) resolveClient(x *traffic.Exchange) client {
	c := client{ip: clientIP(x, s.ipFrom, s.trustedHops)}
	c.userAgent, _ = x.RequestHeader("user-agent")
	if s.ja3Header != "" {
		if v, ok := x.RequestHeader(s.ja3Header); ok && validJA3(v) {
			c.ja3 = strings.ToLower(v)
		}
	}
	if s.ja4Header != "" {
		if v, ok := x.RequestHeader(s.ja4Header); ok && validJA4(v) {
			c.ja4 = v
		}
	}
	return c
}

// groupBuiltin tries the built-in identifiers in their documented order.
func groupBuiltin(v *extract.View) (string, record.Key, bool) {
	for _, b := range builtinCookies {
		if val, ok := v.Cookie(b.name); ok && val != "" {
			return val, b.key, true
		}
	}
	if name, val, ok := v.CookieWithSuffix(BuiltinCookieSuffix); ok {
		return val, cookieKey(name).key, true
	}
	for _, b := range builtinHeaders {
		if val, ok := v.Header(extract.Request, b.name); ok && val != "" {
			return val, b.key, true
		}
	}
	if auth, ok := v.Header(extract.Request, "authorization"); ok {
		if token := bearerToken(auth); token != "" {
			if strings.Count(token, ".") == 2 {
				if claims, ok := v.UnverifiedClaims(token); ok {
					if m, ok := claims.(map[string]any); ok {
						if val, ok := claimValue(m, "sid"); ok {
							return val, keyJWTSid, true
						}
						if val, ok := claimValue(m, "sub"); ok {
							return val, keyJWTSub, true
						}
					}
				}
			}
			return token, keyBearer, true
		}
	}
	if val, ok := refreshToken(v); ok {
		return val, keyRefresh, true
	}
	return "", record.Key{}, false
}

func claimValue(m map[string]any, name string) (string, bool) {
	c, ok := m[name]
	if !ok {
		return "", false
	}
	val, ok := extract.Scalar(c)
	return val, ok && val != ""
}

// bearerToken returns the credentials of an "Authorization: Bearer <token>" value; the scheme
// is case-insensitive (RFC 9110 section 11.1).
func bearerToken(auth string) string {
	const scheme = "bearer "
	if len(auth) <= len(scheme) || !strings.EqualFold(auth[:len(scheme)], scheme) {
		return ""
	}
	return strings.TrimSpace(auth[len(scheme):])
}

// fallback builds the last-resort key from the configured parts that are present, in
// configured order. When none is present every such request shares one key, named "ip" and
// joined as "ip=", so the result is still deterministic across replicas.
func (s *snapshot) fallback(c *client) (join string, key record.Key) {
	var mask uint
	n := 0
	for i, name := range s.fallbackParts {
		if v := c.part(name); v != "" {
			mask |= 1 << i
			n += len(name) + 2 + len(v)
		}
	}
	if mask == 0 {
		return fallbackIP + "=", record.Key{Source: record.SourceFallback, Name: fallbackIP}
	}
	var b strings.Builder
	b.Grow(n)
	for i, name := range s.fallbackParts {
		if mask&(1<<i) == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(0)
		}
		b.WriteString(name)
		b.WriteByte('=')
		b.WriteString(c.part(name))
	}
	return b.String(), s.fallbackKeys[mask]
}

// resolveRest is grouping once no grouping parameter worked (readParams): the built-in
// identifiers when enabled, then the fallback of client c.
func (s *snapshot) resolveRest(v *extract.View, c *client, h *hasher) (string, record.Key) {
	if s.builtin {
		if val, key, ok := groupBuiltin(v); ok {
			return h.sessionID(val), key
		}
	}
	join, key := s.fallback(c)
	return h.fallbackID(join), key
}
