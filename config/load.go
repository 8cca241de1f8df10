package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Load reads and decodes the configuration file at path (see Parse). An unreadable file
// gives an error wrapping the fs error (errors.Is(err, fs.ErrNotExist), fs.ErrPermission);
// a readable file with problems gives an *Errors.
func Load(path string, types ...SinkType) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	return Parse(path, data, types...)
}

// Parse decodes the YAML configuration data read from file (used in messages only). It
// starts from Default, so absent keys keep their defaults; a list written in the file
// replaces the default list. Decoding is strict: every unknown key, duplicate key, value
// of the wrong type, bad duration and unset ${VAR} is reported, all of them, as an *Errors.
// Parse does not call Validate.
//
// types are the sink types the program can create, in the order messages list them. Each
// sink's type must be one of them; the keys of its type are decoded into the type's
// Options, and a key of another type is reported as not applying. Every sink whose type is
// known ends with Options set, the default sink too. Without types, sinks are decoded for
// the keys every sink has only: the keys of their types are neither decoded nor checked
// (for programs that create no sinks, such as replay without --sinks).
//
// Every scalar value (text, numbers, booleans, durations; not keys) may contain ${VAR} (an
// error when VAR is unset) and ${VAR:-default} (the default when VAR is unset or empty; it
// cannot contain "}"); $${ stands for a literal ${. Expanded values are never echoed in
// messages.
func Parse(file string, data []byte, types ...SinkType) (*Config, error) {
	c, problems := parse(file, data, os.LookupEnv, types)
	if err := newErrors(problems); err != nil {
		return nil, err
	}
	return c, nil
}

// LoadAndValidate is Load followed by Normalize and Validate, with the problems of every
// step reported together (a file with an unknown key and a bad JSONPath shows both). This
// is what "apisessions validate" and the server use, with the sink types they can create.
func LoadAndValidate(path string, types ...SinkType) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	return ParseAndValidate(path, data, types...)
}

// ParseAndValidate is Parse followed by Normalize and Validate, with the problems of every
// step reported together as one *Errors. Validation runs on what could be decoded, where a
// key that failed to decode keeps its default.
func ParseAndValidate(file string, data []byte, types ...SinkType) (*Config, error) {
	return parseAndValidate(file, data, os.LookupEnv, types)
}

func parseAndValidate(file string, data []byte, lookup func(string) (string, bool), types []SinkType) (*Config, error) {
	c, d := decodeFile(file, data, lookup, types)
	problems := d.problems
	c.Normalize()
	for _, p := range c.validate() {
		if !d.failedAt(p.Path) {
			problems = append(problems, p)
		}
	}
	if err := newErrors(problems); err != nil {
		return nil, err
	}
	return c, nil
}

// maxNodes bounds the values one file may decode to. Aliases let a small file name the
// same large mapping many times; past this the file is rejected instead of expanded.
const maxNodes = 1 << 18

type decoder struct {
	file   string
	lookup func(string) (string, bool)
	// sinks knows the keys of the program's sink types; nil when Parse was given none.
	sinks     *sinkSchema
	problems  []Problem
	pos       map[string]Position
	nodes     int
	exhausted bool
	failed    []string
}

func parse(file string, data []byte, lookup func(string) (string, bool), types []SinkType) (*Config, []Problem) {
	c, d := decodeFile(file, data, lookup, types)
	return c, d.problems
}

func decodeFile(file string, data []byte, lookup func(string) (string, bool), types []SinkType) (*Config, *decoder) {
	c := Default()
	c.File = file
	d := &decoder{file: file, lookup: lookup, pos: map[string]Position{}}
	if len(types) > 0 {
		d.sinks = newSinkSchema(types)
		// However decoding ends, every sink of a known type ends with options.
		defer d.sinks.fillOptions(c)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return c, d
		}
		d.problems = append(d.problems, d.syntaxProblem(err))
		return c, d
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		d.add(extra.Line, "", "a second YAML document begins here; keep the configuration in one document")
	case !errors.Is(err, io.EOF):
		d.problems = append(d.problems, d.syntaxProblem(err))
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return c, d
		}
		root = root.Content[0]
	}
	if root.Kind == yaml.AliasNode && root.Alias != nil {
		root = root.Alias
	}
	if isNull(root) {
		return c, d
	}
	if root.Kind != yaml.MappingNode {
		d.add(root.Line, "", "the file must be a mapping of keys such as server, sessions, parameters and sinks; found "+describe(root))
		return c, d
	}
	d.decode(root, reflect.ValueOf(c).Elem(), "")
	if len(d.pos) > 0 {
		c.Positions = d.pos
	}
	return c, d
}

