package store

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// fewParts is the candidate count below which the remaining facets are tested per part
// rather than probed.
const fewParts = 200

// checkParts is the most candidates a list checks against their own request rows without
// counting as a scan: a check reads a part's rows (tens of microseconds for ten requests), so
// that probeParts of them could take longer than a list the indexes answer may.
const checkParts = 500

// facet is one list condition answered by part_values: a part has a value of kind that equals
// one of eq or lies in one of the ranges.
type facet struct {
	kind   int
	eq     []string
	ranges [][2]string // [lo, hi); hi "" means unbounded
	// exact is true when a part having the value means it has a request that matches the
	// condition; otherwise the facet only narrows the parts and their requests decide.
	exact bool
}

func exactFacet(kind int, v string) facet {
	// A stored value of the full length may be a longer one cut.
	return facet{kind: kind, eq: []string{cut(v)}, exact: len(v) < maxValueLen}
}

// sql writes the facet's value test over alias v.
func (fc *facet) sql() (string, []any) {
	var alts []string
	var args []any
	for _, v := range fc.eq {
		alts = append(alts, "v.value = ?")
		args = append(args, v)
	}
	for _, r := range fc.ranges {
		if r[1] == "" {
			alts = append(alts, "v.value >= ?")
			args = append(args, r[0])
		} else {
			alts = append(alts, "(v.value >= ? AND v.value < ?)")
			args = append(args, r[0], r[1])
		}
	}
	return "(" + strings.Join(alts, " OR ") + ")", args
}

// facets lists the filter's conditions that part_values can answer. exact is true when they
// alone decide which parts match: a single exact facet and no other request condition.
// Method and route (with or without a status) together become one shape facet, which is exact
// and as selective as the combination. The facets come in the order they are probed: the
// usually selective kinds first.
func (f *Filter) facets() (out []facet, exact bool) {
	pre := shapePrefix(f.Method, f.Route)
	shape := f.Method != "" && f.Route != "" && shapeable(f.Method, f.Route)
	if shape {
		switch {
		case !f.Status.Set:
			hi, _ := prefixEnd(pre)
			out = append(out, facet{kind: kindShape, ranges: [][2]string{{pre, hi}}, exact: true})
		case f.Status.Class > 0:
			out = append(out, facet{kind: kindShape, exact: true, ranges: [][2]string{{
				pre + statusValue(f.Status.Class*100), pre + statusValue(f.Status.Class*100+99) + "\x00"}}})
		default:
			out = append(out, exactFacet(kindShape, shapeValue(f.Method, f.Status.Code, f.Route)))
		}
	}
	if f.User != "" {
		out = append(out, exactFacet(kindUser, f.User))
	}
	if f.IP != "" {
		out = append(out, exactFacet(kindIP, f.IP))
	}
	if f.Malicious {
		out = append(out, exactFacet(kindMalicious, "1"))
	}
	if f.Flow != "" {
		out = append(out, exactFacet(kindFlow, f.Flow))
	}
	if f.Role != "" {
		out = append(out, exactFacet(kindRole, f.Role))
	}
	if f.Status.Set && !shape {
		if f.Status.Class > 0 {
			c := statusValue(f.Status.Class * 100)
			out = append(out, facet{kind: kindStatus, ranges: [][2]string{{c, statusValue(f.Status.Class*100+99) + "\x00"}}, exact: true})
		} else {
			out = append(out, exactFacet(kindStatus, statusValue(f.Status.Code)))
		}
	}
	if f.Route != "" && !shape {
		out = append(out, exactFacet(kindRoute, f.Route))
	}
	if f.JA4 != "" {
		out = append(out, exactFacet(kindJA4, f.JA4))
	}
	if f.JA3 != "" {
		out = append(out, exactFacet(kindJA3, f.JA3))
	}
	if f.UserAgent != "" {
		out = append(out, exactFacet(kindUserAgent, f.UserAgent))
	}
	if f.Host != "" {
		out = append(out, exactFacet(kindHost, f.Host))
	}
	if f.Method != "" && !shape {
		out = append(out, exactFacet(kindMethod, f.Method))
	}
	if f.Path != "" {
		// A path p begins with the filter P when either its directory (pathDir, as stored)
		// begins with P, or P is longer and then has the same directory as p.
		fc := facet{kind: kindPathDir, eq: []string{cut(pathDir(f.Path))}}
		lo := cut(f.Path)
		hi, _ := prefixEnd(lo)
		fc.ranges = [][2]string{{lo, hi}}
		out = append(out, fc)
	}
	others := f.RequestID != "" || !f.From.IsZero() || !f.To.IsZero()
	exact = len(out) == 1 && out[0].exact && !others
	return out, exact
}

