package extract

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"

	"github.com/apisessions/apisessions/internal/jsonstr"
)

// maxRenderDepth bounds the nesting Scalar renders. JSON nested deeper than this is hostile
// rather than data anyone groups sessions by; refusing it keeps rendering's recursion shallow.
const maxRenderDepth = 512

// Scalar renders a decoded JSON value as Extract does: a non-empty string as is, numbers
// without exponent noise (932, not 9.32e+02), booleans as "true" or "false", non-empty objects
// and arrays as canonical JSON with sorted keys. Null, "", {} and [] do not work, nor do
// values nested deeper than 512 levels, NaN, infinities and types JSON does not produce.
func Scalar(val any) (string, bool) {
	switch t := val.(type) {
	case string:
		return t, t != ""
	case bool:
		if t {
			return "true", true
		}
		return "false", true
	case int64:
		return strconv.FormatInt(t, 10), true
	case float64:
		b, ok := appendFloat(nil, t)
		return string(b), ok
	case map[string]any:
		if len(t) == 0 {
			return "", false
		}
	case []any:
		if len(t) == 0 {
			return "", false
		}
	case nil:
		return "", false
	}
	budget := math.MaxInt
	return render(val, &budget)
}

// render writes a container as canonical JSON, charging its output and nodes to budget.
func render(val any, budget *int) (string, bool) {
	b, ok := appendJSON(make([]byte, 0, 64), val, 0, budget)
	if !ok || len(b) == 0 {
		return "", false
	}
	return string(b), true
}

// appendFloat writes f the way JavaScript and encoding/json do: plain digits between 1e-6 and
// 1e21, exponent form outside, shortest representation that round-trips.
func appendFloat(dst []byte, f float64) ([]byte, bool) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return dst, false
	}
	if f == 0 {
		return append(dst, '0'), true // also turns -0 into 0
	}
	abs := math.Abs(f)
	if abs < 1e-6 || abs >= 1e21 {
		n := len(dst)
		dst = strconv.AppendFloat(dst, f, 'e', -1, 64)
		// e-07 -> e-7, as JavaScript writes it.
		if m := len(dst) - n; m >= 4 && dst[len(dst)-4] == 'e' && dst[len(dst)-3] == '-' && dst[len(dst)-2] == '0' {
			dst[len(dst)-2] = dst[len(dst)-1]
			dst = dst[:len(dst)-1]
		}
		return dst, true
	}
	return strconv.AppendFloat(dst, f, 'f', -1, 64), true
}

// appendJSON writes val as canonical JSON: object keys sorted by bytes, no insignificant
// space, no HTML escaping, invalid UTF-8 replaced by U+FFFD. Each node costs one unit of
// budget and each string its length; it fails when the budget runs out.
func appendJSON(dst []byte, val any, depth int, budget *int) ([]byte, bool) {
	if depth > maxRenderDepth || *budget <= 0 {
		return dst, false
	}
	*budget--
	switch t := val.(type) {
	case nil:
		return append(dst, "null"...), true
	case bool:
		return strconv.AppendBool(dst, t), true
	case string:
		if *budget -= len(t); *budget < 0 {
			return dst, false
		}
		return appendString(dst, t), true
	case int64:
		return strconv.AppendInt(dst, t, 10), true
	case int:
		return strconv.AppendInt(dst, int64(t), 10), true
	case int32:
		return strconv.AppendInt(dst, int64(t), 10), true
	case uint64:
		return strconv.AppendUint(dst, t, 10), true
	case float64:
		return appendFloat(dst, t)
	case float32:
		return appendFloat(dst, float64(t))
	case json.Number:
		if t == "" || !json.Valid([]byte(t)) {
			return dst, false
		}
		return append(dst, t...), true
	case []any:
		dst = append(dst, '[')
		for i, el := range t {
			if i > 0 {
				dst = append(dst, ',')
			}
			var ok bool
			if dst, ok = appendJSON(dst, el, depth+1, budget); !ok {
				return dst, false
			}
		}
		return append(dst, ']'), true
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		dst = append(dst, '{')
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			if *budget -= len(k); *budget < 0 {
				return dst, false
			}
			dst = appendString(dst, k)
			dst = append(dst, ':')
			var ok bool
			if dst, ok = appendJSON(dst, t[k], depth+1, budget); !ok {
				return dst, false
			}
		}
		return append(dst, '}'), true
	}
	return dst, false
}

// appendString writes s as a JSON string with only the escaping JSON requires.
func appendString(dst []byte, s string) []byte { return jsonstr.Append(dst, s, jsonstr.Canonical) }
