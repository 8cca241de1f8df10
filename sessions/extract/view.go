package extract

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/ohler55/ojg/oj"

	"github.com/apisessions/apisessions/config/pathpattern"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// Bounds on what one View keeps. Beyond them, further cookies, set-cookies, query pairs and
// multipart fields are ignored: a request carrying thousands of them is hostile, and the
// lists live on in the pool.
const (
	maxPairs          = 1024
	maxMultipartParts = 256
	// pooledPairs is the largest list capacity a released View keeps.
	pooledPairs = 128
	// pooledParseBytes: a parser that read more than this may hold large internal buffers,
	// so a released View drops it.
	pooledParseBytes = 64 << 10
	pooledScratch    = 32 << 10
)

// pair is a name and its value as they appear in a header or the query string: substrings of
// the Exchange's strings, so splitting allocates nothing.
type pair struct{ name, value string }

type bodyKind uint8

const (
	bodyUnknown bodyKind = iota // not classified yet
	bodyNone                    // absent, truncated, too large or of another type
	bodyJSON
	bodyForm
	bodyMultipart
)

type bodyState struct {
	kind bodyKind
	// JSON: parsed at most once; doc is valid only when jsonOK.
	jsonDone, jsonOK bool
	doc              any
	// multipart/form-data: copies of the fields' values, read once.
	formDone bool
	fields   []pair
}

// View is one Exchange as extractors read it: each body parsed at most once, cookies,
// set-cookies and the query parsed lazily. Not safe for concurrent use; one per exchange.
type View struct {
	x       *traffic.Exchange
	cache   *Cache
	maxBody int

	cookiesDone    bool
	cookies        []pair
	setCookiesDone bool
	setCookies     []pair
	queryDone      bool
	query          []pair

	bodies [2]bodyState

	// The last token UnverifiedClaims saw: several parameters usually read the same bearer
	// token (user, role, built-in sid/sub keys), and this spares them the hashing.
	lastToken  string
	lastClaims any
	lastOK     bool
	haveLast   bool

	parser      *oj.Parser
	parsedBytes int
	scratch     []byte

	// tapes are the scanned JSON bodies (see scan.go), one per side; tapeDone and tapeOK say
	// whether a side was scanned and whether its tape may be read.
	tapes    [2][]tok
	tapeDone [2]bool
	tapeOK   [2]bool

	// errs counts the values this View fails to parse; nil counts nothing.
	errs *ParseErrors
}

// Sources of parse failures, the index of ParseErrors' counters.
const (
	// ParseJSONBody: a body that is JSON by its content type (or sniffed) but does not parse.
	ParseJSONBody = iota
	// ParseFormBody: a multipart/form-data body without a boundary or with a malformed part.
	ParseFormBody
	// ParseJWT: a token read with decode: jwt (or a built-in JWT key) whose payload is not
	// base64url JSON of an object.
	ParseJWT
	// ParseBase64: a value read with decode: base64 that is not base64.
	ParseBase64
	// ParseJSON: a value read with decode: json that is not JSON.
	ParseJSON
	// NumParseSources is the number of sources.
	NumParseSources
)

// ParseSourceNames names the sources, by index, as metrics label them.
var ParseSourceNames = [NumParseSources]string{"json_body", "form_body", "jwt", "base64", "json"}

// ParseErrors counts parse failures by source. Extraction treats an unparsable value as an
// absent parameter; these counts make such traffic visible. Safe for concurrent use.
type ParseErrors struct {
	n [NumParseSources]atomic.Uint64
}

// Counts returns the counts by source.
func (p *ParseErrors) Counts() [NumParseSources]uint64 {
	var out [NumParseSources]uint64
	for i := range p.n {
		out[i] = p.n[i].Load()
	}
	return out
}

// CountErrors makes the View count its parse failures into p (nil: count nothing). A caller
// that reads one exchange through several Views counts through one of them only.
func (v *View) CountErrors(p *ParseErrors) { v.errs = p }

func (v *View) parseError(source int) {
	if v.errs != nil {
		v.errs.n[source].Add(1)
	}
}

var viewPool = sync.Pool{New: func() any { return new(View) }}

