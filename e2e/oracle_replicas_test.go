package e2e

import (
	"fmt"
	"math/rand/v2"
	"net/url"
	"testing"

	"github.com/apisessions/apisessions/internal/testutil"
)

// sharedSides returns the store sink and state sections of replicas that share a PostgreSQL
// database and a Redis key prefix of the test's own, reached through pg and rd when they are
// not nil (proxies the test can cut).
func sharedSides(t *testing.T, pg, rd *testutil.CutProxy) (sink, state string) {
	t.Helper()
	return newShared(t).sides(t, pg, rd)
}

// shared is a PostgreSQL database and a Redis key prefix of the test's own.
type shared struct {
	dsn, redisAddr, prefix string
}

func newShared(t *testing.T) shared {
	t.Helper()
	dsn := testutil.PostgresDB(t)
	addr, prefix := testutil.RedisPrefix(t)
	return shared{dsn: dsn, redisAddr: addr, prefix: prefix}
}

// sides returns the store sink and state sections of a replica of s, reaching PostgreSQL
// through pg and Redis through rd when they are not nil. The Redis timeout is a second: the
// tests are about a Redis that answers or does not, on a machine whose two cores up to seven
// servers share; past the timeout a replica decides alone, which docs/scale-out.md describes.
func (s shared) sides(t *testing.T, pg, rd *testutil.CutProxy) (sink, state string) {
	t.Helper()
	dsn, addr := s.dsn, s.redisAddr
	if pg != nil {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatal(err)
		}
		u.Host = pg.Addr
		dsn = u.String()
	}
	if rd != nil {
		addr = rd.Addr
	}
	sink = fmt.Sprintf("  - type: store\n    driver: postgres\n    dsn: %q\n", dsn)
	state = fmt.Sprintf("state:\n  redis:\n    address: %q\n    key_prefix: %q\n    timeout: 1s\n", addr, s.prefix)
	return sink, state
}

// TestOracleReplicas is the oracle: the generated mix sent round-robin, and then at random,
// over three replicas that share PostgreSQL and Redis is stored exactly as one replica with
// SQLite stores it — every part, its session record, its stats and its requests — and every
// replica's API shows it alike.
func TestOracleReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("drives seven servers with 10,000 requests each way; make test-slow runs it")
	}
	waves := oracleTraffic(11, 500, 10000)
	total := 0
	for _, w := range waves {
		total += len(w)
	}
	key := oracleKey(t)
	one := oracleStart(t, 1, key, "  - type: store\n", "")
	oracleSend(t, waves, one, func(int) int { return 0 })
	oracleStored(t, one[0].proc.httpAddr, total)
	want := oracleStore(t, one[0].proc.httpAddr)
	t.Logf("one replica with SQLite: %d requests in %d parts", total, len(want))

	rng := rand.New(rand.NewPCG(3, 5))
	for _, tc := range []struct {
		name string
		pick func(i int) int
	}{
		{"round-robin", func(i int) int { return i }},
		{"at random", func(int) int { return rng.IntN(3) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink, state := sharedSides(t, nil, nil)
			three := oracleStart(t, 3, key, sink, state)
			oracleSend(t, waves, three, tc.pick)
			oracleStored(t, three[0].proc.httpAddr, total)
			for _, r := range three {
				oracleCompare(t, want, oracleStore(t, r.proc.httpAddr))
			}
		})
	}
}
