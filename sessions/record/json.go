package record

import (
	"encoding/json"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/apisessions/apisessions/internal/jsonstr"
)

// This file holds an encoder that writes Request and Session records without reflection.
// json.Marshal stays the reference: for every record, AppendJSON produces exactly the bytes
// json.Marshal produces for it (the tests and the fuzz target compare the two), so a record
// reads the same whichever path wrote it. The types deliberately have no MarshalJSON method;
// json.Marshal must keep encoding them by reflection for that comparison to mean anything.

// AppendJSON appends the JSON object of r to dst and returns the extended slice; the bytes are
// exactly those of json.Marshal(r), and a nil r appends null as json.Marshal does. Kind is
// written as r holds it.
//
// The only value JSON cannot hold is a DurationMS that is NaN or infinite. Then AppendJSON
// returns dst unchanged (nothing appended, so no half-written object can reach a reader) and
// a *json.UnsupportedValueError that reads as json.Marshal's.
func (r *Request) AppendJSON(dst []byte) ([]byte, error) {
	if r == nil {
		return append(dst, "null"...), nil
	}
	if math.IsNaN(r.DurationMS) || math.IsInf(r.DurationMS, 0) {
		return dst, unsupportedFloat(r.DurationMS)
	}
	b := append(dst, `{"kind":`...)
	b = appendString(b, r.Kind)
	b = append(b, `,"session":`...)
	b = appendString(b, r.Session)
	b = append(b, `,"part":`...)
	b = appendString(b, r.Part)
	if r.RequestID != "" {
		b = append(b, `,"request_id":`...)
		b = appendString(b, r.RequestID)
	}
	b = append(b, `,"time":`...)
	b = appendTime(b, r.Time)
	b = appendOptString(b, `,"method":`, r.Method)
	b = appendOptString(b, `,"scheme":`, r.Scheme)
	b = appendOptString(b, `,"host":`, r.Host)
	b = appendOptString(b, `,"path":`, r.Path)
	b = appendOptString(b, `,"query":`, r.Query)
	b = appendOptString(b, `,"route":`, r.Route)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(r.Status), 10)
	b = append(b, `,"duration_ms":`...)
	b = appendFloat(b, r.DurationMS)
	b = append(b, `,"request_bytes":`...)
	b = strconv.AppendInt(b, r.RequestBytes, 10)
	b = append(b, `,"response_bytes":`...)
	b = strconv.AppendInt(b, r.ResponseBytes, 10)
	b = appendOptString(b, `,"client_ip":`, r.ClientIP)
	b = appendOptString(b, `,"user_agent":`, r.UserAgent)
	b = appendOptString(b, `,"ja3":`, r.JA3)
	b = appendOptString(b, `,"ja4":`, r.JA4)
	b = append(b, `,"key":`...)
	b = appendKey(b, r.Key)
	b = appendOptString(b, `,"user":`, r.User)
	b = appendOptString(b, `,"role":`, r.Role)
	b = appendOptString(b, `,"claimed_user":`, r.ClaimedUser)
	b = appendOptString(b, `,"claimed_role":`, r.ClaimedRole)
	b = appendOptStrings(b, `,"flows":`, r.Flows)
	b = appendOptMap(b, `,"params":`, r.Params, appendString)
	b = appendOptTrue(b, `,"malicious":true`, r.Malicious)
	if a := r.Attack; a != nil {
		b = append(b, `,"attack":{"source":`...)
		b = appendString(b, a.Source)
		b = appendOptStrings(b, `,"types":`, a.Types)
		b = appendOptStrings(b, `,"rule_ids":`, a.RuleIDs)
		b = appendOptMap(b, `,"headers":`, a.Headers, appendString)
		b = appendOptString(b, `,"body":`, a.Body)
		b = appendOptTrue(b, `,"body_truncated":true`, a.BodyTruncated)
		b = append(b, '}')
	}
	b = appendOptTrue(b, `,"partial":true`, r.Partial)
	if v := r.Protection; v != nil {
		b = append(b, `,"protection":{"action":`...)
		b = appendString(b, v.Action)
		b = append(b, `,"rule":`...)
		b = appendString(b, v.Rule)
		b = appendOptTrue(b, `,"dry_run":true`, v.DryRun)
		b = append(b, '}')
	}
	if c := r.ContinuedFrom; c != nil {
		b = append(b, `,"continued_from":{"session":`...)
		b = appendString(b, c.Session)
		b = append(b, `,"kind":`...)
		b = appendString(b, c.Kind)
		b = append(b, '}')
	}
	if r.Linked != 0 {
		b = append(b, `,"linked":`...)
		b = strconv.AppendInt(b, int64(r.Linked), 10)
	}
	return append(b, '}'), nil
}