var emptyExchange traffic.Exchange

// NewView prepares x for extraction. c may be nil (claims are then decoded on every call).
// maxBodyBytes caps the bodies that are parsed; <= 0 means no cap beyond what x holds.
// Call Release when done.
func NewView(x *traffic.Exchange, c *Cache, maxBodyBytes int) *View {
	v := viewPool.Get().(*View)
	v.x, v.cache, v.maxBody = x, c, maxBodyBytes
	return v
}

// Exchange returns the exchange the View reads.
func (v *View) Exchange() *traffic.Exchange { return v.x }

func (v *View) ex() *traffic.Exchange {
	if v.x == nil {
		return &emptyExchange
	}
	return v.x
}

// Release returns the View's buffers to a pool. Values already returned stay valid; the View
// must not be used again.
func (v *View) Release() {
	v.x, v.cache, v.errs = nil, nil, nil
	v.cookies = resetPairs(v.cookies)
	v.setCookies = resetPairs(v.setCookies)
	v.query = resetPairs(v.query)
	v.cookiesDone, v.setCookiesDone, v.queryDone = false, false, false
	for i := range v.bodies {
		b := &v.bodies[i]
		*b = bodyState{fields: resetPairs(b.fields)}
	}
	v.lastToken, v.lastClaims, v.lastOK, v.haveLast = "", nil, false, false
	if v.parsedBytes > pooledParseBytes {
		v.parser = nil
	}
	v.parsedBytes = 0
	if cap(v.scratch) > pooledScratch {
		v.scratch = nil
	}
	for i := range v.tapes {
		if cap(v.tapes[i]) > pooledTape {
			v.tapes[i] = nil
		}
		v.tapes[i] = v.tapes[i][:0]
	}
	v.tapeDone, v.tapeOK = [2]bool{}, [2]bool{}
	viewPool.Put(v)
}

func resetPairs(p []pair) []pair {
	if cap(p) > pooledPairs {
		return nil
	}
	clear(p)
	return p[:0]
}

// Header returns the first non-empty value of the named header of one side; name is lower
// case. The returned string shares memory with the Exchange.
func (v *View) Header(side Side, name string) (string, bool) {
	x := v.ex()
	hs := x.RequestHeaders
	if side == Response {
		hs = x.ResponseHeaders
	}
	return firstHeader(hs, name)
}

func firstHeader(hs []traffic.Header, name string) (string, bool) {
	for i := range hs {
		h := &hs[i]
		if h.Value != "" && headerNameIs(h.Name, name) {
			return h.Value, true
		}
	}
	return "", false
}

// headerNameIs compares a header name as sent with a lower-case name. Envoy lowers names;
// recorded traffic replayed from files may not.
func headerNameIs(sent, lower string) bool {
	return len(sent) == len(lower) && (sent == lower || strings.EqualFold(sent, lower))
}

// Cookie returns the first non-empty value of the named cookie in the request's cookie
// header(s). Names are case-sensitive, as browsers treat them.
func (v *View) Cookie(name string) (string, bool) {
	if !v.cookiesDone {
		v.cookiesDone = true
		for _, h := range v.ex().RequestHeaders {
			if headerNameIs(h.Name, "cookie") {
				v.cookies = appendCookiePairs(v.cookies, h.Value)
			}
		}
	}
	for _, p := range v.cookies {
		if p.name == name && p.value != "" {
			return p.value, true
		}
	}
	return "", false
}

// SetCookie returns the value the response's set-cookie headers set for the named cookie.
// When several set it, the last non-empty one wins: that is the one a browser keeps.
func (v *View) SetCookie(name string) (string, bool) {
	if !v.setCookiesDone {
		v.setCookiesDone = true
		for _, h := range v.ex().ResponseHeaders {
			if len(v.setCookies) < maxPairs && headerNameIs(h.Name, "set-cookie") {
				if p, ok := parseSetCookie(h.Value); ok {
					v.setCookies = append(v.setCookies, p)
				}
			}
		}
	}
	for i := len(v.setCookies) - 1; i >= 0; i-- {
		if p := v.setCookies[i]; p.name == name && p.value != "" {
			return p.value, true
		}
	}
	return "", false
}

