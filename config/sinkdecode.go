package config

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

var sinkType = reflect.TypeFor[Sink]()

// sinkKeys maps the keys every sink has to their field in Sink; sinkKeyNames lists them in
// declaration order, type and name first.
var sinkKeys, sinkKeyNames = fields(sinkType)

// sinkSchema knows the keys of the sink types a program has, so that each key of a sink can
// be told apart: a key every sink has, a key of its own type, a key of another type, or an
// unknown key.
type sinkSchema struct {
	types []SinkType
	// names are the types' names, in their order, for messages.
	names []string
	// keys maps the keys of each type (parallel to types) to their field in its options.
	keys []map[string]int
	// owner maps every key some type has to the first type that has it.
	owner map[string]int
	// all lists every key a sink may have, for messages: type and name, the keys of the
	// types, then the delivery keys, as the spec's example lists them.
	all []string
}

// newSinkSchema reads the keys of types from the structs their Options return. A type whose
// Options do not return a pointer to a struct, or that has a key every sink has, is a
// mistake in the program, not in the file: it panics.
func newSinkSchema(types []SinkType) *sinkSchema {
	sc := &sinkSchema{types: types, owner: map[string]int{}}
	var typeKeys []string
	for i, t := range types {
		rt := reflect.TypeOf(t.Options())
		if rt == nil || rt.Kind() != reflect.Pointer || rt.Elem().Kind() != reflect.Struct {
			panic(fmt.Sprintf("config: the options of sink type %q are %v, not a pointer to a struct", t.Name, rt))
		}
		idx, names := fields(rt.Elem())
		for _, k := range names {
			if _, common := sinkKeys[k]; common {
				panic(fmt.Sprintf("config: sink type %q has its own key %q, which every sink has", t.Name, k))
			}
			if _, ok := sc.owner[k]; !ok {
				sc.owner[k] = i
				typeKeys = append(typeKeys, k)
			}
		}
		sc.names = append(sc.names, t.Name)
		sc.keys = append(sc.keys, idx)
	}
	sc.all = slices.Concat(sinkKeyNames[:2], typeKeys, sinkKeyNames[2:])
	return sc
}

// index returns the position of the type named typ, or -1.
func (sc *sinkSchema) index(typ string) int {
	return slices.Index(sc.names, typ)
}

// fillOptions gives every sink of a known type that has no options its type's defaults: the
// default sink, which was not decoded from the file.
func (sc *sinkSchema) fillOptions(c *Config) {
	for i := range c.Sinks {
		s := &c.Sinks[i]
		if t := sc.index(s.Type); t >= 0 && s.Options == nil {
			s.Options = sc.types[t].Options()
		}
	}
}

// skippedOptions are the Options of a sink decoded without the program's sink types whose
// own keys were passed over: nothing can be created from it (see Parse).
type skippedOptions struct{}

func (skippedOptions) Validate(*SinkCheck) {}

// sink decodes one item of sinks, starting from the delivery defaults. With the program's
// sink types known, the keys every sink has go into the Sink, the keys of its type into the
// type's Options, and a key of another type into a scratch value of that type, so that its
// value is checked like any other before it is reported as not applying; the type must be
// one of the program's. Without them, only the keys every sink has are read.
func (d *decoder) sink(n *yaml.Node, v reflect.Value, path string) {
	s := v.Addr().Interface().(*Sink)
	sc := d.sinks
	if isNull(n) {
		*s = Sink{}
		if sc != nil {
			d.checkSinkType(path, s, -1, nil)
		}
		return
	}
	names, ti := sinkKeyNames, -1
	if sc != nil {
		names = sc.all
	}
	if n.Kind == yaml.MappingNode {
		*s = DefaultSink("")
		if sc != nil {
			if ti = sc.index(d.sinkTypeOf(n)); ti >= 0 {
				s.Options = sc.types[ti].Options()
			}
		}
	}
	var foreign []string
	d.mapping(n, path, names, func(key string) (reflect.Value, bool) {
		if i, ok := sinkKeys[key]; ok {
			return v.Field(i), true
		}
		if sc == nil {
			s.Options = skippedOptions{}
			return reflect.Value{}, true
		}
		if ti >= 0 {
			if i, ok := sc.keys[ti][key]; ok {
				return reflect.ValueOf(s.Options).Elem().Field(i), true
			}
		}
		o, ok := sc.owner[key]
		if !ok {
			return reflect.Value{}, false
		}
		foreign = append(foreign, key)
		return reflect.ValueOf(sc.types[o].Options()).Elem().Field(sc.keys[o][key]), true
	})
	if sc != nil && n.Kind == yaml.MappingNode {
		d.checkSinkType(path, s, ti, foreign)
	}
}

// sinkTypeOf returns the type a sink mapping names, as decoding its type key will find it
// ("" when absent or not text), so that its other keys can be decoded knowing the type
// whatever their order. Problems with the type key are reported when it is decoded.
func (d *decoder) sinkTypeOf(n *yaml.Node) string {
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Value != "type" {
			continue
		}
		if val.Kind == yaml.AliasNode && val.Alias != nil {
			val = val.Alias
		}
		if val.Kind != yaml.ScalarNode || isNull(val) {
			return ""
		}
		typ, _, err := expandEnv(val.Value, d.lookup)
		if err != nil {
			return ""
		}
		return typ
	}
	return ""
}

// checkSinkType reports a sink at path whose type is missing or not one of the program's
// (ti < 0), and then leaves what validation would say about the sink out, since it cannot
// know what the sink was meant to be. For a sink of a known type it reports the keys of
// other types that were written and decoded.
func (d *decoder) checkSinkType(path string, s *Sink, ti int, foreign []string) {
	at := path + ".type"
	use := "use " + strings.Join(d.sinks.names, ", ")
	switch {
	case d.failedAt(at):
	case s.Type == "":
		d.add(d.pos[path].Line, at, "is missing; "+use)
	case ti < 0:
		d.add(d.pos[at].Line, at, fmt.Sprintf("%s is not a sink type%s; %s", shown(s.Type, d.pos[at].Env), didYouMean(s.Type, d.sinks.names), use))
	default:
		for _, k := range foreign {
			if kp := path + "." + k; !d.failedAt(kp) {
				d.add(d.pos[kp].Line, kp, "does not apply to a "+s.Type+" sink; remove it")
			}
		}
		return
	}
	d.failed = append(d.failed, path)
}
