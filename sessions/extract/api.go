package extract

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ohler55/ojg/jp"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/config/pathpattern"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// Side says which half of an exchange a parameter reads; it is traffic's Side, so the ext_proc
// server and the engine speak of sides in one type.
type Side = traffic.Side

// The two halves of an exchange.
const (
	Request  = traffic.Request
	Response = traffic.Response
)

// ErrInvalidParameter is wrapped by every error Compile returns.
var ErrInvalidParameter = errors.New("invalid parameter")

type source uint8

const (
	srcHeader source = iota
	srcCookie
	srcSetCookie
	srcQuery
	srcBody
	srcPath
)

type decoding uint8

const (
	decodeNone decoding = iota
	decodeJWT
	decodeJSON
	decodeBase64
)

// Extractor reads one configured parameter. It is immutable and safe for concurrent use.
type Extractor struct {
	name   string
	side   Side
	src    source
	key    string // header names lower case; cookie, query and form names as written
	decode decoding
	sel    *selector            // nil: the value (or decoded value) itself
	pat    *pathpattern.Pattern // request.path only
}

// Compile checks one parameter and prepares it for extraction: the header name is lowered,
// the JSONPath and the path pattern are parsed once here, never per request.
func Compile(p config.Parameter) (*Extractor, error) {
	e := &Extractor{name: p.Name}
	switch p.In {
	case config.InRequestHeader:
		e.src = srcHeader
	case config.InResponseHeader:
		e.src, e.side = srcHeader, Response
	case config.InRequestCookie:
		e.src = srcCookie
	case config.InResponseCookie:
		e.src, e.side = srcSetCookie, Response
	case config.InRequestQuery:
		e.src = srcQuery
	case config.InRequestBody:
		e.src = srcBody
	case config.InResponseBody:
		e.src, e.side = srcBody, Response
	case config.InRequestPath:
		e.src = srcPath
	default:
		return nil, fmt.Errorf("%w %q: unknown source %q; use one of request.header, request.cookie, request.query, request.body, request.path, response.header, response.cookie, response.body",
			ErrInvalidParameter, p.Name, p.In)
	}
	switch p.Decode {
	case "":
	case config.DecodeJWT:
		e.decode = decodeJWT
	case config.DecodeJSON:
		e.decode = decodeJSON
	case config.DecodeBase64:
		e.decode = decodeBase64
	default:
		return nil, fmt.Errorf("%w %q: unknown decode %q; use jwt, json or base64", ErrInvalidParameter, p.Name, p.Decode)
	}

	key := strings.TrimSpace(p.Key)
	switch e.src {
	case srcHeader:
		key = strings.ToLower(key)
	case srcPath:
		if key != "" {
			return nil, fmt.Errorf("%w %q: request.path takes no key; put the pattern in path", ErrInvalidParameter, p.Name)
		}
		if p.Path == "" {
			return nil, fmt.Errorf("%w %q: request.path needs a path pattern with one {name} capture", ErrInvalidParameter, p.Name)
		}
		pat, err := pathpattern.Compile(p.Path)
		if err != nil {
			return nil, fmt.Errorf("%w %q: %w", ErrInvalidParameter, p.Name, err)
		}
		if len(pat.Captures()) == 0 {
			return nil, fmt.Errorf("%w %q: path pattern %q has no {name} capture; add one for the segment to read", ErrInvalidParameter, p.Name, p.Path)
		}
		e.pat = pat
		return e, nil
	}
	e.key = key

	switch {
	case e.src == srcBody && key == "" && p.Path == "":
		return nil, fmt.Errorf("%w %q: a body source needs key (form field) or path (JSONPath)", ErrInvalidParameter, p.Name)
	case e.src == srcBody && e.decode != decodeNone && key == "":
		return nil, fmt.Errorf("%w %q: decode on a body source applies to a form field; set key", ErrInvalidParameter, p.Name)
	case e.src != srcBody && key == "":
		return nil, fmt.Errorf("%w %q: %s needs key (the name to read)", ErrInvalidParameter, p.Name, p.In)
	case e.src != srcBody && p.Path != "" && e.decode == decodeNone:
		return nil, fmt.Errorf("%w %q: path selects inside a decoded value; set decode (jwt, json or base64) or remove path", ErrInvalidParameter, p.Name)
	}
	if p.Path != "" {
		sel, err := compileSelector(p.Path)
		if err != nil {
			return nil, fmt.Errorf("%w %q: path %q is not valid JSONPath: %w", ErrInvalidParameter, p.Name, p.Path, err)
		}
		e.sel = sel
	}
	return e, nil
}

// Name returns the parameter's name.
func (e *Extractor) Name() string { return e.name }

// Side returns the half of the exchange the parameter reads.
func (e *Extractor) Side() Side { return e.side }

// NeedsBody reports whether the parameter reads a body, so the body of its side is buffered.
func (e *Extractor) NeedsBody() bool { return e.src == srcBody }