// Query returns the first non-empty, URL-decoded value of the named query parameter. A value
// with a malformed %-escape is returned as sent.
func (v *View) Query(name string) (string, bool) {
	if !v.queryDone {
		v.queryDone = true
		p := v.ex().Path
		if i := strings.IndexByte(p, '?'); i >= 0 {
			q := p[i+1:]
			if j := strings.IndexByte(q, '#'); j >= 0 {
				q = q[:j]
			}
			v.query = appendQueryPairs(v.query, q)
		}
	}
	for _, p := range v.query {
		if !unescapedEquals(p.name, name, true) {
			continue
		}
		val, ok := unescape(p.value, true)
		if !ok {
			val = p.value
		}
		if val != "" {
			return val, true
		}
	}
	return "", false
}

// pathCapture returns the URL-unescaped segment pat captures in the path (query excluded).
func (v *View) pathCapture(pat *pathpattern.Pattern) (string, bool) {
	p := v.ex().Path
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	seg, ok := pat.Capture(p)
	if !ok || seg == "" {
		return "", false
	}
	if val, ok := unescape(seg, false); ok {
		seg = val
	}
	return seg, seg != ""
}

// body returns one side's body when it may be parsed: complete and within the cap.
func (v *View) body(side Side) []byte {
	x := v.ex()
	b, truncated := x.RequestBody, x.RequestBodyTruncated
	if side == Response {
		b, truncated = x.ResponseBody, x.ResponseBodyTruncated
	}
	if truncated || len(b) == 0 || (v.maxBody > 0 && len(b) > v.maxBody) {
		return nil
	}
	return b
}

func (v *View) kind(side Side) bodyKind {
	st := &v.bodies[side&1]
	if st.kind == bodyUnknown {
		st.kind = classify(v.body(side), v.contentType(side))
	}
	return st.kind
}

// contentType is the value of one side's content-type header, "" when there is none.
func (v *View) contentType(side Side) string {
	x := v.ex()
	hs := x.RequestHeaders
	if side == Response {
		hs = x.ResponseHeaders
	}
	for i := range hs {
		if headerNameIs(hs[i].Name, "content-type") {
			return hs[i].Value
		}
	}
	return ""
}

// ReadableContentType reports whether a body of content type ct (the header's value, "" when
// there is none) can hold a parameter value: JSON (application/json, any +json type),
// urlencoded and multipart forms, and a body without a content type, which is read as JSON
// when it looks like JSON. It is the rule a View reads bodies by, for the ext_proc server to
// ask Envoy only for bodies worth reading.
func ReadableContentType(ct string) bool {
	kind, sniff := mediaKind(ct)
	return sniff || kind != bodyNone
}

// classify decides how a body is read from its content type. A body without a content type
// is JSON when it looks like an object or an array.
func classify(body []byte, ct string) bodyKind {
	if len(body) == 0 {
		return bodyNone
	}
	kind, sniff := mediaKind(ct)
	if sniff {
		t := bytes.TrimLeft(body, " \t\r\n")
		if len(t) > 0 && (t[0] == '{' || t[0] == '[') {
			return bodyJSON
		}
	}
	return kind
}

// mediaKind is how a body of content type ct is read; sniff is true when ct names no type and
// the body itself decides. Parameters such as charset are ignored; comparison is
// case-insensitive.
func mediaKind(ct string) (kind bodyKind, sniff bool) {
	mt := ct
	if i := strings.IndexByte(mt, ';'); i >= 0 {
		mt = mt[:i]
	}
	mt = strings.TrimSpace(mt)
	switch {
	case mt == "":
		return bodyNone, true
	case strings.EqualFold(mt, "application/json"),
		len(mt) > len("+json") && strings.EqualFold(mt[len(mt)-len("+json"):], "+json"):
		return bodyJSON, false
	case strings.EqualFold(mt, "application/x-www-form-urlencoded"):
		return bodyForm, false
	case strings.EqualFold(mt, "multipart/form-data"):
		return bodyMultipart, false
	}
	return bodyNone, false
}

