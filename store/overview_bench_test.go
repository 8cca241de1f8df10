package store

import (
	"context"
	"testing"
	"time"
)

// BenchmarkOverview measures the overview of the last hour, day and week of the query
// benchmarks' database (openQueryDB), ending in its middle, and reports the requests of the
// period it summarised.
func BenchmarkOverview(b *testing.B) {
	s, parts := openQueryDB(b)
	mid := benchStart.Add(time.Duration(parts/2) * 3 * time.Second)
	for _, c := range []struct {
		name   string
		period time.Duration
	}{
		{"hour", time.Hour},
		{"day", 24 * time.Hour},
		{"week", 7 * 24 * time.Hour},
	} {
		b.Run(c.name, func(b *testing.B) {
			var o *Overview
			var err error
			for b.Loop() {
				o, err = s.Overview(context.Background(), OverviewQuery{From: mid.Add(-c.period), To: mid})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(o.Totals.Requests), "requests")
		})
	}
}