var yamlLineError = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxProblem turns a yaml.v3 parse error ("yaml: line 3: could not find expected ':'")
// into a located problem.
func (d *decoder) syntaxProblem(err error) Problem {
	msg := err.Error()
	line := 0
	if m := yamlLineError.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	if strings.HasPrefix(msg, "did not find expected") && line > 0 {
		// yaml.v3 numbers the lines of parser (not scanner) errors from 0.
		line++
	}
	return Problem{File: d.file, Line: line, Message: "invalid YAML: " + msg + "; check the indentation and quoting here"}
}

func (d *decoder) add(line int, path, msg string) {
	d.problems = append(d.problems, Problem{File: d.file, Line: line, Path: path, Message: msg})
}

// fail reports a value that could not be decoded: the key keeps its default, and what
// validation would say about it or below it is left out as an echo of this problem.
func (d *decoder) fail(line int, path, msg string) {
	d.add(line, path, msg)
	d.failed = append(d.failed, path)
}

// failedAt reports whether keyPath or one of its ancestors failed to decode.
func (d *decoder) failedAt(keyPath string) bool {
	for _, f := range d.failed {
		if keyPath == f || strings.HasPrefix(keyPath, f) && len(keyPath) > len(f) && (keyPath[len(f)] == '.' || keyPath[len(f)] == '[') {
			return true
		}
	}
	return false
}

// visit counts a node against maxNodes and reports whether decoding may go on.
func (d *decoder) visit(n *yaml.Node) bool {
	d.nodes++
	if d.nodes <= maxNodes {
		return true
	}
	if !d.exhausted {
		d.exhausted = true
		d.add(n.Line, "", fmt.Sprintf("the file expands to more than %d values (through aliases); write it out plainly", maxNodes))
	}
	return false
}

func isNull(n *yaml.Node) bool {
	return n.Kind == 0 || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names what a node is, for "found ..." in messages. Scalars are shown as written
// in the file, which is never a secret: secrets arrive through ${VAR}, shown unexpanded.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return quote(n.Value)
	}
	return "nothing"
}

// describeKind names what a node is without showing a scalar's text.
func describeKind(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode {
		return "a single value"
	}
	return describe(n)
}

// quote quotes a value for a message, shortened so that one message stays one readable line.
func quote(s string) string {
	const max = 80
	if len(s) > max {
		cut := max
		for cut > 0 && s[cut]&0xC0 == 0x80 {
			cut--
		}
		return strconv.Quote(s[:cut]) + "..."
	}
	return strconv.Quote(s)
}

var durationType = reflect.TypeFor[Duration]()

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if !d.visit(n) {
		return
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return
		}
		n = n.Alias
	}
	if v.Type() == sinkType {
		d.sink(n, v, path)
		return
	}
	if isNull(n) {
		// As in yaml.v3: a null list or map is emptied, any other null keeps the default.
		if k := v.Kind(); k == reflect.Slice || k == reflect.Map {
			v.Set(reflect.Zero(v.Type()))
		}
		return
	}
	switch {
	case v.Type() == durationType:
		d.duration(n, v, path)
	case v.Kind() == reflect.Struct:
		d.structure(n, v, path)
	case v.Kind() == reflect.Slice:
		d.sequence(n, v, path)
	case v.Kind() == reflect.Map:
		d.stringMap(n, v, path)
	default:
		d.scalar(n, v, path)
	}
}

// fields maps the YAML keys of a struct type to field indexes, keeping declaration order
// for the list of known keys in messages.
func fields(t reflect.Type) (map[string]int, []string) {
	idx := make(map[string]int, t.NumField())
	var names []string
	for i := range t.NumField() {
		tag := t.Field(i).Tag.Get("yaml")
		name, _, _ := strings.Cut(tag, ",")
		if name == "" || name == "-" {
			continue
		}
		idx[name] = i
		names = append(names, name)
	}
	return idx, names
}

func (d *decoder) structure(n *yaml.Node, v reflect.Value, path string) {
	idx, names := fields(v.Type())
	d.mapping(n, path, names, func(key string) (reflect.Value, bool) {
		i, ok := idx[key]
		if !ok {
			return reflect.Value{}, false
		}
		return v.Field(i), true
	})
}