// candidates is the set of parts a list query may return, while it is known completely: the
// intersection of the complete lists of part ids probed so far.
type candidates struct {
	ids []int64
	// complete is true once one list was complete; until then every part is a candidate.
	complete bool
}

// intersect keeps the candidates that are in ids, a complete list.
func (c *candidates) intersect(ids []int64) {
	if !c.complete {
		c.ids, c.complete = ids, true
		return
	}
	slices.Sort(ids)
	c.ids = slices.DeleteFunc(c.ids, func(id int64) bool {
		_, found := slices.BinarySearch(ids, id)
		return !found
	})
}

// none reports whether no part can match.
func (c *candidates) none() bool { return c.complete && len(c.ids) == 0 }

// listConds adds to w (over parts p) the conditions that select the parts with a request that
// matches f, and returns the candidates: complete when a probe listed them, and then possibly
// none; checks is true when the conditions check each part's request rows.
//
// Each facet is first probed through part_values (kind, value, part_id): a selective value
// lists its parts completely (at most s.probe of them), and the intersection of the complete
// lists is the candidate set. Facets too common to list are tested per part instead, as the
// list walks parts newest first; a page of matches then comes within few parts, unless the
// combination is rare, and then nothing but the deadline bounds the walk. Unless the facets
// decide alone, each remaining part is checked against its own request rows, so that one
// request matches every condition at once. A time interval alone scans too: a part that spans
// the interval need not have a request inside it.
//
// A user or role too common to list is also pinned: besides being tested per part, it lets
// the walk go through the parts that have the value (pinned), so that a page of them costs a
// page, not a walk of every part in between.
func (s *Store) listConds(ctx context.Context, f *Filter, w *sqlWhere) (c candidates, checks bool, pin *pinned, err error) {
	facets, exact := f.facets()
	if f.RequestID != "" {
		ids, err := s.probeIDs(ctx, `SELECT DISTINCT part_id FROM requests WHERE request_id <> '' AND request_id = ? LIMIT ?`, f.RequestID)
		if err != nil {
			return c, false, nil, err
		}
		if len(ids) <= s.probe {
			c.intersect(ids)
		}
	}
	var walk []facet
	for _, fc := range facets {
		if c.none() {
			return c, false, nil, nil
		}
		// A few candidates are cheaper to test one by one than another value to list.
		if c.complete && len(c.ids) <= fewParts {
			walk = append(walk, fc)
			continue
		}
		ids, ok, err := s.probeFacet(ctx, &fc)
		if err != nil {
			return c, false, nil, err
		}
		if !ok {
			walk = append(walk, fc)
			if pin == nil {
				pin = pinFacet(f, fc.kind)
			}
			continue
		}
		c.intersect(ids)
	}
	for _, fc := range walk {
		cond, args := fc.sql()
		w.add("EXISTS (SELECT 1 FROM part_values v WHERE v.part_id = p.id AND v.kind = ? AND "+cond+s.d.perRow+")",
			append([]any{fc.kind}, args...)...)
	}
	if !exact {
		rw := &sqlWhere{}
		f.where(rw, s.d, true)
		// A part's requests lie between its first and last seen: on PostgreSQL the bounds leave
		// out the day partitions that cannot hold them.
		w.add("EXISTS (SELECT 1 FROM requests r WHERE r.part_id = p.id AND r.time >= p.first_seen AND r.time <= p.last_seen AND "+
			rw.String()+s.d.perRow+")", rw.args...)
	}
	return c, !exact, pin, nil
}

