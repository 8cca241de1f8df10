package recorded

import (
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

	"github.com/apisessions/apisessions/sessions/traffic"
)

// har is the part of HAR 1.2 that ReadHAR reads.
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
func ReadHAR(r io.Reader, o Options) ([]traffic.Exchange, error) {
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
	x.Start, _ = time.Parse(time.RFC3339Nano, e.StartedDateTime)
	x.End = x.Start.Add(time.Duration(max(e.Time, 0) * float64(time.Millisecond)))
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
	if e.Response.Status > 0 {
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
	x.Status = r.Status
	x.ResponseHeaders = []traffic.Header{{Name: ":status", Value: strconv.Itoa(x.Status)}}
	x.ResponseHeaders = appendHeaders(x.ResponseHeaders, r.Headers)
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
