package recommend

import (
	"strings"

	"github.com/apisessions/apisessions/config"
)

// Reasons a place is not a grouping key whatever its numbers: each names what the value is.
const (
	// ReasonTracker: an analytics, advertising or A/B-testing identifier. It follows a browser
	// for months, across every session and login of its user.
	ReasonTracker = "tracker or analytics identifier"
	// ReasonBotManager: a bot-manager or WAF cookie (Akamai, Cloudflare, Imperva, F5). It
	// identifies a browser to the bot manager and rotates on its own schedule.
	ReasonBotManager = "bot-manager or WAF cookie"
	// ReasonAffinity: a load balancer's affinity cookie, which names a backend, not a client.
	ReasonAffinity = "load-balancer affinity cookie"
	// ReasonGeo: a geographic, language or locale value, shared by every client of a place.
	ReasonGeo = "geo or locale value"
	// ReasonCounter: a counter, time or cache-buster that changes with every use or page.
	ReasonCounter = "counter or time"
	// ReasonUser: an attribute of the user (id, account, e-mail), the same in every session
	// of the user: it is offered as a context parameter of type user instead.
	ReasonUser = "user attribute"
)

// trackerPrefixes start the names of analytics, advertising and testing cookies and of the
// query parameters they add to links (case-insensitive).
var trackerPrefixes = []string{
	"_ga", "_gid", "_gat", "_gcl_", "__utm", "_fbp", "_fbc", "fbclid", "gclid", "_hj", "amp_",
	"mp_", "ajs_", "optimizely", "_uet", "_pin_", "_scid", "_tt_", "_ttp", "_clck", "_clsk",
	"__hs", "hubspotutk", "_ym_", "_sp_", "s_vi", "s_fid", "s_cc", "s_sq", "s_pers", "s_sess",
	"s_ecid", "amcv_", "amcvs_", "mbox", "utag_", "_dc_gtm", "_parsely", "__qca", "_chartbeat",
	"_cb", "__gads", "__gpi", "test_cookie", "muid", "anj", "uuid2", "_kuid_", "demdex",
	"dextp", "rmid", "wmf-uniq", "_rdt_", "_lr_", "intercom-", "ab_", "abtest", "__eoi",
	"__stripe_", "ki_", "_vwo", "_vis_opt", "__insp", "_mkto_", "visitor_id", "_pk_", "utm_",
	"adrum", "ora_fpc", "eloqua", "kampyle", "_lp", "lpvid", "lpsid-", "mf_", "_mkt", "__adroll", "wt_", "wt.", "wt3_", "dcs.", "wtstore", "_gd", "s_nr", "s_ppv", "_sm_au", "bounceclientvisit",
}

// trackerExact are whole tracker names that would be too short as prefixes.
var trackerExact = []string{"nid", "ide", "dsid", "fr", "bcookie", "bscookie", "lidc", "rt", "rmid"}

// botManagerPrefixes start the names of bot-manager and WAF cookies.
var botManagerPrefixes = []string{
	"_abck", "ak_bmsc", "bm_sz", "bm_sv", "bm_mi", "bm_so", "bm_lso", "akavpau_", "__cf_bm",
	"cf_clearance", "__cfduid", "__cflb", "cf_chl_", "visid_incap_", "incap_ses_", "nlbi_",
	"reese84", "datadome", "_px", "ts0", "__ddg", "aws-waf-token", "cf_",
}

// affinityPrefixes start the names of load balancers' affinity cookies.
var affinityPrefixes = []string{"bigipserver", "awsalb", "awselb", "arraffinity", "route", "serverid", "srv_id", "nsc_", "akaalb_", "sticky"}

// geoWords and counterWords are parts of the names of geo and locale values and of counters.
var (
	geoWords = []string{"geo", "location", "country", "locale", "lang", "timezone", "region", "city", "currency",
		"edgescape", "ipcountry", "postal", "zipcode", "latitude", "longitude"}
	counterWords = []string{"counter", "seq", "hits", "visits", "pageview", "timestamp", "time", "expire",
		"lastaccess", "lastactive", "lastvisit", "date", "cachebust", "random", "rand", "version"}
	counterExact = []string{"_", "t", "ts", "v", "r", "cb", "n", "page", "p", "offset", "limit"}
)

// trackerWords are parts of the folded names (normName) of identifiers that follow a
// browser or a device across sessions rather than one session.
var trackerWords = []string{"visitor", "device", "anonymous", "anonid", "fingerprint", "guid", "tracking", "analytics"}

// trackerHeaders are request and response headers of analytics and monitoring agents and
// CDNs: they identify a browser, an edge or a trace, not a session.
var trackerHeaders = []string{"x-client-data", "x-newrelic-id", "newrelic", "x-amplitude", "x-mixpanel",
	"x-segment", "x-hotjar", "x-ga", "cf-ray", "x-cache", "x-served-by", "x-timer", "x-amz-cf-id",
	"x-amz-cf-pop", "x-akamai-", "akamai-", "x-cdn", "x-edge-", "x-fastly-", "fastly-", "x-vercel-id",
	"x-trace", "x-b3", "x-span", "server-timing", "x-runtime", "x-backend", "x-upstream", "x-ab-"}

// sessionWords mark names that read like a session or credential: such a place is never
// taken for a user attribute or a counter.
var sessionWords = []string{"sess", "sid", "token", "auth", "jwt", "bearer", "apikey", "csrf", "xsrf"}

// demotion says why a place is no grouping key whatever its numbers ("" when it may be one).
func demotion(k candKey) string {
	name := strings.ToLower(k.lastName())
	switch k.in {
	case config.InRequestCookie, config.InResponseCookie:
		if r := cookieDemotion(name); r != "" {
			return r
		}
	case config.InRequestHeader, config.InResponseHeader:
		if k.decode == "" && hasAnyPrefix(name, trackerHeaders) {
			return ReasonTracker
		}
	case config.InRequestQuery:
		if hasAnyPrefix(name, trackerPrefixes) {
			return ReasonTracker
		}
	}
	// A JSON path is read whole: $.user.id is an attribute of the user, $.session.id is not.
	n := normName(name)
	if k.path != "" {
		n = normName(k.path)
	}
	if containsAny(n, sessionWords) {
		return ""
	}
	switch {
	case containsAny(n, trackerWords):
		return ReasonTracker
	case containsAny(n, geoWords):
		return ReasonGeo
	case userAttribute(n):
		return ReasonUser
	case containsAny(n, counterWords) || contains(counterExact, name) || strings.Contains(n, "count"):
		return ReasonCounter
	}
	return ""
}

// cookieDemotion classifies a cookie by its lower-case name.
func cookieDemotion(name string) string {
	switch {
	case hasAnyPrefix(name, botManagerPrefixes):
		return ReasonBotManager
	case hasAnyPrefix(name, trackerPrefixes) || contains(trackerExact, name):
		return ReasonTracker
	case hasAnyPrefix(name, affinityPrefixes):
		return ReasonAffinity
	}
	return ""
}

// userWords are parts of the names of user attributes.
var userWords = []string{"user", "account", "customer", "member", "email", "mail", "login", "profile", "person"}

// userAttribute reports whether a folded name (normName) reads like an attribute of the user.
func userAttribute(n string) bool {
	return !containsAny(n, sessionWords) && containsAny(n, userWords)
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

func containsAny(s string, words []string) bool {
	for _, w := range words {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
