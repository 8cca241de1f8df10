package recorded

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/apisessions/apisessions/sessions/traffic"
)

// har is the part of HAR 1.1 and 1.2 that ReadHAR reads. The two versions agree on every
// field read here (1.2 added content.encoding, serverIPAddress and comments); exporters of
// both differ in details that harNumber and harTime absorb.
type har struct {
	Log struct {
		Version string `json:"version"`
		Creator struct {
			Name string `json:"name"`
		} `json:"creator"`
		Entries []harEntry `json:"entries"`
	} `json:"log"`
}

type harEntry struct {
	StartedDateTime string      `json:"startedDateTime"`
	Time            harNumber   `json:"time"`
	Request         harRequest  `json:"request"`
	Response        harResponse `json:"response"`
	ServerIPAddress string      `json:"serverIPAddress"`
	ClientIP        string      `json:"_clientIP"`
	ClientIP2       string      `json:"_client_ip"`
	RequestID       string      `json:"_requestId"`
	// Handover holds the custom fields of an apisessions export (read by UnmarshalJSON).
	Handover harHandover `json:"-"`
}

// harHandover is what an apisessions export adds to each entry: the stored forms of what the
// engine found (explore's session.har).
type harHandover struct {
	Session     string            `json:"_session"`
	Part        string            `json:"_part"`
	Key         string            `json:"_key"`
	User        string            `json:"_user"`
	Role        string            `json:"_role"`
	ClaimedUser string            `json:"_claimedUser"`
	ClaimedRole string            `json:"_claimedRole"`
	Params      map[string]string `json:"_params"`
	JA3         string            `json:"_ja3"`
	JA4         string            `json:"_ja4"`
	Protection  *struct {
		Action string `json:"action"`
		Rule   string `json:"rule"`
		DryRun bool   `json:"dry_run"`
	} `json:"_protection"`
	RequestBytes  harNumber `json:"_requestBytes"`
	ResponseBytes harNumber `json:"_responseBytes"`
	Malicious     bool      `json:"_malicious"`
	Attack        *struct {
		Source        string            `json:"source"`
		Types         []string          `json:"types"`
		RuleIDs       []string          `json:"rule_ids"`
		Headers       map[string]string `json:"headers"`
		Body          string            `json:"body"`
		BodyTruncated bool              `json:"body_truncated"`
	} `json:"_attack"`
}

// UnmarshalJSON reads an entry and, apart, the custom fields of an apisessions export: a
// malformed custom field leaves what could be read of them and never the whole file unread.
func (e *harEntry) UnmarshalJSON(b []byte) error {
	type plain harEntry
	if err := json.Unmarshal(b, (*plain)(e)); err != nil {
		return err
	}
	_ = json.Unmarshal(b, &e.Handover)
	return nil
}

// Bounds of what an export's custom fields bring back, as the engine bounds what it records.
const (
	maxHandoverName  = 256  // session, part, key
	maxHandoverValue = 1024 // user, role, a parameter value
	maxHandoverItems = 1000 // parameters, attack headers, types and rule ids
)

// applyHandover gives x what an apisessions export recorded of its entry: the stored
// grouping, client, verdicts and body sizes. An entry that names no exported session is left
// as it is.
func applyHandover(x *traffic.Exchange, e *harEntry, o Options) {
	hh := &e.Handover
	if hh.Session == "" {
		return
	}
	hv := hh.handover(o)
	if a, err := netip.ParseAddr(e.ClientIP); err == nil {
		hv.ClientIP = a.String()
	}
	hv.JA3, hv.JA4 = cut(hh.JA3, maxHandoverName), cut(hh.JA4, maxHandoverName)
	if p := hh.Protection; p != nil && p.Action != "" {
		x.Verdict = traffic.Verdict{Action: cut(p.Action, maxHandoverName), Rule: cut(p.Rule, maxHandoverName), DryRun: p.DryRun}
	}
	// The sizes as stored. A body in an export is the content kept of a malicious request
	// (in _attack too), hashed values hashed: not the body that was sent.
	x.RequestBody, x.RequestBodyTruncated, x.RequestBytes = nil, false, size(hh.RequestBytes)
	x.ResponseBody, x.ResponseBodyTruncated, x.ResponseBytes = nil, false, size(hh.ResponseBytes)
	x.Handover = hv
}