// Extract returns the value when the parameter works for this exchange: its source is
// present and yields a non-empty scalar (string, number, bool as text; objects and arrays
// as canonical JSON with sorted keys).
//
// For body sources, key reads a field of an urlencoded or multipart form body and path a
// JSONPath into a JSON body; with decode, the form field is decoded and path selects inside
// the decoded value. For every other source, path selects inside the decoded value.
func (e *Extractor) Extract(v *View) (string, bool) {
	var raw string
	var ok bool
	switch e.src {
	case srcHeader:
		raw, ok = v.Header(e.side, e.key)
	case srcCookie:
		raw, ok = v.Cookie(e.key)
	case srcSetCookie:
		raw, ok = v.SetCookie(e.key)
	case srcQuery:
		raw, ok = v.Query(e.key)
	case srcPath:
		raw, ok = v.pathCapture(e.pat)
	case srcBody:
		if e.key != "" {
			raw, ok = v.FormField(e.side, e.key)
		}
		if !ok && e.decode == decodeNone && e.sel != nil {
			if e.sel.simple {
				if val, works, sure := v.scanJSON(e.side, e.sel.steps); sure {
					return val, works
				}
			}
			doc, isJSON := v.JSONBody(e.side)
			if !isJSON {
				return "", false
			}
			return e.sel.pick(doc)
		}
	}
	if !ok || raw == "" {
		return "", false
	}
	if e.decode == decodeNone {
		return raw, true
	}
	var val any
	switch e.decode {
	case decodeJWT:
		val, ok = v.UnverifiedClaims(raw)
	case decodeJSON:
		val, ok = v.parseJSON(raw)
	case decodeBase64:
		val, ok = v.decodeBase64(raw)
	}
	if !ok {
		return "", false
	}
	if e.sel == nil {
		return Scalar(val)
	}
	return e.sel.pick(val)
}

// selector is a compiled JSONPath. Paths made only of child names and indexes (all of the
// common ones) are walked directly, without ojg's per-call stack allocation; on a JSON body
// they are read from the View's token tape without parsing the body into a tree.
type selector struct {
	expr     jp.Expr
	definite bool
	simple   bool   // steps hold the whole path
	steps    []step // child names and indexes, when simple
}

func compileSelector(src string) (s *selector, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = errors.New("unparsable expression")
		}
	}()
	x, err := jp.ParseString(src)
	if err != nil {
		return nil, err
	}
	if len(x) == 0 {
		return nil, errors.New("empty expression")
	}
	s = &selector{expr: x, definite: true}
	s.steps, s.simple = simpleSteps(x)
	for _, f := range x {
		switch f.(type) {
		case jp.Root, jp.At, jp.Bracket, jp.Child, jp.Nth:
		default:
			s.definite = false
		}
	}
	return s, nil
}

// pickBudget bounds the rendering work (bytes written plus nodes visited) of one pick over
// several results. "$..*" over a deep document selects every subtree; rendering each in full
// would cost the document's size times its depth.
const pickBudget = 1 << 20

// pick returns the selected value as Scalar renders it. When the path selects several values,
// the smallest working rendering (byte order) wins: ojg walks objects in Go's random map order,
// and a grouping value must not change from one evaluation to the next. Scalars are
// considered before objects and arrays, which are rendered only while the budget lasts.
func (s *selector) pick(doc any) (out string, ok bool) {
	if s.definite {
		val, found := walkDefinite(s.expr, doc)
		if !found {
			return "", false
		}
		return Scalar(val)
	}
	defer func() {
		if r := recover(); r != nil {
			out, ok = "", false
		}
	}()
	results := s.expr.Get(doc)
	if len(results) == 1 {
		return Scalar(results[0])
	}
	containers := false
	for _, val := range results {
		switch val.(type) {
		case map[string]any, []any:
			containers = true
			continue
		}
		if str, works := Scalar(val); works && (!ok || str < out) {
			out, ok = str, true
		}
	}
	if ok || !containers {
		return out, ok
	}
	budget := pickBudget
	for _, val := range results {
		switch t := val.(type) {
		case map[string]any:
			if len(t) == 0 {
				continue
			}
		case []any:
			if len(t) == 0 {
				continue
			}
		default:
			continue
		}
		if budget <= 0 {
			break
		}
		if str, works := render(val, &budget); works && (!ok || str < out) {
			out, ok = str, true
		}
	}
	return out, ok
}

func walkDefinite(x jp.Expr, doc any) (any, bool) {
	cur := doc
	for _, f := range x {
		switch f := f.(type) {
		case jp.Child:
			m, isMap := cur.(map[string]any)
			if !isMap {
				return nil, false
			}
			next, has := m[string(f)]
			if !has {
				return nil, false
			}
			cur = next
		case jp.Nth:
			a, isArray := cur.([]any)
			if !isArray {
				return nil, false
			}
			i := int(f)
			if i < 0 {
				i += len(a)
			}
			if i < 0 || i >= len(a) {
				return nil, false
			}
			cur = a[i]
		}
	}
	return cur, true
}
