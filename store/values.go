package store

import (
	"encoding/binary"
	"hash/maphash"
	"strconv"
	"strings"

	"github.com/apisessions/apisessions/sessions/record"
)

// Kinds of part_values rows. A part has one row per distinct value of each kind among its
// requests; the list filters look values up there instead of in per-request indexes. The
// numbers are stored: never renumber.
const (
	kindUser      = 1
	kindIP        = 2
	kindRoute     = 3
	kindHost      = 4
	kindMethod    = 5
	kindStatus    = 6
	kindRole      = 7
	kindFlow      = 8
	kindMalicious = 9
	// kindPathDir is the path cut before its third '/' ("/api/orders/7" -> "/api/orders"),
	// which a path prefix filter can find by range or by exact value (see Filter.facets).
	kindPathDir = 10
	// kindShape is method, route and status of one request together (in that order, so that
	// method and route with a status class is one range), so a combination is found directly
	// even when each alone is common.
	kindShape = 11
	// kindUserAgent and kindAttack are a request's user agent and each of its attack types.
	kindUserAgent = 12
	kindAttack    = 13
	// kindJA3 and kindJA4 are a request's TLS fingerprints.
	kindJA3 = 14
	kindJA4 = 15
)

// maxValueLen bounds a stored value: traffic is attacker-written and a value may be huge.
// Longer values are cut; a filter cuts its value the same way and then checks the request
// rows, so a cut value only widens the candidates.
const maxValueLen = 256

// partValue is one row of part_values.
type partValue struct {
	part  int64
	kind  int
	value string
}

func cut(v string) string {
	if len(v) > maxValueLen {
		return v[:maxValueLen]
	}
	return v
}

// statusValue writes 0..999 as three digits, so a class (5xx) is the exact text range
// "500".."599"; any other number sorts outside every class.
func statusValue(status int) string {
	if status >= 0 && status <= 999 {
		b := [3]byte{byte('0' + status/100), byte('0' + status/10%10), byte('0' + status%10)}
		return string(b[:])
	}
	return "#" + strconv.Itoa(status)
}

// pathDir cuts p before its third '/'.
func pathDir(p string) string {
	n := 0
	for i := 0; i < len(p); i++ {
		if p[i] == '/' {
			n++
			if n == 3 {
				return p[:i]
			}
		}
	}
	return p
}

// shapePrefix is the start of a shape value: method and route; the status follows.
func shapePrefix(method, route string) string {
	return method + "\x00" + route + "\x00"
}

// shapeable reports whether a shape value can be told apart: the separator must not occur in
// its parts, and the status must survive cutting at maxValueLen.
func shapeable(method, route string) bool {
	return len(shapePrefix(method, route))+4 < maxValueLen &&
		!strings.ContainsRune(method, 0) && !strings.ContainsRune(route, 0)
}

func shapeValue(method string, status int, route string) string {
	return shapePrefix(method, route) + statusValue(status)
}

func splitFlows(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// requestValues appends the part_values rows one request implies.
func requestValues(out []partValue, part int64, method, host, path, route string, status int, ip, user, role string,
	malicious bool, flows []string) []partValue {
	add := func(kind int, v string) { out = append(out, partValue{part, kind, cut(v)}) }
	if user != "" {
		add(kindUser, user)
	}
	if role != "" {
		add(kindRole, role)
	}
	add(kindIP, ip)
	add(kindRoute, route)
	add(kindHost, host)
	add(kindMethod, method)
	add(kindStatus, statusValue(status))
	add(kindPathDir, pathDir(path))
	if shapeable(method, route) {
		add(kindShape, shapeValue(method, status, route))
	}
	for _, f := range flows {
		add(kindFlow, f)
	}
	if malicious {
		add(kindMalicious, "1")
	}
	return out
}

// recordValues appends the part_values rows a request record implies: those of requestValues,
// its user agent, TLS fingerprints and attack types. Empty values (no user agent) have no row.
func recordValues(out []partValue, part int64, r *record.Request) []partValue {
	out = requestValues(out, part, r.Method, r.Host, r.Path, r.Route, r.Status, r.ClientIP, r.User, r.Role,
		r.Malicious, r.Flows)
	if r.UserAgent != "" {
		out = append(out, partValue{part, kindUserAgent, cut(r.UserAgent)})
	}
	if r.JA3 != "" {
		out = append(out, partValue{part, kindJA3, cut(r.JA3)})
	}
	if r.JA4 != "" {
		out = append(out, partValue{part, kindJA4, cut(r.JA4)})
	}
	if r.Attack != nil {
		for _, t := range r.Attack.Types {
			out = append(out, partValue{part, kindAttack, cut(t)})
		}
	}
	return out
}

// statusKey turns a stored status value back into the key records use (strconv.Itoa).
func statusKey(v string) string {
	n, err := strconv.Atoi(strings.TrimPrefix(v, "#"))
	if err != nil {
		return v
	}
	return strconv.Itoa(n)
}

// counted reports whether part_values counts the requests of a part that have a value of the
// kind (and keeps the first one's time): the kinds whose counts a part's record or stats show.
func counted(kind int) bool {
	switch kind {
	case kindMethod, kindStatus, kindFlow, kindAttack:
		return true
	}
	return false
}

// dated reports whether part_values keeps the time of the first request of a part that has a
// value of the kind, without counting: the kinds a record lists in order of first sight. A
// row of a kind neither counted nor dated (count and first 0) only tells the filters that the
// part has the value; it is written once.
func dated(kind int) bool { return kind == kindIP || kind == kindUserAgent }

// valueCache remembers the uncounted part_values rows known to be committed, and for dated
// kinds their first time, so ingest skips the statement for a value a part already has
// (most requests of a part repeat its user, host, routes, address and user agent). A first
// time only moves earlier, whoever writes it, so a remembered one is an upper bound.
// It is bounded: when full it starts again empty, which costs only redundant upserts.
// Only the writer touches it, under Store.wmu.
type valueCache struct {
	seed maphash.Seed
	seen map[uint64]int64
	max  int
}

// cachedValue is a row to remember: its key and first time (0 for a mark).
type cachedValue struct {
	key   uint64
	first int64
}

// valueCacheSize bounds the cache: about 30 bytes an entry, so 8 MB.
const valueCacheSize = 1 << 18

func newValueCache(n int) *valueCache {
	return &valueCache{seed: maphash.MakeSeed(), seen: make(map[uint64]int64), max: n}
}

// key hashes a row; 64 bits make a collision (which would leave one value unrecorded) about
// as likely as a disk error.
func (c *valueCache) key(session, part string, kind int, value string) uint64 {
	var h maphash.Hash
	h.SetSeed(c.seed)
	var b [9]byte
	for _, s := range [...]string{session, part} {
		binary.LittleEndian.PutUint64(b[:8], uint64(len(s)))
		h.Write(b[:8])
		h.WriteString(s)
	}
	b[8] = byte(kind)
	h.Write(b[8:])
	h.WriteString(value)
	return h.Sum64()
}

// first returns the first time remembered for a row, and whether it is remembered.
func (c *valueCache) first(k uint64) (int64, bool) {
	f, ok := c.seen[k]
	return f, ok
}

// add records committed rows.
func (c *valueCache) add(rows []cachedValue) {
	if len(c.seen)+len(rows) > c.max {
		clear(c.seen)
	}
	for _, r := range rows {
		if f, ok := c.seen[r.key]; !ok || r.first < f {
			c.seen[r.key] = r.first
		}
	}
}

// reset forgets everything: after a purge a part may come again, without its values.
func (c *valueCache) reset() { clear(c.seen) }