// AppendJSON appends the JSON object of s to dst and returns the extended slice; the bytes are
// exactly those of json.Marshal(s), and a nil s appends null as json.Marshal does. Kind is
// written as s holds it.
//
// Unlike Request.AppendJSON it returns no error: a Session holds no floating-point number, so
// every Session has a JSON form. Should a field that can fail ever be added, the signature
// must change with it, so that no caller can miss the new error.
func (s *Session) AppendJSON(dst []byte) []byte {
	if s == nil {
		return append(dst, "null"...)
	}
	b := append(dst, `{"kind":`...)
	b = appendString(b, s.Kind)
	b = append(b, `,"session":`...)
	b = appendString(b, s.Session)
	b = append(b, `,"part":`...)
	b = appendString(b, s.Part)
	b = append(b, `,"first_seen":`...)
	b = appendTime(b, s.FirstSeen)
	b = append(b, `,"last_seen":`...)
	b = appendTime(b, s.LastSeen)
	b = append(b, `,"requests":`...)
	b = strconv.AppendInt(b, int64(s.Requests), 10)
	b = append(b, `,"key":`...)
	b = appendKey(b, s.Key)
	b = appendOptString(b, `,"user":`, s.User)
	b = appendOptString(b, `,"role":`, s.Role)
	b = appendOptStrings(b, `,"ips":`, s.IPs)
	b = appendOptStrings(b, `,"user_agents":`, s.UserAgents)
	b = appendOptMap(b, `,"methods":`, s.Methods, appendInt)
	b = appendOptMap(b, `,"statuses":`, s.Statuses, appendInt)
	b = appendOptMap(b, `,"flows":`, s.Flows, appendInt)
	b = append(b, `,"malicious":`...)
	b = strconv.AppendInt(b, int64(s.Malicious), 10)
	b = append(b, `,"bytes_in":`...)
	b = strconv.AppendInt(b, s.BytesIn, 10)
	b = append(b, `,"bytes_out":`...)
	b = strconv.AppendInt(b, s.BytesOut, 10)
	if s.Linked != 0 {
		b = append(b, `,"linked":`...)
		b = strconv.AppendInt(b, int64(s.Linked), 10)
	}
	b = append(b, `,"risk":`...)
	b = strconv.AppendInt(b, int64(s.Risk), 10)
	if len(s.RiskReasons) > 0 {
		b = append(b, `,"risk_reasons":[`...)
		for i, r := range s.RiskReasons {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"signal":`...)
			b = appendString(b, r.Signal)
			b = append(b, `,"points":`...)
			if math.IsNaN(r.Points) || math.IsInf(r.Points, 0) {
				b = append(b, '0')
			} else {
				b = appendFloat(b, r.Points)
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if s.Final {
		b = append(b, `,"final":true`...)
	} else {
		b = append(b, `,"final":false`...)
	}
	b = appendOptString(b, `,"end_reason":`, s.EndReason)
	return append(b, '}')
}

// unsupportedFloat is the error json.Marshal reports for a float64 that JSON cannot hold.
func unsupportedFloat(f float64) error {
	return &json.UnsupportedValueError{Value: reflect.ValueOf(f), Str: strconv.FormatFloat(f, 'g', -1, 64)}
}

// appendFloat writes a finite f as encoding/json writes a float64: like ECMAScript's number to
// string conversion, the shortest form that reads back as f, in plain notation unless the
// magnitude is below 1e-6 or at least 1e21, where the exponent form is used without a leading
// zero in a negative exponent (1e-7, not 1e-07). Negative zero is written -0.
func appendFloat(dst []byte, f float64) []byte {
	abs := math.Abs(f)
	if abs == 0 || (abs >= 1e-6 && abs < 1e21) {
		return strconv.AppendFloat(dst, f, 'f', -1, 64)
	}
	b := strconv.AppendFloat(dst, f, 'e', -1, 64)
	// strconv writes at least two exponent digits; the exponent of a magnitude below 1e-6
	// that needs only one digit (e-07 … e-09) loses its zero. Positive exponents here are
	// 21 or more and already have no padding.
	if n := len(b); b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
		b[n-2] = b[n-1]
		b = b[:n-1]
	}
	return b
}

// appendTime writes t as Time.MarshalJSON does.
func appendTime(dst []byte, t Time) []byte {
	dst = append(dst, '"')
	dst = t.UTC().AppendFormat(dst, TimeLayout)
	return append(dst, '"')
}

func appendKey(dst []byte, k Key) []byte {
	dst = append(dst, `{"source":`...)
	dst = appendString(dst, k.Source)
	dst = append(dst, `,"name":`...)
	dst = appendString(dst, k.Name)
	return append(dst, '}')
}

// appendOptString writes an omitempty string field: its name (with the leading comma) and
// value, or nothing when the value is empty.
func appendOptString(dst []byte, name, v string) []byte {
	if v == "" {
		return dst
	}
	return appendString(append(dst, name...), v)
}

// appendOptTrue writes an omitempty true field, given whole ("name":true with the leading
// comma), or nothing when v is false.
func appendOptTrue(dst []byte, field string, v bool) []byte {
	if !v {
		return dst
	}
	return append(dst, field...)
}

// appendOptStrings writes an omitempty list field, or nothing when the list is empty.
func appendOptStrings(dst []byte, name string, list []string) []byte {
	if len(list) == 0 {
		return dst
	}
	dst = append(append(dst, name...), '[')
	for i, v := range list {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, v)
	}
	return append(dst, ']')
}

// mapEntry is one key and value of a map, gathered to be written in key order.
type mapEntry[V any] struct {
	k string
	v V
}

// sortedEntries appends the entries of m to buf in the order encoding/json writes map keys:
// by the bytes of the key, as strings.Compare orders them.
func sortedEntries[V any](buf []mapEntry[V], m map[string]V) []mapEntry[V] {
	for k, v := range m {
		buf = append(buf, mapEntry[V]{k, v})
	}
	if len(buf) <= 12 {
		// Record maps are small (a few parameters, methods or statuses); insertion sort
		// beats the general sort there.
		for i := 1; i < len(buf); i++ {
			for j := i; j > 0 && buf[j].k < buf[j-1].k; j-- {
				buf[j], buf[j-1] = buf[j-1], buf[j]
			}
		}
		return buf
	}
	slices.SortFunc(buf, func(a, b mapEntry[V]) int { return strings.Compare(a.k, b.k) })
	return buf
}

// appendOptMap writes an omitempty map field, its keys in encoding/json's order and each
// value by value, or nothing when the map is empty.
func appendOptMap[V any](dst []byte, name string, m map[string]V, value func([]byte, V) []byte) []byte {
	if len(m) == 0 {
		return dst
	}
	var arr [16]mapEntry[V]
	dst = append(append(dst, name...), '{')
	for i, e := range sortedEntries(arr[:0], m) {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, e.k)
		dst = append(dst, ':')
		dst = value(dst, e.v)
	}
	return append(dst, '}')
}

func appendInt(dst []byte, v int) []byte { return strconv.AppendInt(dst, int64(v), 10) }

// appendString writes s as a quoted JSON string, escaped exactly as encoding/json escapes by
// default.
func appendString(dst []byte, s string) []byte { return jsonstr.Append(dst, s, jsonstr.HTMLSafe) }
