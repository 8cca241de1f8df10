package recorded

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// ReadJSONL reads request records, one JSON object a line (what the jsonl sink writes); lines
// of other kinds are skipped. A record holds what was extracted, not the traffic it came from:
// method, host, path, status, times, client IP, user agent, TLS fingerprints and the attack
// verdict come back; headers, cookies and bodies do not, so parameters cannot be extracted
// again and grouping falls back on what is left (the fallback key, ip + user agent).
func ReadJSONL(r io.Reader, o Options) ([]traffic.Exchange, error) {
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
		// The kind first: a session record's fields (flows, counts) are not a request's.
		var kind struct {
			Kind string `json:"kind"`
		}
		if err := json.Unmarshal(b, &kind); err != nil {
			return nil, fmt.Errorf("line %d: not a JSON record: %w", line, err)
		}
		if kind.Kind != "" && kind.Kind != record.KindRequest {
			continue
		}
		var rec record.Request
		if err := json.Unmarshal(b, &rec); err != nil {
			return nil, fmt.Errorf("line %d: not a request record: %w", line, err)
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

// recordExchange rebuilds what a request record kept of its exchange.
func recordExchange(r *record.Request, line int, o Options) traffic.Exchange {
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
