package recorded

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/apisessions/apisessions/sessions/traffic"
)

// Format is the kind of file read.
type Format string

// Formats ReadFile understands.
const (
	FormatHAR   Format = "har"
	FormatJSONL Format = "jsonl"
)

// DefaultClientIP is the client address of HAR entries that carry none, when Options.ClientIP
// is empty too: an address of the documentation range (RFC 5737), so it is never mistaken for a
// real client.
const DefaultClientIP = "192.0.2.1"

// Options say how recorded traffic becomes exchanges.
type Options struct {
	// ClientIP is the client address of HAR entries that carry none (HAR has no field for the
	// client; the custom fields _clientIP or _client_ip are read when present); "" means
	// DefaultClientIP.
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
	maxLineBytes = 16 << 20
	defaultBody  = 64 << 10
)

// ReadFile reads a HAR file or a JSON-lines file of request records (chosen by extension, else
// by content) into exchanges, in the file's order.
func ReadFile(path string, o Options) ([]traffic.Exchange, Format, error) {
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

// ShiftToNow moves every exchange's times by one offset so that the latest request starts at
// now; the order of requests and the gaps between them are kept. Replayed traffic shifted so
// is recent: the engine neither ends its parts nor purges its records at once.
func ShiftToNow(xs []traffic.Exchange, now time.Time) {
	var last time.Time
	for i := range xs {
		if xs[i].Start.After(last) {
			last = xs[i].Start
		}
	}
	if last.IsZero() {
		return
	}
	d := now.Sub(last)
	for i := range xs {
		if !xs[i].Start.IsZero() {
			xs[i].Start = xs[i].Start.Add(d)
		}
		if !xs[i].End.IsZero() {
			xs[i].End = xs[i].End.Add(d)
		}
	}
}

// pseudo returns the request pseudo-headers Envoy sends first.
func pseudo(method, scheme, host, path string) []traffic.Header {
	return []traffic.Header{
		{Name: ":method", Value: method}, {Name: ":scheme", Value: scheme},
		{Name: ":authority", Value: host}, {Name: ":path", Value: path},
	}
}

// capBody keeps at most most bytes of s (0: 64 KiB) and says whether it cut.
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