// size is a byte count read from a file, within [0, 2^53].
func size(n harNumber) int64 { return int64(min(max(float64(n), 0), 1<<53)) }

// handover returns the custom fields as the engine reads them.
func (hh *harHandover) handover(o Options) *traffic.Handover {
	src, name, _ := strings.Cut(cut(hh.Key, maxHandoverName), ":")
	hv := &traffic.Handover{
		Session: cut(hh.Session, maxHandoverName), Part: cut(hh.Part, maxHandoverName),
		KeySource: src, KeyName: name,
		User: cut(hh.User, maxHandoverValue), Role: cut(hh.Role, maxHandoverValue),
		ClaimedUser: cut(hh.ClaimedUser, maxHandoverValue), ClaimedRole: cut(hh.ClaimedRole, maxHandoverValue),
		Params:    cutMap(hh.Params, maxHandoverValue),
		Malicious: hh.Malicious,
	}
	if a := hh.Attack; a != nil {
		body, truncated := capBody(a.Body, o.MaxBodyBytes)
		hv.Attack = &traffic.HandoverAttack{
			Source: cut(a.Source, maxHandoverName), Types: cutList(a.Types), RuleIDs: cutList(a.RuleIDs),
			Headers: cutMap(a.Headers, maxHandoverValue), Body: string(body), BodyTruncated: a.BodyTruncated || truncated,
		}
	}
	return hv
}

// cut keeps at most n bytes of s, on a UTF-8 boundary.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func cutMap(m map[string]string, n int) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, min(len(m), maxHandoverItems))
	for k, v := range m {
		if len(out) == maxHandoverItems {
			break
		}
		out[cut(k, maxHandoverName)] = cut(v, n)
	}
	return out
}

func cutList(l []string) []string {
	out := make([]string, 0, min(len(l), maxHandoverItems))
	for _, v := range l[:min(len(l), maxHandoverItems)] {
		out = append(out, cut(v, maxHandoverName))
	}
	return out
}

type harNV struct {
	Name  string
	Value string
}

// UnmarshalJSON reads a name and a value that some exporters write as other JSON values (a
// form parameter whose value is an object, a number, null): such a value keeps its JSON text,
// so one odd entry does not make the whole file unreadable.
func (nv *harNV) UnmarshalJSON(b []byte) error {
	var raw struct {
		Name  json.RawMessage `json:"name"`
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	nv.Name, nv.Value = jsonText(raw.Name), jsonText(raw.Value)
	return nil
}

// jsonText is a JSON string's value, "" for null or nothing, else the value's JSON text.
func jsonText(b json.RawMessage) string {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		return s
	}
	if len(b) == 0 || string(b) == "null" {
		return ""
	}
	return string(b)
}

type harRequest struct {
	Method   string       `json:"method"`
	URL      string       `json:"url"`
	Headers  []harNV      `json:"headers"`
	Cookies  []harNV      `json:"cookies"`
	PostData *harPostData `json:"postData"`
}

type harPostData struct {
	MimeType string  `json:"mimeType"`
	Text     string  `json:"text"`
	Params   []harNV `json:"params"`
}

type harResponse struct {
	Status  harNumber `json:"status"`
	Headers []harNV   `json:"headers"`
	Cookies []harNV   `json:"cookies"`
	Content struct {
		Text     string `json:"text"`
		Encoding string `json:"encoding"`
	} `json:"content"`
}

// ExportCreator is log.creator.name in the HAR files apisessions exports. ReadHAR reads the
// custom fields of such a file's entries (_session, _part, _key, _user, _role, _params,
// _malicious, _attack ...) into traffic.Handover, so that a replay groups each exported part
// into one session of its own with the stored users, parameters and verdicts.
const ExportCreator = "apisessions"

