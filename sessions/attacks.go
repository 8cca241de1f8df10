package sessions

import (
	"math"
	"strings"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions/extract"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// Bounds on what one verdict may add to a record. The values come from other filters, but a
// WAF may echo parts of the request (rule messages, matched data) into them.
const (
	maxAttackTypes   = 16
	maxAttackRuleIDs = 64
	maxAttackValue   = 128
)

// attackSource reads a verdict from one dynamic metadata namespace.
type attackSource struct {
	namespace, key, typesKey, rulesKey string
	label                              string // record source: "metadata:<namespace>"
}

// attackRules are the compiled attacks settings; nil when none is configured.
type attackRules struct {
	metadata    []attackSource
	header      string // lower case; "" = none
	headerLabel string // record source: "header:<name>"
}

func compileAttacks(a config.Attacks) *attackRules {
	if len(a.Metadata) == 0 && a.ResponseHeader == "" {
		return nil
	}
	r := &attackRules{header: strings.ToLower(a.ResponseHeader)}
	if r.header != "" {
		r.headerLabel = "header:" + r.header
	}
	for _, m := range a.Metadata {
		r.metadata = append(r.metadata, attackSource{
			namespace: m.Namespace, key: m.Key, typesKey: m.TypesKey, rulesKey: m.RulesKey,
			label: "metadata:" + m.Namespace,
		})
	}
	return r
}

// verdict reads the verdicts that reached apisessions for x. It returns nil when no source
// reported anything; an Attack with malicious false when a source reported attack types or
// rule ids without marking the request malicious (a WAF in detection mode, scores under its
// threshold). Types and rule ids of every source are merged, in order, without repeats.
func (r *attackRules) verdict(x *traffic.Exchange) (malicious bool, a *record.Attack) {
	if r == nil {
		return false, nil
	}
	var source string
	var types, rules []string
	for i := range r.metadata {
		m := &r.metadata[i]
		fields, ok := x.Metadata[m.namespace]
		if !ok {
			continue
		}
		bad := truthy(fields[m.key])
		before := len(types) + len(rules)
		if m.typesKey != "" {
			types = appendValues(types, fields[m.typesKey], maxAttackTypes)
		}
		if m.rulesKey != "" {
			rules = appendValues(rules, fields[m.rulesKey], maxAttackRuleIDs)
		}
		reported := len(types)+len(rules) > before
		if bad && !malicious {
			malicious, source = true, m.label
		} else if reported && source == "" {
			source = m.label
		}
	}
	if r.header != "" {
		for _, h := range x.ResponseHeaders {
			if h.Name != r.header && !strings.EqualFold(h.Name, r.header) {
				continue
			}
			if !malicious {
				malicious, source = true, r.headerLabel
			}
			types = appendValues(types, h.Value, maxAttackTypes)
		}
	}
	if source == "" {
		return false, nil
	}
	return malicious, &record.Attack{Source: source, Types: types, RuleIDs: rules}
}

// truthy says whether a metadata value marks a request malicious: true, a non-zero number or
// a non-empty string. The strings "false" and "0" (any case) are read as the booleans and
// numbers they spell, since filters that write every value as text use them for "no".
func truthy(v any) bool {
	switch t := v.(type) {
	case bool:
		return t
	case string:
		s := strings.TrimSpace(t)
		return s != "" && s != "0" && !strings.EqualFold(s, "false")
	case float64:
		return t != 0 && !math.IsNaN(t)
	case int64:
		return t != 0
	case int:
		return t != 0
	}
	return false
}

// appendValues adds the attack types or rule ids a value lists to dst: a string of
// comma-separated values, or a list of strings and numbers. Each is trimmed and capped; at
// most limit values are kept and none twice.
func appendValues(dst []string, v any, limit int) []string {
	add := func(s string) {
		s = strings.TrimSpace(s)
		if s == "" || len(dst) >= limit {
			return
		}
		s = record.Truncate(s, maxAttackValue)
		for _, d := range dst {
			if d == s {
				return
			}
		}
		dst = append(dst, strings.Clone(s))
	}
	switch t := v.(type) {
	case string:
		for s := range strings.SplitSeq(t, ",") {
			if len(dst) >= limit {
				break
			}
			add(s)
		}
	case []any:
		for _, e := range t {
			if len(dst) >= limit {
				break
			}
			switch e.(type) {
			case map[string]any, []any:
				continue
			}
			if s, ok := extract.Scalar(e); ok {
				add(s)
			}
		}
	case float64, int64, int, bool:
		if s, ok := extract.Scalar(t); ok {
			add(s)
		}
	}
	return dst
}
