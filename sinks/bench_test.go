package sinks_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apisessions/apisessions/internal/testutil"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sinks"
	"github.com/apisessions/apisessions/sinks/spool"
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

// countSink counts the records it is given and says when a target is reached.
type countSink struct {
	n       atomic.Int64
	target  atomic.Int64
	reached chan struct{}
}

func (s *countSink) Write(_ context.Context, batch []record.Record) error {
	if n := s.n.Add(int64(len(batch))); n == s.target.Load() {
		s.reached <- struct{}{}
	}
	return nil
}

func (*countSink) Close(context.Context) error { return nil }

// BenchmarkDelivery measures a worker's path, queue to sink, for a sink that keeps up: each op
// emits 1,000 records and waits until the sink has them all. With a spool, records stay in
// memory as long as the sink keeps up, so both runs should cost about the same.
func BenchmarkDelivery(b *testing.B) {
	const perOp = 1000
	for _, withSpool := range []bool{false, true} {
		b.Run("spool="+strconv.FormatBool(withSpool), func(b *testing.B) {
			sk := &countSink{reached: make(chan struct{}, 1)}
			out := sinks.Output{Name: "count", Sink: sk, QueueSize: perOp, BatchSize: 100, FlushInterval: time.Hour}
			if withSpool {
				sp, _, err := spool.Open(b.TempDir(), spool.Options{MaxBytes: 64 << 20, NoSync: true})
				if err != nil {
					b.Fatal(err)
				}
				out.Spool = sp
			}
			p := sinks.NewPipeline(nil, []sinks.Output{out})
			rec := record.Record(&record.Request{Kind: record.KindRequest, Session: "s_00000000000000000000"})
			b.ReportAllocs()
			for b.Loop() {
				sk.target.Add(perOp)
				for range perOp {
					p.Emit(rec)
				}
				<-sk.reached
			}
			b.StopTimer()
			if st := p.Stats()[0]; st.Dropped != 0 {
				b.Errorf("stats = %+v, want nothing dropped", st)
			}
			if err := p.Shutdown(context.Background()); err != nil {
				b.Fatal(err)
			}
		})
	}
}