// mapping decodes the keys of mapping node n at path. target says where a key's value goes:
// false for an unknown key, an invalid reflect.Value for a key to pass over unread. names
// lists the known keys for messages, in the order they are shown.
func (d *decoder) mapping(n *yaml.Node, path string, names []string, target func(key string) (reflect.Value, bool)) {
	if n.Kind != yaml.MappingNode {
		d.fail(n.Line, path, "expected a mapping with keys such as "+strings.Join(names[:min(3, len(names))], ", ")+"; found "+describe(n))
		return
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if !d.visit(k) {
			return
		}
		if k.Kind != yaml.ScalarNode {
			d.add(k.Line, path, "a key must be a plain name; found "+describe(k))
			continue
		}
		name := k.Value
		if name == "<<" {
			d.add(k.Line, path, "merge keys (<<) are not supported; write the keys out")
			continue
		}
		child := join(path, name)
		if first, dup := seen[name]; dup {
			d.add(k.Line, child, fmt.Sprintf("key written twice (first on line %d); keep one", first))
			continue
		}
		seen[name] = k.Line
		field, ok := target(name)
		if !ok {
			msg := "unknown key " + quote(name)
			if hint := didYouMean(name, names); hint != "" {
				msg += hint
			} else {
				msg += "; the keys here are " + strings.Join(names, ", ")
			}
			d.add(k.Line, path, msg)
			continue
		}
		if !field.IsValid() {
			continue
		}
		d.pos[child] = Position{Line: k.Line}
		d.decode(val, field, child)
	}
}

func (d *decoder) sequence(n *yaml.Node, v reflect.Value, path string) {
	elem := v.Type().Elem()
	if n.Kind != yaml.SequenceNode {
		d.fail(n.Line, path, "expected a list ("+listExample(elem)+"); found "+describe(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		ip := path + "[" + strconv.Itoa(i) + "]"
		d.pos[ip] = Position{Line: item.Line}
		e := s.Index(i)
		d.decode(item, e, ip)
		if e.Kind() != reflect.Struct {
			continue
		}
		if f := e.FieldByName("Line"); f.IsValid() && f.Kind() == reflect.Int {
			f.SetInt(int64(item.Line))
		}
	}
	v.Set(s)
}

func listExample(elem reflect.Type) string {
	if elem.Kind() == reflect.Struct {
		return "items starting with \"- \""
	}
	return "e.g. [a, b] or items starting with \"- \""
}

func (d *decoder) stringMap(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		// Never describe a scalar here: it may be a credential written in the wrong place.
		d.fail(n.Line, path, "expected a mapping of names to values; found "+describeKind(n))
		return
	}
	m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if !d.visit(k) || !d.visit(val) {
			return
		}
		if val.Kind == yaml.AliasNode && val.Alias != nil {
			val = val.Alias
		}
		if k.Kind != yaml.ScalarNode {
			d.add(k.Line, path, "a key must be a plain name; found "+describe(k))
			continue
		}
		child := join(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			d.add(k.Line, child, fmt.Sprintf("key written twice (first on line %d); keep one", first))
			continue
		}
		seen[k.Value] = k.Line
		d.pos[child] = Position{Line: k.Line}
		// These values may be credentials (webhook headers): never describe them.
		s := ""
		if !isNull(val) {
			if val.Kind != yaml.ScalarNode {
				d.fail(val.Line, child, "expected a text value; found "+describeKind(val))
				continue
			}
			var ok bool
			if s, _, ok = d.expand(val, child); !ok {
				continue
			}
		}
		if v.Type().Elem().Kind() == reflect.Int {
			// A map of names to whole numbers (sessions.risk.attack_types).
			i, err := parseInt(s)
			if err != nil || i != int64(int(i)) {
				d.fail(val.Line, child, "is not a whole number; write digits only, e.g. 60")
				continue
			}
			m.SetMapIndex(reflect.ValueOf(k.Value), reflect.ValueOf(int(i)))
			continue
		}
		m.SetMapIndex(reflect.ValueOf(k.Value), reflect.ValueOf(s))
	}
	v.Set(m)
}

