package sessions

import (
	"strings"
	"time"

	"github.com/apisessions/apisessions/sessions/record"
)

// refPart is the part's state as it was kept before the compact form: maps, full times and
// cloned strings. The differential test feeds the same requests to both and compares the
// records byte for byte; the memory benchmark sets both side by side.
type refPart struct {
	firstSeen, lastSeen time.Time
	requests            int
	key                 record.Key
	user, role          string
	userAt, roleAt      time.Time
	ips, userAgents     []string
	methods, statuses   map[string]int
	flows               [8]int
	malicious           int
	bytesIn, bytesOut   int64
}

func newRefPart(h *hit) *refPart {
	return &refPart{
		firstSeen: h.t,
		lastSeen:  h.t,
		key:       h.key,
		methods:   make(map[string]int, 2),
		statuses:  make(map[string]int, 2),
	}
}

func (p *refPart) add(h *hit) {
	p.requests++
	if h.t.Before(p.firstSeen) {
		p.firstSeen = h.t
	}
	if h.t.After(p.lastSeen) {
		p.lastSeen = h.t
	}
	if h.user != "" && !h.t.Before(p.userAt) {
		if h.user != p.user {
			p.user = strings.Clone(h.user)
		}
		p.userAt = h.t
	}
	if h.role != "" && !h.t.Before(p.roleAt) {
		if h.role != p.role {
			p.role = strings.Clone(h.role)
		}
		p.roleAt = h.t
	}
	for m, i := h.flows, 0; m != 0; m, i = m>>1, i+1 {
		if m&1 != 0 {
			p.flows[i]++
		}
	}
	p.ips = refAddDistinct(p.ips, h.ip)
	p.userAgents = refAddDistinct(p.userAgents, h.userAgent)
	refCount(p.methods, h.method)
	refCount(p.statuses, statusText(h.status))
	if h.malicious {
		p.malicious++
	}
	p.bytesIn += h.bytesIn
	p.bytesOut += h.bytesOut
}

func refAddDistinct(list []string, v string) []string {
	if v == "" || len(list) >= record.MaxDistinct {
		return list
	}
	for _, s := range list {
		if s == v {
			return list
		}
	}
	return append(list, strings.Clone(v))
}

func refCount(m map[string]int, k string) {
	if _, ok := m[k]; ok {
		m[k]++
		return
	}
	if len(m) >= record.MaxDistinct {
		m[otherBucket]++
		return
	}
	m[strings.Clone(k)] = 1
}

func (p *refPart) sessionRecord(session, name string, final bool, reason string) *record.Session {
	var flows map[string]int
	for i, n := range p.flows {
		if n == 0 || i >= len(flowNames) {
			continue
		}
		if flows == nil {
			flows = make(map[string]int, 2)
		}
		flows[flowNames[i]] = n
	}
	return &record.Session{
		Kind:       record.KindSession,
		Session:    session,
		Part:       name,
		FirstSeen:  record.At(p.firstSeen),
		LastSeen:   record.At(p.lastSeen),
		Requests:   p.requests,
		Key:        p.key,
		User:       p.user,
		Role:       p.role,
		IPs:        refClone(p.ips),
		UserAgents: refClone(p.userAgents),
		Methods:    refCloneMap(p.methods),
		Statuses:   refCloneMap(p.statuses),
		Flows:      flows,
		Malicious:  p.malicious,
		BytesIn:    p.bytesIn,
		BytesOut:   p.bytesOut,
		Final:      final,
		EndReason:  reason,
	}
}

func refClone(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return append([]string(nil), s...)
}

func refCloneMap(m map[string]int) map[string]int {
	if len(m) == 0 {
		return nil
	}
	c := make(map[string]int, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}
