package replay

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// Format is the kind of file replayed.
type Format string

// Formats Read understands.
const (
	FormatHAR   Format = "har"
	FormatJSONL Format = "jsonl"
)

// ReadOptions say how recorded traffic becomes exchanges.
type ReadOptions struct {
	// ClientIP is the client address of HAR entries that carry none (HAR has no field for the
	// client; the custom fields _clientIP or _client_ip are read when present).
	ClientIP string
	// MaxBodyBytes caps the bodies kept per direction (traffic.max_body_bytes); 0 keeps 64 KiB.
	MaxBodyBytes int
	// JA3Header and JA4Header are the request headers that carry fingerprints (tls.*_header),
	// filled from JSON-lines records.
	JA3Header, JA4Header string
	// AttackHeader is attacks.response_header: a malicious JSON-lines record gets it back with
	// its attack types, so the verdict survives the replay.
	AttackHeader string
}

const (
	// maxFileBytes bounds the file read: recorded traffic is trusted no more than live traffic.
	maxFileBytes = 1 << 30
	// maxLineBytes bounds one JSON-lines record.
	maxLineBytes  = 16 << 20
	defaultBody   = 64 << 10
	defaultClient = "192.0.2.1"
)

// ReadFile reads a HAR file or a JSON-lines file of request records (chosen by extension, else
// by content) into exchanges, in the file's order.
func ReadFile(path string, o ReadOptions) ([]traffic.Exchange, Format, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	br := bufio.NewReaderSize(io.LimitReader(f, maxFileBytes), 64<<10)
	format := FormatJSONL
	switch strings.ToLower(filepath.Ext(path)) {
	case ".har":
		format = FormatHAR
	case ".jsonl", ".ndjson":
	default:
		// A HAR file is one object whose first key is "log"; JSON lines start with a record.
		head, _ := br.Peek(512)
		if bytes.Contains(head, []byte(`"log"`)) && !bytes.Contains(head, []byte(`"kind"`)) {
			format = FormatHAR
		}
	}
	var xs []traffic.Exchange
	if format == FormatHAR {
		xs, err = ReadHAR(br, o)
	} else {
		xs, err = ReadJSONL(br, o)
	}
	if err != nil {
		return nil, format, fmt.Errorf("%s: %w", path, err)
	}
	return xs, format, nil
}

// har is the part of HAR 1.2 that replay reads.
type har struct {
	Log struct {
		Entries []harEntry `json:"entries"`
	} `json:"log"`
}

type harEntry struct {
	StartedDateTime string      `json:"startedDateTime"`
	Time            float64     `json:"time"`
	Request         harRequest  `json:"request"`
	Response        harResponse `json:"response"`
	ServerIPAddress string      `json:"serverIPAddress"`
	ClientIP        string      `json:"_clientIP"`
	ClientIP2       string      `json:"_client_ip"`
	RequestID       string      `json:"_requestId"`
}

type harNV struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type harRequest struct {
	Method   string  `json:"method"`
	URL      string  `json:"url"`
	Headers  []harNV `json:"headers"`
	Cookies  []harNV `json:"cookies"`
	PostData *struct {
		MimeType string  `json:"mimeType"`
		Text     string  `json:"text"`
		Params   []harNV `json:"params"`
	} `json:"postData"`
}

type harResponse struct {
	Status  int     `json:"status"`
	Headers []harNV `json:"headers"`
	Cookies []harNV `json:"cookies"`
	Content struct {
		Text     string `json:"text"`
		Encoding string `json:"encoding"`
	} `json:"content"`
}

// ReadHAR reads a HAR 1.2 log as browsers and proxies save it. Entries whose URL does not
// parse or whose method is missing are skipped and counted in the error only when none is left.
func ReadHAR(r io.Reader, o ReadOptions) ([]traffic.Exchange, error) {
	var h har
	if err := json.NewDecoder(r).Decode(&h); err != nil {
		return nil, fmt.Errorf("not a HAR file: %w", err)
	}
	xs := make([]traffic.Exchange, 0, len(h.Log.Entries))
	skipped := 0
	for i := range h.Log.Entries {
		x, ok := harExchange(&h.Log.Entries[i], i, o)
		if !ok {
			skipped++
			continue
		}
		xs = append(xs, x)
	}
	if len(xs) == 0 && skipped > 0 {
		return nil, fmt.Errorf("none of the %d HAR entries has a method and an absolute URL", skipped)
	}
	return xs, nil
}