// ReadHAR reads a HAR 1.1 or 1.2 log as browsers and proxies save it, a byte order mark
// allowed. Entries whose URL does not parse or whose method is missing are skipped and counted
// in the error only when none is left.
func ReadHAR(r io.Reader, o Options) ([]traffic.Exchange, error) {
	br := bufio.NewReader(r)
	if b, err := br.Peek(3); err == nil && string(b) == "\xef\xbb\xbf" {
		_, _ = br.Discard(3) // Windows tools save HAR files with a UTF-8 byte order mark
	}
	var h har
	if err := json.NewDecoder(br).Decode(&h); err != nil {
		return nil, fmt.Errorf("not a HAR file: %w", err)
	}
	if v := h.Log.Version; v != "" && !strings.HasPrefix(v, "1.") {
		return nil, fmt.Errorf("HAR version %.16q is not 1.1 or 1.2; save the capture as HAR 1.2", v)
	}
	xs := make([]traffic.Exchange, 0, len(h.Log.Entries))
	ids := map[string]bool{}
	skipped := 0
	// An apisessions export replays as the sessions it exported (traffic.Handover).
	export := h.Log.Creator.Name == ExportCreator
	for i := range h.Log.Entries {
		x, ok := harExchange(&h.Log.Entries[i], i, o)
		if !ok {
			skipped++
			continue
		}
		if export {
			applyHandover(&x, &h.Log.Entries[i], o)
		}
		x.RequestID = uniqueID(ids, x.RequestID, i)
		xs = append(xs, x)
	}
	if len(xs) == 0 && skipped > 0 {
		return nil, fmt.Errorf("none of the %d HAR entries has a method and an absolute URL", skipped)
	}
	return xs, nil
}

// uniqueID returns id, or when an earlier entry already used it, id with "~" and the entry's
// number ("~" needs no escaping in the request lookup's URL): a client that keeps its
// x-request-id across the hops of a redirect sends one id for several requests, and each
// request must stay a request of its own (records, the request lookup).
func uniqueID(seen map[string]bool, id string, i int) string {
	if seen[id] {
		base := id + "~" + strconv.Itoa(i+1)
		id = base
		for n := 2; seen[id]; n++ {
			id = base + "." + strconv.Itoa(n)
		}
	}
	seen[id] = true
	return id
}

// harExchange turns the i-th entry into an exchange; false when it has no method or no
// absolute URL.
func harExchange(e *harEntry, i int, o Options) (traffic.Exchange, bool) {
	u, err := url.Parse(e.Request.URL)
	if err != nil || u.Host == "" || e.Request.Method == "" {
		return traffic.Exchange{}, false
	}
	var x traffic.Exchange
	x.Method = strings.ToUpper(e.Request.Method)
	x.Scheme = u.Scheme
	x.Host = u.Host
	x.Path = u.EscapedPath()
	if x.Path == "" {
		x.Path = "/"
	}
	if u.RawQuery != "" {
		x.Path += "?" + u.RawQuery
	}
	x.Start = harTime(e.StartedDateTime)
	if !x.Start.IsZero() {
		x.End = x.Start.Add(time.Duration(min(max(float64(e.Time), 0), maxEntryMillis) * float64(time.Millisecond)))
	}
	ip := firstNonEmpty(e.ClientIP, e.ClientIP2, o.ClientIP, DefaultClientIP)
	if a, err := netip.ParseAddr(ip); err == nil {
		x.SourceAddress = net.JoinHostPort(a.String(), "0")
	}
	x.RequestHeaders = pseudo(x.Method, x.Scheme, x.Host, x.Path)
	x.RequestHeaders = appendHeaders(x.RequestHeaders, e.Request.Headers)
	if _, ok := x.RequestHeader("cookie"); !ok && len(e.Request.Cookies) > 0 {
		parts := make([]string, 0, len(e.Request.Cookies))
		for _, c := range e.Request.Cookies {
			parts = append(parts, c.Name+"="+c.Value)
		}
		x.RequestHeaders = append(x.RequestHeaders, traffic.Header{Name: "cookie", Value: strings.Join(parts, "; ")})
	}
	x.RequestID = e.RequestID
	if x.RequestID == "" {
		x.RequestID, _ = x.RequestHeader("x-request-id")
	}
	if x.RequestID == "" {
		x.RequestID = "har-" + strconv.Itoa(i+1)
	}
	if e.Request.PostData != nil {
		harRequestBody(&x, e.Request.PostData, o)
	}
	if e.Response.Status >= 1 && e.Response.Status <= 999 {
		harResponseSide(&x, &e.Response, o)
	} else {
		x.Partial = true
	}
	return x, true
}

