package store

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"github.com/apisessions/apisessions/sessions/record"
)

// Bounds of a part's timeline and route transitions, whatever the number of its requests.
const (
	// maxTimelineBuckets is the most buckets a timeline divides a part into.
	maxTimelineBuckets = 120
	// maxMarks is the most requests a timeline lists one by one; a part with more is shown by
	// its buckets alone.
	maxMarks = 500
	// maxTransitions is the most route transitions a part view lists, the most frequent.
	maxTransitions = 50
	// maxTransitionKeys bounds the distinct transitions counted; once reached, transitions
	// between routes not yet met are counted in Transitions.Untracked.
	maxTransitionKeys = 4096
)

// bucketSteps are the widths a timeline's buckets may take, so that their edges fall on
// round times; a part longer than maxTimelineBuckets of the widest uses a multiple of it.
var bucketSteps = []time.Duration{
	time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour,
}

// Timeline is when a part's requests came: each request (when there are at most maxMarks),
// requests by bucket of time with their status classes and malicious ones, and the rate.
type Timeline struct {
	// From and To are the times of the part's first and last requests.
	From record.Time `json:"from"`
	To   record.Time `json:"to"`
	// BucketMS is the width of a bucket; bucket i begins at From + i×BucketMS.
	BucketMS int64    `json:"bucket_ms"`
	Buckets  []Bucket `json:"buckets"`
	// Marks lists every request in time order, or is absent when the part has more than
	// maxMarks.
	Marks []Mark `json:"marks,omitempty"`
	// PerMinute is the mean rate: requests over the part's span in minutes, a span shorter
	// than a minute counting as one. PeakPerMinute is the most requests within one minute,
	// minutes counted from From.
	PerMinute     float64 `json:"per_minute"`
	PeakPerMinute int     `json:"peak_per_minute"`
}

// Bucket counts the requests of one interval of a timeline.
type Bucket struct {
	Requests  int `json:"requests"`
	Malicious int `json:"malicious"`
	// Classes counts requests by status class: index 0 for no response (and codes outside
	// 100..599), 1 to 5 for 1xx to 5xx.
	Classes [6]int `json:"classes"`
}

// Mark is one request on a timeline.
type Mark struct {
	// At is the request's time in milliseconds after From.
	At        int64  `json:"at"`
	Status    int    `json:"status"`
	Malicious bool   `json:"malicious,omitempty"`
	Route     string `json:"route"`
}

// Transition is how often a request to route To followed one to route From.
type Transition struct {
	From  string `json:"from"`
	To    string `json:"to"`
	Count int    `json:"count"`
}

// Transitions are the route-to-route steps between consecutive requests of a part.
type Transitions struct {
	// Total is the number of steps: the part's requests but one.
	Total int `json:"total"`
	// Top lists the most frequent steps, most frequent first (then by routes).
	Top []Transition `json:"top"`
	// More is how many distinct steps Top leaves out, and MoreCount how many steps they make
	// together (Untracked included).
	More      int `json:"more"`
	MoreCount int `json:"more_count"`
	// Untracked counts the steps not told apart once maxTransitionKeys distinct ones were met.
	Untracked int `json:"untracked,omitempty"`
}

// timelineBuilder gathers a part's timeline and transitions from its requests in time order.
type timelineBuilder struct {
	tl      *Timeline
	tr      *Transitions
	first   int64
	n       int
	minute  int64
	inMin   int
	prev    string
	steps   map[[2]string]int
	marksOK bool
}

// newTimeline prepares the timeline of a part whose requests lie in [first, last] (Unix ms)
// and which has rows of them.
func newTimeline(first, last int64, rows int) *timelineBuilder {
	span := max(last-first, 0)
	width := bucketSteps[len(bucketSteps)-1].Milliseconds()
	for _, s := range bucketSteps {
		if w := s.Milliseconds(); span/w < maxTimelineBuckets {
			width = w
			break
		}
	}
	if span/width >= maxTimelineBuckets {
		width *= span/(width*maxTimelineBuckets) + 1
	}
	n := int(span/width) + 1
	tl := &Timeline{
		From:     record.At(time.UnixMilli(first).UTC()),
		To:       record.At(time.UnixMilli(last).UTC()),
		BucketMS: width,
		Buckets:  make([]Bucket, n),
	}
	b := &timelineBuilder{tl: tl, tr: &Transitions{Top: []Transition{}}, first: first, steps: map[[2]string]int{},
		marksOK: rows <= maxMarks, minute: -1}
	if b.marksOK {
		tl.Marks = make([]Mark, 0, rows)
	}
	return b
}

// add counts one request; requests come in time order.
func (b *timelineBuilder) add(t int64, status int, malicious bool, route string) {
	at := max(t-b.first, 0)
	i := min(int(at/b.tl.BucketMS), len(b.tl.Buckets)-1)
	bk := &b.tl.Buckets[i]
	bk.Requests++
	if malicious {
		bk.Malicious++
	}
	class := 0
	if status >= 100 && status <= 599 {
		class = status / 100
	}
	bk.Classes[class]++
	route = cut(route)
	if b.marksOK {
		if len(b.tl.Marks) < maxMarks {
			b.tl.Marks = append(b.tl.Marks, Mark{At: at, Status: status, Malicious: malicious, Route: route})
		} else {
			// More rows than the part counted (written meanwhile): buckets alone.
			b.marksOK, b.tl.Marks = false, nil
		}
	}
	if m := at / 60000; m != b.minute {
		b.minute, b.inMin = m, 0
	}
	b.inMin++
	b.tl.PeakPerMinute = max(b.tl.PeakPerMinute, b.inMin)
	if b.n > 0 {
		b.tr.Total++
		k := [2]string{b.prev, route}
		if _, ok := b.steps[k]; ok || len(b.steps) < maxTransitionKeys {
			b.steps[k]++
		} else {
			b.tr.Untracked++
		}
	}
	b.prev = route
	b.n++
}

// done completes the rate and ranks the transitions.
func (b *timelineBuilder) done() (*Timeline, *Transitions) {
	span := float64(b.tl.To.Sub(b.tl.From.Time).Milliseconds()) / 60000
	b.tl.PerMinute = float64(b.n) / max(span, 1)
	all := make([]Transition, 0, len(b.steps))
	for k, n := range b.steps {
		all = append(all, Transition{From: k[0], To: k[1], Count: n})
	}
	slices.SortFunc(all, func(x, y Transition) int {
		return cmp.Or(cmp.Compare(y.Count, x.Count), strings.Compare(x.From, y.From), strings.Compare(x.To, y.To))
	})
	top := all[:min(len(all), maxTransitions)]
	b.tr.Top = append(b.tr.Top, top...)
	b.tr.More = len(all) - len(top)
	b.tr.MoreCount = b.tr.Untracked
	for _, t := range all[len(top):] {
		b.tr.MoreCount += t.Count
	}
	return b.tl, b.tr
}
