package sessions

import (
	"hash/maphash"
	"strconv"
	"strings"

	"github.com/apisessions/apisessions/sessions/record"
)

// This file holds the compact forms a live part keeps its counters and strings in. A part
// typically sees two or three methods, statuses and flows and one or two addresses and user
// agents; kept in maps and private copies of every string, that came to 1.3 KiB a part, and
// the table holds up to max_live_parts of them (BenchmarkLivePartMemory, docs/performance.md).

// countKind says what a tally entry counts.
type countKind uint16

const (
	kindMethod countKind = iota + 1
	kindStatus
	kindFlow
)

const (
	valueBits  = 12
	countBits  = 48
	countMask  = 1<<countBits - 1
	otherValue = 1<<valueBits - 1 // the value of otherBucket, in every kind
	// maxStatusCode bounds the statuses that have a code; others are counted by name.
	maxStatusCode = 1000
)

// tallyEntry is one counted value: its code (kind, then a 12-bit value) in the top 16 bits and
// its count in the other 48. 2^48 requests is more than a part can see in its day at any rate
// a server reaches.
type tallyEntry uint64

func codeOf(k countKind, v uint16) uint16 { return uint16(k)<<valueBits | v }

func (e tallyEntry) code() uint16    { return uint16(e >> countBits) }
func (e tallyEntry) kind() countKind { return countKind(e.code() >> valueBits) }
func (e tallyEntry) value() uint16   { return e.code() & otherValue }
func (e tallyEntry) n() int          { return int(e & countMask) }

// tally counts a part's requests per method, status and flow as three maps capped at
// record.MaxDistinct keys each would (the rest under otherBucket), in a short list of 8-byte
// entries where the maps took about 250 bytes each. Standard methods, statuses below
// maxStatusCode, otherBucket and flows have a code; any other value is kept by name in rare,
// which the part allocates only when it meets one.
type tally struct {
	entries []tallyEntry
	rare    *[]rareCount
}

// rareCount counts a method or status that has no code.
type rareCount struct {
	kind countKind
	key  string
	n    int
}

// methodNames are the methods with a code, the code being the index.
var methodNames = [...]string{"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE"}

// methodValue is the code value of method m, if it has one.
func methodValue(m string) (uint16, bool) {
	for i, name := range methodNames {
		if m == name {
			return uint16(i), true
		}
	}
	// A method named "other" shares the bucket, as it shares the key of a map.
	return otherValue, m == otherBucket
}

func (t *tally) method(m string) {
	v, ok := methodValue(m)
	t.add(kindMethod, v, ok, m)
}

func (t *tally) status(s int) {
	if s >= 0 && s < maxStatusCode {
		t.add(kindStatus, uint16(s), true, "")
		return
	}
	t.add(kindStatus, 0, false, statusText(s))
}

// flows counts one request in each flow of mask; flows are few and never capped.
func (t *tally) flows(mask flowMask) {
	for m, i := mask, uint16(0); m != 0; m, i = m>>1, i+1 {
		if m&1 != 0 && int(i) < len(flowNames) {
			t.add(kindFlow, i, true, "")
		}
	}
}

// add counts one request under value v of kind k when coded, else under key. A kind that
// counts record.MaxDistinct values already counts a new one under otherBucket.
func (t *tally) add(k countKind, v uint16, coded bool, key string) {
	if coded && t.inc(codeOf(k, v)) || !coded && t.incRare(k, key) {
		return
	}
	if k != kindFlow && t.distinct(k) >= record.MaxDistinct {
		coded, v = true, otherValue
		if t.inc(codeOf(k, v)) {
			return
		}
	}
	if !coded {
		if t.rare == nil {
			t.rare = new([]rareCount)
		}
		*t.rare = append(*t.rare, rareCount{kind: k, key: strings.Clone(key), n: 1})
		return
	}
	if len(t.entries) == cap(t.entries) {
		// Grow by two, not twice: a part's tally stops at a handful of entries.
		t.entries = append(make([]tallyEntry, 0, len(t.entries)+2), t.entries...)
	}
	t.entries = append(t.entries, tallyEntry(codeOf(k, v))<<countBits|1)
}

func (t *tally) inc(code uint16) bool {
	for i, e := range t.entries {
		if e.code() == code {
			if e.n() < countMask {
				t.entries[i]++
			}
			return true
		}
	}
	return false
}

func (t *tally) incRare(k countKind, key string) bool {
	if t.rare == nil {
		return false
	}
	for i := range *t.rare {
		if r := &(*t.rare)[i]; r.kind == k && r.key == key {
			r.n++
			return true
		}
	}
	return false
}

// distinct is the number of values of kind k counted.
func (t *tally) distinct(k countKind) int {
	n := 0
	for _, e := range t.entries {
		if e.kind() == k {
			n++
		}
	}
	if t.rare != nil {
		for _, r := range *t.rare {
			if r.kind == k {
				n++
			}
		}
	}
	return n
}

// counts is the map of kind k that a session record carries, nil when k counted nothing.
func (t *tally) counts(k countKind) map[string]int {
	var m map[string]int
	put := func(key string, n int) {
		if m == nil {
			m = make(map[string]int, 4)
		}
		m[key] = n
	}
	for _, e := range t.entries {
		if e.kind() == k {
			put(valueName(k, e.value()), e.n())
		}
	}
	if t.rare != nil {
		for _, r := range *t.rare {
			if r.kind == k {
				put(r.key, r.n)
			}
		}
	}
	return m
}

// valueName is the key a coded value has in a session record.
func valueName(k countKind, v uint16) string {
	switch {
	case v == otherValue && k != kindFlow:
		return otherBucket
	case k == kindMethod:
		return methodNames[v]
	case k == kindStatus:
		return statusText(int(v))
	default:
		return flowNames[v]
	}
}

// statusTexts avoids formatting the statuses of records.
var statusTexts = func() [maxStatusCode]string {
	var t [maxStatusCode]string
	for i := range t {
		t[i] = strconv.Itoa(i)
	}
	return t
}()

func statusText(s int) string {
	if s >= 0 && s < len(statusTexts) {
		return statusTexts[s]
	}
	return strconv.Itoa(s)
}

// internSlots is the size of each shard's interning table: enough for the user agents and
// roles in common use, few enough that the table costs 4 KiB a shard.
const internSlots = 256

// interner shares one copy of the strings many parts hold (user agents, roles) in a
// direct-mapped table: a string takes the slot its hash names, replacing what was there.
// Memory stays bounded whatever the traffic, a miss costs the copy a part made before, and a
// string replaced in the table stays valid in the parts that hold it. Used under the shard
// lock only.
type interner struct {
	seed  maphash.Seed
	slots [internSlots]string
}

func (in *interner) intern(s string) string {
	if s == "" {
		return ""
	}
	i := maphash.String(in.seed, s) % internSlots
	if in.slots[i] == s {
		return in.slots[i]
	}
	c := strings.Clone(s)
	in.slots[i] = c
	return c
}

// maxSharedKeys bounds each shard's table of grouping keys. Keys come from the configuration
// and the built-in list, so a few dozen are in use; past the bound a part keeps its own copy.
const maxSharedKeys = 256

// shareKey returns a pointer to key that the shard's parts with that key share.
func shareKey(keys map[record.Key]*record.Key, key record.Key) *record.Key {
	if k, ok := keys[key]; ok {
		return k
	}
	k := &record.Key{Source: strings.Clone(key.Source), Name: strings.Clone(key.Name)}
	if len(keys) < maxSharedKeys {
		keys[*k] = k
	}
	return k
}