// JSONBody returns one side's body parsed as JSON, parsing it on first use. It is false when
// the body is absent, truncated, over the cap, not JSON by its content type, or invalid.
// The document is shared by every extractor of the View: treat it as read-only.
func (v *View) JSONBody(side Side) (any, bool) {
	if v.kind(side) != bodyJSON {
		return nil, false
	}
	st := &v.bodies[side&1]
	if !st.jsonDone {
		st.jsonDone = true
		st.doc, st.jsonOK = v.parse(v.body(side))
		if !st.jsonOK {
			v.parseError(ParseJSONBody)
		}
	}
	return st.doc, st.jsonOK
}

// scanJSON reads a simple path from one side's JSON body through its tape, scanning the body
// on first use. sure is false when the answer must come from the parsed body instead: the
// body was already parsed, the scanner does not read it, or the value needs the parser.
func (v *View) scanJSON(side Side, steps []step) (val string, ok, sure bool) {
	if v.kind(side) != bodyJSON {
		return "", false, true
	}
	i := side & 1
	if v.bodies[i].jsonDone {
		return "", false, false
	}
	if !v.tapeDone[i] {
		v.tapeDone[i] = true
		v.tapes[i], v.tapeOK[i] = buildTape(v.tapes[i], v.body(side))
	}
	if !v.tapeOK[i] {
		return "", false, false
	}
	idx, sure := lookup(v.tapes[i], v.body(side), steps)
	if !sure {
		return "", false, false
	}
	if idx < 0 {
		return "", false, true
	}
	return tokScalar(v.tapes[i], v.body(side), idx)
}

// FormField returns the first non-empty value of a field of one side's urlencoded or
// multipart/form-data body (file parts skipped). The value is a copy.
func (v *View) FormField(side Side, name string) (string, bool) {
	switch v.kind(side) {
	case bodyForm:
		return v.urlencodedField(side, name)
	case bodyMultipart:
		return v.multipartField(side, name)
	}
	return "", false
}

// urlencodedField scans the body on each lookup rather than splitting it once: a View reads
// few form fields, and scanning needs no storage however many pairs a hostile body holds.
func (v *View) urlencodedField(side Side, name string) (string, bool) {
	b := v.body(side)
	for len(b) > 0 {
		var part []byte
		if i := bytes.IndexByte(b, '&'); i >= 0 {
			part, b = b[:i], b[i+1:]
		} else {
			part, b = b, nil
		}
		key, raw, _ := bytes.Cut(part, []byte{'='})
		if !unescapedEquals(key, name, true) {
			continue
		}
		val, ok := unescape(raw, true)
		if !ok {
			val = string(raw)
		}
		if val != "" {
			return val, true
		}
	}
	return "", false
}

func (v *View) multipartField(side Side, name string) (string, bool) {
	st := &v.bodies[side&1]
	if !st.formDone {
		st.formDone = true
		var ok bool
		st.fields, ok = appendMultipartFields(st.fields, v.body(side), v.contentType(side))
		if !ok {
			v.parseError(ParseFormBody)
		}
	}
	for _, p := range st.fields {
		if p.name == name && p.value != "" {
			return p.value, true
		}
	}
	return "", false
}

// appendMultipartFields reads the non-file fields of a multipart/form-data body. The body is
// already bounded by the cap, so reading a whole field is bounded too; a malformed part ends
// the reading and keeps the fields before it. ok is false when the body was malformed.
func appendMultipartFields(dst []pair, body []byte, ct string) (_ []pair, ok bool) {
	_, params, err := mime.ParseMediaType(ct)
	if err != nil || params["boundary"] == "" {
		return dst, false
	}
	r := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	var buf bytes.Buffer
	for range maxMultipartParts {
		part, err := r.NextPart()
		if err != nil {
			return dst, errors.Is(err, io.EOF)
		}
		name := part.FormName()
		if name == "" || part.FileName() != "" {
			_ = part.Close()
			continue
		}
		buf.Reset()
		_, err = io.Copy(&buf, io.LimitReader(part, int64(len(body))))
		_ = part.Close()
		if err != nil {
			return dst, false
		}
		dst = append(dst, pair{name: name, value: buf.String()})
	}
	return dst, true
}

