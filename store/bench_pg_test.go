package store

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
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
//
// Two shapes of traffic:
//   - writers=N: the parts of a batch are new in the first 40 batches (10 requests each, every
//     value of the part new), and come back every 40 batches with the same values; each
//     request's method, route and status are drawn apart, so a part meets up to 128 shapes.
//   - steady/writers=N: the traffic of a live API: 50 parts at once, each for 40 batches (400
//     requests), one or two of them replaced by a new part each batch; each route is called with
//     its own method, so a part's new values (routes, shapes, path directories) come mostly
//     in its first batches.
func BenchmarkIngestPostgres(b *testing.B) {
	for _, writers := range []int{1, 2, 3} {
		b.Run("writers="+strconv.Itoa(writers), func(b *testing.B) { benchIngestPostgres(b, writers) })
	}
	for _, writers := range []int{1, 2, 3} {
		b.Run("steady/writers="+strconv.Itoa(writers), func(b *testing.B) { benchIngestSteady(b, writers) })
	}
}

// steadyMethods is the method each route is called with in the steady shape.
var steadyMethods = map[string]string{"/api/items": "GET", "/api/items/{id}": "GET", "/api/cart": "POST",
	"/api/checkout": "POST", "/api/login": "POST", "/api/orders/{id}": "GET", "/api/search": "GET", "/": "GET"}

// steadyBatch is writer w's n-th batch of the steady shape: slot j of 50 holds a part for 40
// batches, the slots' parts starting at staggered batches, so that parts end and begin in
// every batch.
func steadyBatch(rng *rand.Rand, w, n int) []record.Record {
	const (
		life    = 40
		slots   = 50
		perPart = DefaultBatch / slots
	)
	batch := make([]record.Record, 0, DefaultBatch)
	for k := range perPart {
		for j := range slots {
			age := n + j*life/slots
			p := j + slots*(age/life)
			i := (age%life)*perPart + k
			at := benchStart.Add(time.Duration(n*DefaultBatch+k*slots+j)*time.Millisecond + time.Duration(w)*time.Microsecond)
			r := genRequest(rng, p, i, at)
			r.Method = steadyMethods[r.Route]
			batch = append(batch, r)
		}
	}
	return batch
}

// benchIngestSteady is benchIngestPostgres with the steady shape; batches are built while the
// timer is stopped.
func benchIngestSteady(b *testing.B, writers int) {
	rngs := make([]*rand.Rand, writers)
	for w := range rngs {
		rngs[w] = rand.New(rand.NewPCG(uint64(w), 9))
	}
	round := make([][]record.Record, writers)
	ingestRounds(b, writers, func(n int) [][]record.Record {
		for w := range round {
			round[w] = steadyBatch(rngs[w], w, n)
		}
		return round
	})
}

func benchIngestPostgres(b *testing.B, writers int) {
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
	round := make([][]record.Record, writers)
	ingestRounds(b, writers, func(n int) [][]record.Record {
		for w := range round {
			round[w] = batches[w][n%nb]
			if n >= nb {
				round[w] = laterRound(round[w], n/nb, nb)
			}
		}
		return round
	})
}

// ingestRounds opens one store per writer on a database of the test's own and, per
// iteration, has every writer write its batch of round(n) at once (round runs with the timer
// stopped); it reports requests/s and the CPU time of the server's backends per batch, which
// the machine's other work moves far less than it moves wall time.
func ingestRounds(b *testing.B, writers int, round func(n int) [][]record.Record) {
	dsn := testutil.PostgresDB(b)
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
	backends := serverBackends(b, stores[0])
	cpu0 := cpuTime(backends)
	n := 0
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		batches := round(n)
		b.StartTimer()
		var wg sync.WaitGroup
		for w, s := range stores {
			wg.Go(func() {
				if err := s.Write(ctx, batches[w]); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
		n++
	}
	b.ReportMetric(float64(n*writers*DefaultBatch)/b.Elapsed().Seconds(), "requests/s")
	if cpu := cpuTime(backends) - cpu0; cpu > 0 {
		b.ReportMetric(float64(cpu.Microseconds())/1000/float64(n*writers), "server-ms/batch")
	}
}

// serverBackends lists the process ids of the server's backends connected to the database
// of s.
func serverBackends(b *testing.B, s *Store) []int {
	rows, err := s.rdb.Query(`SELECT pid FROM pg_stat_activity WHERE datname = current_database()`)
	if err != nil {
		b.Fatal(err)
	}
	defer rows.Close()
	var pids []int
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			b.Fatal(err)
		}
		pids = append(pids, pid)
	}
	return pids
}

// cpuTime sums the user and system CPU time of processes; 0 when /proc does not show them
// (a server on another machine).
func cpuTime(pids []int) time.Duration {
	var ticks int64
	for _, pid := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return 0
		}
		// The command name, in parentheses, may hold spaces: fields count from its end.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) < 13 {
			return 0
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		sy, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += u + sy
	}
	return time.Duration(ticks) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}
