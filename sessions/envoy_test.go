package sessions

import (
	"strconv"
	"time"

	"github.com/apisessions/apisessions/sessions/traffic"
)

// envoyExchange builds an Exchange the way the ext_proc server fills it from Envoy's messages:
// pseudo-headers first, lower-case names, x-request-id, the source address attribute.
// headers are name, value pairs.
func envoyExchange(method, authority, path string, headers ...string) *traffic.Exchange {
	start := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	x := &traffic.Exchange{
		RequestID:     "6f1c2d3e-0000-4000-8000-000000000001",
		Start:         start,
		End:           start.Add(20 * time.Millisecond),
		Method:        method,
		Scheme:        "https",
		Host:          authority,
		Path:          path,
		SourceAddress: "198.51.100.20:40112",
		RequestHeaders: []traffic.Header{
			{Name: ":method", Value: method},
			{Name: ":scheme", Value: "https"},
			{Name: ":authority", Value: authority},
			{Name: ":path", Value: path},
			{Name: "x-request-id", Value: "6f1c2d3e-0000-4000-8000-000000000001"},
		},
	}
	for i := 0; i+1 < len(headers); i += 2 {
		x.RequestHeaders = append(x.RequestHeaders, traffic.Header{Name: headers[i], Value: headers[i+1]})
	}
	return x
}

// buffered sets a request body as Envoy sends it in BUFFERED mode: whole, with content-length.
func buffered(x *traffic.Exchange, contentType, body string, maxBody int) *traffic.Exchange {
	x.RequestHeaders = append(x.RequestHeaders,
		traffic.Header{Name: "content-type", Value: contentType},
		traffic.Header{Name: "content-length", Value: strconv.Itoa(len(body))})
	x.RequestBytes = int64(len(body))
	x.RequestBody = []byte(body)
	if len(body) > maxBody {
		x.RequestBody, x.RequestBodyTruncated = x.RequestBody[:maxBody], true
	}
	return x
}

// envoyResponse adds response headers (with :status) and, when body is not empty, a JSON body
// of which at most maxBody bytes were kept.
func envoyResponse(x *traffic.Exchange, status int, body string, maxBody int, headers ...string) *traffic.Exchange {
	x.ResponseSeen = true
	x.Status = status
	x.ResponseHeaders = append(x.ResponseHeaders, traffic.Header{Name: ":status", Value: strconv.Itoa(status)})
	for i := 0; i+1 < len(headers); i += 2 {
		x.ResponseHeaders = append(x.ResponseHeaders, traffic.Header{Name: headers[i], Value: headers[i+1]})
	}
	if body != "" {
		x.ResponseHeaders = append(x.ResponseHeaders, traffic.Header{Name: "content-type", Value: "application/json"})
		x.ResponseBytes = int64(len(body))
		x.ResponseBody = []byte(body)
		if len(body) > maxBody {
			x.ResponseBody, x.ResponseBodyTruncated = x.ResponseBody[:maxBody], true
		}
	}
	return x
}