func harExchange(e *harEntry, i int, o ReadOptions) (traffic.Exchange, bool) {
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
	x.Start, _ = time.Parse(time.RFC3339Nano, e.StartedDateTime)
	x.End = x.Start.Add(time.Duration(max(e.Time, 0) * float64(time.Millisecond)))
	ip := firstNonEmpty(e.ClientIP, e.ClientIP2, o.ClientIP, defaultClient)
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
	if pd := e.Request.PostData; pd != nil {
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
	if e.Response.Status > 0 {
		x.ResponseSeen = true
		x.Status = e.Response.Status
		x.ResponseHeaders = append([]traffic.Header{{Name: ":status", Value: strconv.Itoa(x.Status)}}, nil...)
		x.ResponseHeaders = appendHeaders(x.ResponseHeaders, e.Response.Headers)
		if _, ok := x.ResponseHeader("set-cookie"); !ok {
			for _, c := range e.Response.Cookies {
				x.ResponseHeaders = append(x.ResponseHeaders, traffic.Header{Name: "set-cookie", Value: c.Name + "=" + c.Value})
			}
		}
		body := e.Response.Content.Text
		if strings.EqualFold(e.Response.Content.Encoding, "base64") {
			if b, err := base64.StdEncoding.DecodeString(body); err == nil {
				body = string(b)
			}
		}
		x.ResponseBytes = int64(len(body))
		x.ResponseBody, x.ResponseBodyTruncated = capBody(body, o.MaxBodyBytes)
	} else {
		x.Partial = true
	}
	return x, true
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

func pseudo(method, scheme, host, path string) []traffic.Header {
	return []traffic.Header{
		{Name: ":method", Value: method}, {Name: ":scheme", Value: scheme},
		{Name: ":authority", Value: host}, {Name: ":path", Value: path},
	}
}

func capBody(s string, most int) ([]byte, bool) {
	if most <= 0 {
		most = defaultBody
	}
	if len(s) > most {
		return []byte(s[:most]), true
	}
	return []byte(s), false
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// ReadJSONL reads request records, one JSON object a line (what the jsonl sink writes); lines
// of other kinds are skipped. A record holds what was extracted, not the traffic it came from:
// method, host, path, status, times, client IP, user agent, TLS fingerprints and the attack
// verdict come back; headers, cookies and bodies do not, so parameters cannot be extracted
// again and grouping falls back on what is left (the fallback key, ip + user agent).
func ReadJSONL(r io.Reader, o ReadOptions) ([]traffic.Exchange, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLineBytes)
	var xs []traffic.Exchange
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var rec record.Request
		if err := json.Unmarshal(b, &rec); err != nil {
			return nil, fmt.Errorf("line %d: not a JSON record: %w", line, err)
		}
		if rec.Kind != "" && rec.Kind != record.KindRequest {
			continue
		}
		xs = append(xs, recordExchange(&rec, line, o))
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("line %d is longer than %d bytes", line+1, maxLineBytes)
		}
		return nil, err
	}
	return xs, nil
}

func recordExchange(r *record.Request, line int, o ReadOptions) traffic.Exchange {
	x := traffic.Exchange{
		RequestID:     r.RequestID,
		Start:         r.Time.Time,
		Method:        firstNonEmpty(r.Method, "GET"),
		Scheme:        firstNonEmpty(r.Scheme, "https"),
		Host:          r.Host,
		Path:          firstNonEmpty(r.Path, "/"),
		RequestBytes:  r.RequestBytes,
		ResponseBytes: r.ResponseBytes,
		Partial:       r.Partial,
	}
	if x.RequestID == "" {
		x.RequestID = "jsonl-" + strconv.Itoa(line)
	}
	x.End = x.Start.Add(time.Duration(max(r.DurationMS, 0) * float64(time.Millisecond)))
	if a, err := netip.ParseAddr(r.ClientIP); err == nil {
		x.SourceAddress = net.JoinHostPort(a.String(), "0")
	}
	x.RequestHeaders = pseudo(x.Method, x.Scheme, x.Host, x.Path)
	add := func(name, value string) {
		if name != "" && value != "" {
			x.RequestHeaders = append(x.RequestHeaders, traffic.Header{Name: name, Value: value})
		}
	}
	add("user-agent", r.UserAgent)
	add(o.JA3Header, r.JA3)
	add(o.JA4Header, r.JA4)
	if r.Status > 0 {
		x.ResponseSeen = true
		x.Status = r.Status
		x.ResponseHeaders = []traffic.Header{{Name: ":status", Value: strconv.Itoa(r.Status)}}
		if r.Malicious && o.AttackHeader != "" {
			types := "malicious"
			if r.Attack != nil && len(r.Attack.Types) > 0 {
				types = strings.Join(r.Attack.Types, ",")
			}
			x.ResponseHeaders = append(x.ResponseHeaders, traffic.Header{Name: o.AttackHeader, Value: types})
		}
	}
	return x
}