// expand applies ${VAR} expansion to a scalar, marking the key's position as coming from
// the environment when it did.
func (d *decoder) expand(n *yaml.Node, path string) (s string, fromEnv, ok bool) {
	s, used, err := expandEnv(n.Value, d.lookup)
	if err != nil {
		d.fail(n.Line, path, err.Error())
		return "", false, false
	}
	if used {
		p, ok := d.pos[path]
		if !ok {
			p.Line = n.Line
		}
		p.Env = true
		d.pos[path] = p
	}
	return s, used, true
}

// shown returns how a scalar value appears in a message: quoted, unless it came from the
// environment.
func shown(s string, fromEnv bool) string {
	if fromEnv {
		return "the value from the environment"
	}
	return quote(s)
}

func (d *decoder) scalar(n *yaml.Node, v reflect.Value, path string) {
	want := map[reflect.Kind]string{
		reflect.String: "a text value",
		reflect.Bool:   "true or false",
		reflect.Int:    "a whole number",
		reflect.Uint32: "a whole number",
	}[v.Kind()]
	if n.Kind != yaml.ScalarNode {
		d.fail(n.Line, path, "expected "+want+"; found "+describe(n))
		return
	}
	s, env, ok := d.expand(n, path)
	if !ok {
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		switch s {
		case "true", "True", "TRUE":
			v.SetBool(true)
		case "false", "False", "FALSE":
			v.SetBool(false)
		default:
			d.fail(n.Line, path, shown(s, env)+" is not a boolean; write true or false")
		}
	case reflect.Int:
		i, err := parseInt(s)
		if err != nil || v.OverflowInt(i) {
			d.fail(n.Line, path, shown(s, env)+" is not a whole number; write digits only, e.g. 65536")
			return
		}
		v.SetInt(i)
	case reflect.Uint32:
		i, err := parseInt(s)
		if err != nil || i < 0 || v.OverflowUint(uint64(i)) {
			d.fail(n.Line, path, shown(s, env)+" is not a whole number from 0 to 4294967295; write digits only")
			return
		}
		v.SetUint(uint64(i))
	default:
		// Unreachable for the schema types; a new field type must be taught here.
		d.fail(n.Line, path, "this key cannot be decoded; report this configuration to the maintainers")
	}
}

// parseInt reads a YAML 1.2 integer: decimal (a leading zero is still decimal), or 0x, 0o,
// 0b prefixed.
func parseInt(s string) (int64, error) {
	body := strings.TrimLeft(s, "+-")
	if len(body) > 1 && body[0] == '0' && strings.ContainsRune("xXoObB", rune(body[1])) {
		return strconv.ParseInt(s, 0, 64)
	}
	return strconv.ParseInt(s, 10, 64)
}

func (d *decoder) duration(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode {
		d.fail(n.Line, path, "expected a duration such as 30s, 15m or 168h; found "+describe(n))
		return
	}
	s, env, ok := d.expand(n, path)
	if !ok {
		return
	}
	t, err := time.ParseDuration(s)
	if err != nil {
		d.fail(n.Line, path, shown(s, env)+" is not a duration; use Go syntax such as 30s, 15m or 168h (units: ms, s, m, h)")
		return
	}
	v.SetInt(int64(t))
}

// expandEnv replaces ${VAR} and ${VAR:-default} in s. used reports whether any reference
// was expanded. Errors name the variable, never its value.
func expandEnv(s string, lookup func(string) (string, bool)) (out string, used bool, err error) {
	if !strings.Contains(s, "${") {
		return s, false, nil
	}
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), used, nil
		}
		if i > 0 && s[i-1] == '$' {
			// "$${" is a literal "${".
			b.WriteString(s[:i-1])
			b.WriteString("${")
			s = s[i+2:]
			continue
		}
		b.WriteString(s[:i])
		rest := s[i+2:]
		end := strings.IndexByte(rest, '}')
		if end < 0 {
			return "", false, errors.New("${ is not closed; write ${NAME} or ${NAME:-default}, or $${ for a literal ${")
		}
		ref := rest[:end]
		name, def, hasDef := strings.Cut(ref, ":-")
		if !validEnvName(name) {
			return "", false, fmt.Errorf("%s is not a valid variable reference; write ${NAME} or ${NAME:-default} with NAME made of letters, digits and _", quote("${"+ref+"}"))
		}
		val, set := lookup(name)
		switch {
		case hasDef && val == "":
			val = def
		case !set:
			return "", false, fmt.Errorf("environment variable %s is not set; set it, or give a default with ${%s:-value}", name, name)
		}
		b.WriteString(val)
		used = true
		s = rest[end+1:]
	}
}

func validEnvName(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