// harRequestBody fills the request body from postData: its text, else its form parameters
// encoded as a form; and the content type when no header gave one.
func harRequestBody(x *traffic.Exchange, pd *harPostData, o Options) {
	body := pd.Text
	if body == "" && len(pd.Params) > 0 {
		v := url.Values{}
		for _, p := range pd.Params {
			v.Add(p.Name, p.Value)
		}
		body = v.Encode()
	}
	x.RequestBytes = int64(len(body))
	x.RequestBody, x.RequestBodyTruncated = capBody(body, o.MaxBodyBytes)
	if _, ok := x.RequestHeader("content-type"); !ok && pd.MimeType != "" {
		x.RequestHeaders = append(x.RequestHeaders, traffic.Header{Name: "content-type", Value: pd.MimeType})
	}
}

// harResponseSide fills the response: status, headers (set-cookie from the cookies when no
// header carries one) and the body, decoded when HAR stored it in base64.
func harResponseSide(x *traffic.Exchange, r *harResponse, o Options) {
	x.ResponseSeen = true
	x.Status = int(r.Status)
	x.ResponseHeaders = []traffic.Header{{Name: ":status", Value: strconv.Itoa(x.Status)}}
	x.ResponseHeaders = appendResponseHeaders(x.ResponseHeaders, r.Headers)
	if _, ok := x.ResponseHeader("set-cookie"); !ok {
		for _, c := range r.Cookies {
			x.ResponseHeaders = append(x.ResponseHeaders, traffic.Header{Name: "set-cookie", Value: c.Name + "=" + c.Value})
		}
	}
	body := r.Content.Text
	if strings.EqualFold(r.Content.Encoding, "base64") {
		if b, err := base64.StdEncoding.DecodeString(body); err == nil {
			body = string(b)
		}
	}
	x.ResponseBytes = int64(len(body))
	x.ResponseBody, x.ResponseBodyTruncated = capBody(body, o.MaxBodyBytes)
}

// appendResponseHeaders adds the response's HAR headers as appendHeaders does, and splits a
// set-cookie value that holds several cookies on separate lines: browsers export the
// set-cookie headers of one response as one value joined by newlines, and on the wire (and in
// Envoy) each is a header of its own.
func appendResponseHeaders(hs []traffic.Header, in []harNV) []traffic.Header {
	for _, h := range in {
		if !strings.EqualFold(h.Name, "set-cookie") || !strings.ContainsAny(h.Value, "\r\n") {
			hs = appendHeaders(hs, []harNV{h})
			continue
		}
		for line := range strings.FieldsFuncSeq(h.Value, func(r rune) bool { return r == '\n' || r == '\r' }) {
			if line = strings.TrimSpace(line); line != "" {
				hs = append(hs, traffic.Header{Name: "set-cookie", Value: line})
			}
		}
	}
	return hs
}

// appendHeaders adds HAR headers in lower case, leaving out HTTP/2 pseudo-headers (rebuilt
// from the URL) and the hop-by-hop ones Envoy never passes on.
func appendHeaders(hs []traffic.Header, in []harNV) []traffic.Header {
	for _, h := range in {
		n := strings.ToLower(h.Name)
		if n == "" || n[0] == ':' || n == "connection" || n == "transfer-encoding" {
			continue
		}
		if n == "host" {
			continue // :authority carries it
		}
		hs = append(hs, traffic.Header{Name: n, Value: h.Value})
	}
	return hs
}

// maxEntryMillis bounds an entry's duration (a day): a hostile or broken time must not push
// the replay clock years ahead.
const maxEntryMillis = 24 * 60 * 60 * 1000

// harNumber is a HAR number that some exporters write as a string ("200", "12.5"); a value
// that is neither reads as 0.
type harNumber float64

func (n *harNumber) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f != f { // NaN
		f = 0
	}
	*n = harNumber(f)
	return nil
}

// harLayouts are the startedDateTime forms exporters write: ISO 8601 with a zone, with or
// without fractions, the offset with or without a colon.
var harLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999Z0700", "2006-01-02T15:04:05.999999999"}

// harTime parses startedDateTime; the zero time when it is missing or unreadable (replay
// keeps such an entry after the one before it in the file).
func harTime(s string) time.Time {
	if len(s) > 64 {
		return time.Time{}
	}
	for _, l := range harLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t
		}
	}
	return time.Time{}
}