// parse parses JSON with the View's parser. ojg's parser keeps its own stack rather than
// recursing, so deep nesting costs heap, not goroutine stack; the recover guards the rest.
func (v *View) parse(b []byte) (doc any, ok bool) {
	if len(b) == 0 {
		return nil, false
	}
	if v.parser == nil {
		v.parser = new(oj.Parser)
	}
	v.parsedBytes += len(b)
	defer func() {
		if r := recover(); r != nil {
			v.parser = nil // its state is unknown now
			doc, ok = nil, false
		}
	}()
	doc, err := v.parser.Parse(b)
	if err != nil {
		return nil, false
	}
	return doc, true
}

func (v *View) requestCookies() []pair {
	if !v.cookiesDone {
		v.Cookie("")
	}
	return v.cookies
}

// CookieWithSuffix returns the name and value of the first request cookie with a non-empty
// value whose name ends with suffix (and is longer than it).
func (v *View) CookieWithSuffix(suffix string) (name, value string, ok bool) {
	for _, p := range v.requestCookies() {
		if len(p.name) > len(suffix) && strings.HasSuffix(p.name, suffix) && p.value != "" {
			return p.name, p.value, true
		}
	}
	return "", "", false
}

// EachCookie calls fn with every request cookie that has a value, in the order sent, until fn
// returns false. The strings share memory with the Exchange.
func (v *View) EachCookie(fn func(name, value string) bool) {
	for _, p := range v.requestCookies() {
		if p.value != "" && !fn(p.name, p.value) {
			return
		}
	}
}

// EachSetCookie calls fn with every cookie the response's set-cookie headers set to a value,
// in the order sent, until fn returns false (at most maxPairs of them). A cookie the header
// removes (Max-Age of 0 or less, an Expires before 2000, or the value "deleted") is left out.
func (v *View) EachSetCookie(fn func(name, value string) bool) {
	n := 0
	for _, h := range v.ex().ResponseHeaders {
		if !headerNameIs(h.Name, "set-cookie") {
			continue
		}
		if n++; n > maxPairs {
			return
		}
		p, ok := parseSetCookie(h.Value)
		if !ok || p.value == "" || p.value == "deleted" || removesCookie(h.Value) {
			continue
		}
		if !fn(p.name, p.value) {
			return
		}
	}
}

// removesCookie reports whether a set-cookie header's attributes expire the cookie at once.
func removesCookie(h string) bool {
	_, attrs, _ := strings.Cut(h, ";")
	for attrs != "" {
		var a string
		a, attrs, _ = strings.Cut(attrs, ";")
		name, val, _ := strings.Cut(a, "=")
		name, val = trimOWS(name), trimOWS(val)
		switch {
		case strings.EqualFold(name, "max-age"):
			if n, err := strconv.Atoi(val); err == nil && n <= 0 {
				return true
			}
		case strings.EqualFold(name, "expires"):
			if y, ok := yearOf(val); ok && y < 2000 {
				return true
			}
		}
	}
	return false
}

// EachHeader calls fn with every non-empty header of one side, in the order sent, until fn
// returns false.
func (v *View) EachHeader(side Side, fn func(name, value string) bool) {
	x := v.ex()
	hs := x.RequestHeaders
	if side == Response {
		hs = x.ResponseHeaders
	}
	for _, h := range hs {
		if h.Value != "" && !fn(h.Name, h.Value) {
			return
		}
	}
}

// yearOf finds the year of an HTTP date (the first run of exactly four digits), whatever its
// format (RFC 1123, RFC 850 with a four-digit year, asctime).
func yearOf(date string) (int, bool) {
	run := 0
	for i := 0; i <= len(date); i++ {
		if i < len(date) && date[i] >= '0' && date[i] <= '9' {
			run++
			continue
		}
		if run == 4 {
			y, err := strconv.Atoi(date[i-4 : i])
			return y, err == nil
		}
		run = 0
	}
	return 0, false
}

// JSONContentType reports whether a content type is JSON (application/json or any +json).
func JSONContentType(ct string) bool {
	k, _ := mediaKind(ct)
	return k == bodyJSON
}
