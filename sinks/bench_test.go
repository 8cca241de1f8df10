package sinks_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/apisessions/apisessions/internal/testutil"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sinks"
)

// BenchmarkEmit measures the stream path's cost of handing a record to the sinks, from one
// goroutine and from many at once. Records a full queue drops are part of the measure (Emit
// costs about the same either way); %dropped says how many the workers could not keep up with.
func BenchmarkEmit(b *testing.B) {
	for _, outputs := range []int{1, 2} {
		for _, parallel := range []bool{false, true} {
			name := "outputs=" + strconv.Itoa(outputs) + "/serial"
			if parallel {
				name = "outputs=" + strconv.Itoa(outputs) + "/parallel"
			}
			b.Run(name, func(b *testing.B) {
				outs := make([]sinks.Output, outputs)
				for i := range outs {
					outs[i] = sinks.Output{Name: "discard" + strconv.Itoa(i), Sink: testutil.DiscardSink{}}
				}
				p := sinks.NewPipeline(nil, outs)
				rec := record.Record(&record.Request{Kind: record.KindRequest, Session: "s_00000000000000000000"})
				b.ReportAllocs()
				if parallel {
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							p.Emit(rec)
						}
					})
				} else {
					for b.Loop() {
						p.Emit(rec)
					}
				}
				b.StopTimer()
				st := p.Stats()[0]
				if total := st.Accepted + st.Dropped; total > 0 {
					b.ReportMetric(float64(st.Dropped)/float64(total)*100, "%dropped")
				}
				if err := p.Shutdown(context.Background()); err != nil {
					b.Fatal(err)
				}
			})
		}
	}
}