// pinned is a condition on a part's own row that lists, through an index in list order, the
// parts having a user or role value: those whose latest value it is (col = value), and those
// whose requests have several (mixed has the bit), of which the walk's conditions keep the
// ones that have it. Its two walks together meet every part that has the value.
type pinned struct {
	col   string
	bit   int
	value string
}

// pinFacet is the pinned condition of a facet of kind, or nil for kinds other than user and
// role.
func pinFacet(f *Filter, kind int) *pinned {
	switch kind {
	case kindUser:
		return &pinned{col: `p."user"`, bit: mixedUser, value: f.User}
	case kindRole:
		return &pinned{col: "p.role", bit: mixedRole, value: f.Role}
	}
	return nil
}

// latest is the condition of the parts whose latest value is the pinned one. The literal
// "<> ”" lets both engines use the partial index (parts_user, parts_role).
func (pn *pinned) latest(w *sqlWhere) {
	w.add(pn.col+" <> '' AND "+pn.col+" = ?", pn.value)
}

// others is the condition of the parts with several values whose latest is another one; the
// literal mixed > 0 lets both engines walk the partial index parts_mixed.
func (pn *pinned) others(w *sqlWhere) {
	w.add("p.mixed > 0 AND (p.mixed & "+strconv.Itoa(pn.bit)+") <> 0 AND "+pn.col+" <> ?", pn.value)
}

// probeFacet lists the parts that have the facet's value, or reports ok false when more than
// s.probe have it.
func (s *Store) probeFacet(ctx context.Context, fc *facet) (ids []int64, ok bool, err error) {
	cond, args := fc.sql()
	q := "SELECT " + s.d.distinct + "v.part_id FROM part_values v WHERE v.kind = ? AND " + cond + " LIMIT ?"
	if len(fc.eq)+len(fc.ranges) > 1 {
		// One probe per alternative keeps each on the (kind, value) index.
		seen := map[int64]struct{}{}
		for _, v := range fc.eq {
			part, err := s.probeIDs(ctx, `SELECT v.part_id FROM part_values v WHERE v.kind = ? AND v.value = ? LIMIT ?`, fc.kind, v)
			if err != nil {
				return nil, false, err
			}
			for _, id := range part {
				seen[id] = struct{}{}
			}
		}
		for _, r := range fc.ranges {
			one := facet{kind: fc.kind, ranges: [][2]string{r}}
			c, a := one.sql()
			part, err := s.probeIDs(ctx, "SELECT "+s.d.distinct+"v.part_id FROM part_values v WHERE v.kind = ? AND "+c+" LIMIT ?",
				append([]any{fc.kind}, a...)...)
			if err != nil {
				return nil, false, err
			}
			for _, id := range part {
				seen[id] = struct{}{}
			}
		}
		if len(seen) > s.probe {
			return nil, false, nil
		}
		for id := range seen {
			ids = append(ids, id)
		}
		return ids, true, nil
	}
	ids, err = s.probeIDs(ctx, q, append([]any{fc.kind}, args...)...)
	if err != nil {
		return nil, false, err
	}
	if len(ids) > s.probe {
		return nil, false, nil
	}
	if s.d.distinct == "" {
		slices.Sort(ids)
		ids = slices.Compact(ids)
	}
	return ids, true, nil
}

// probeIDs runs a query of part ids with the limit s.probe+1 appended to args.
func (s *Store) probeIDs(ctx context.Context, q string, args ...any) ([]int64, error) {
	ids, err := s.queryIDs(ctx, q, append(args, s.probe+1)...)
	if err != nil {
		return nil, fmt.Errorf("store: list: %w", err)
	}
	return ids, nil
}

// queryIDs runs a bounded query of part ids (readBounded).
func (s *Store) queryIDs(ctx context.Context, q string, args ...any) ([]int64, error) {
	rows, err := s.readBounded(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}
