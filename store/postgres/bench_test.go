package postgres

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herald-run/herald/internal/testdb"
	"github.com/herald-run/herald/store"
)

var benchWaits = flag.String("bench-waits", "10000,100000,1000000",
	"comma-separated numbers of pending waits BenchmarkCandidateWaits loads, one sub-benchmark each")

// benchKeysPerOp is the router's batch: one candidate lookup for 100 events.
const benchKeysPerOp = 100

// BenchmarkCandidateWaits measures the router's candidate lookup with many
// waits pending: per op, one CandidateWaits of 100 keys in a transaction like
// a claim's. In "hit" every key matches one wait (the costly case: each row is
// returned and locked); in "miss" none does (the common case: most events
// resolve nothing). Loading happens once per size, untimed.
//
//	go test -run '^$' -bench CandidateWaits -bench-waits 10000,100000 ./store/postgres/
func BenchmarkCandidateWaits(b *testing.B) {
	for _, f := range strings.Split(*benchWaits, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < benchKeysPerOp {
			b.Fatalf("-bench-waits: %q is not a number of waits >= %d", f, benchKeysPerOp)
		}
		ctx := context.Background()
		d, err := Open(ctx, testdb.Schema(b))
		if err != nil {
			b.Fatal(err)
		}
		if err := d.Migrate(ctx); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := LoadWaitsForBench(ctx, d.Pool(), n, "bench/paid"); err != nil {
			b.Fatal(err)
		}
		b.Logf("loaded %d waits in %v", n, time.Since(start).Round(time.Millisecond))
		start = time.Now()
		if _, _, err := d.WaitStats(ctx); err != nil {
			b.Fatal(err)
		}
		b.Logf("WaitStats over %d waits: %v", n, time.Since(start).Round(time.Microsecond))
		b.Run(fmt.Sprintf("waits=%d/hit", n), func(b *testing.B) { benchCandidateWaits(b, d, n, true) })
		b.Run(fmt.Sprintf("waits=%d/miss", n), func(b *testing.B) { benchCandidateWaits(b, d, n, false) })
		d.Close()
	}
}

func benchCandidateWaits(b *testing.B, d *Driver, n int, hit bool) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	names := []string{"bench/paid"}
	keys := make([]store.WaitKey, benchKeysPerOp)
	b.ResetTimer()
	b.StopTimer()
	for range b.N {
		for i := range keys {
			keys[i] = BenchWaitKey("bench/paid", rng.IntN(n))
			if !hit {
				keys[i].MatchValue = keys[i].MatchValue[:1] + "x" + keys[i].MatchValue[1:] // "xu_42": no such wait
			}
		}
		tx, err := d.pool.Begin(ctx)
		if err != nil {
			b.Fatal(err)
		}
		ctl := &claimTx{tx: tx, candidates: map[string]bool{}}
		b.StartTimer()
		got, err := ctl.CandidateWaits(ctx, names, keys)
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		if hit == (len(got) == 0) {
			b.Fatalf("%d candidates for %d keys (hit: %v)", len(got), len(keys), hit)
		}
		if err := tx.Rollback(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/1e3/float64(b.N*benchKeysPerOp), "us/event")
}
