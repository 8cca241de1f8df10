package store

import (
	"context"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/apisessions/apisessions/internal/testutil"
	"github.com/apisessions/apisessions/sessions/record"
)

// BenchmarkIngestPostgres measures Write into one PostgreSQL database from 1, 2 and 3 writers
// at once, as replicas write: every writer brings requests of the same 50 live parts a batch
// (the known_parts shape of BenchmarkIngest, 500 requests a batch), so their upserts meet on
// the same part rows. Each iteration is one batch per writer; requests/s is the sum.
func BenchmarkIngestPostgres(b *testing.B) {
	for _, writers := range []int{1, 2, 3} {
		b.Run("writers="+strconv.Itoa(writers), func(b *testing.B) { benchIngestPostgres(b, writers) })
	}
}

func benchIngestPostgres(b *testing.B, writers int) {
	dsn := testutil.PostgresDB(b)
	const (
		nb      = 40
		parts   = 50
		perPart = DefaultBatch / parts
	)
	// batches[w][i] is writer w's i-th batch: requests of parts i*parts … i*parts+49.
	batches := make([][][]record.Record, writers)
	for w := range writers {
		rng := rand.New(rand.NewPCG(uint64(w), 4))
		batches[w] = make([][]record.Record, nb)
		for i := range nb {
			for j := range parts * perPart {
				at := benchStart.Add(time.Duration(i*DefaultBatch+j)*time.Millisecond + time.Duration(w)*time.Microsecond)
				batches[w][i] = append(batches[w][i], genRequest(rng, i*parts+j%parts, j/parts, at))
			}
		}
	}
	stores := make([]*Store, writers)
	for w := range stores {
		s, err := Open(Options{Driver: DriverPostgres, DSN: dsn, NoRetentionJob: true})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close(context.Background())
		stores[w] = s
	}
	ctx := context.Background()
	n := 0
	b.ResetTimer()
	for b.Loop() {
		round := make([][]record.Record, writers)
		for w := range round {
			round[w] = batches[w][n%nb]
		}
		if n >= nb {
			b.StopTimer()
			for w := range round {
				round[w] = laterRound(round[w], n/nb, nb)
			}
			b.StartTimer()
		}
		var wg sync.WaitGroup
		for w, s := range stores {
			wg.Go(func() {
				if err := s.Write(ctx, round[w]); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
		n++
	}
	b.ReportMetric(float64(n*writers*DefaultBatch)/b.Elapsed().Seconds(), "requests/s")
}
