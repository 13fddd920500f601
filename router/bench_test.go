package router

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/herald-run/herald/internal/testdb"
	"github.com/herald-run/herald/store"
	"github.com/herald-run/herald/store/postgres"
	"github.com/herald-run/herald/waits"
)

var benchWaits = flag.String("bench-waits", "10000,100000,1000000", "pending wait counts BenchmarkMatchWaits loads into Postgres")

// BenchmarkMatchWaits measures the router's wait matching as it processes
// the batches it claims: events keyed to pending waits in Postgres, one
// CandidateWaits lookup per batch, the residual check in Go. It reports
// microseconds per event for batches of 100 and for a lone event, with
// equality keys only and with a non-indexable clause added to every wait,
// and prints them as `bench:` lines for make bench.
func BenchmarkMatchWaits(b *testing.B) {
	for _, f := range strings.Split(*benchWaits, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 100 {
			b.Fatalf("-bench-waits: %q is not a number of waits >= 100", f)
		}
		ctx := context.Background()
		d, err := postgres.Open(ctx, testdb.Schema(b))
		if err != nil {
			b.Fatal(err)
		}
		if err := d.Migrate(ctx); err != nil {
			b.Fatal(err)
		}
		if err := postgres.LoadWaitsForBench(ctx, d.Pool(), n, "bench/paid"); err != nil {
			b.Fatal(err)
		}
		disp := &Dispatcher{cfg: Config{Metrics: NewMetrics(nil)}}
		if disp.waits, err = waits.NewMatcher(0); err != nil {
			b.Fatal(err)
		}
		for _, residual := range []bool{false, true} {
			// Equality key only, or a clause no index can serve added to every
			// wait and evaluated on every candidate.
			expr := ""
			if residual {
				expr = "async.data.amount >= 0 || async.data.vip == true"
			}
			if _, err := d.Pool().Exec(ctx, `UPDATE waits SET expr = $1`, expr); err != nil {
				b.Fatal(err)
			}
			if _, err := d.Pool().Exec(ctx, `VACUUM ANALYZE waits`); err != nil {
				b.Fatal(err)
			}
			for _, batch := range []int{100, 1} {
				name := fmt.Sprintf("waits=%d/batch=%d/residual=%v", n, batch, residual)
				b.Run(name, func(b *testing.B) {
					per, claim := benchMatch(b, d, disp, n, batch)
					b.ReportMetric(per, "us/event")
					b.ReportMetric(claim, "claim-us/event")
					fmt.Printf("bench: match_waits_%d_batch%d_residual_%v %.2f us/event\n", n, batch, residual, per)
					fmt.Printf("bench: claim_with_match_waits_%d_batch%d_residual_%v %.2f us/event (the whole claim: statement, matching, commit)\n", n, batch, residual, claim)
				})
			}
		}
		d.Close()
	}
}

// benchMatch runs b.N claims of batch events, each keyed to a random pending
// wait, and returns the matching time per event in microseconds, and the
// whole claim's (the claim statement, which also reads the names' wait
// paths, the matching and the commit).
func benchMatch(b *testing.B, d *postgres.Driver, disp *Dispatcher, n, batch int) (match, claim float64) {
	ctx := context.Background()
	var matching, claiming time.Duration
	matched := 0
	for b.Loop() {
		b.StopTimer()
		events := make([]store.Event, batch)
		now := time.Now().UTC()
		for i := range events {
			key := postgres.BenchWaitKey("bench/paid", rand.IntN(n))
			events[i] = store.Event{ID: ulid.Make().String(), Fresh: true, Name: "bench/paid",
				Data: json.RawMessage(`{"userId":` + key.MatchValue + `,"amount":5}`), TS: now.UnixMilli(), ReceivedAt: now}
		}
		if _, err := d.InsertEvents(ctx, events, now.Add(-time.Hour)); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		claimStart := time.Now()
		_, err := d.ClaimEvents(ctx, batch, func(ctx context.Context, tx store.ClaimTx, claimed []store.Event) (store.Claim, error) {
			start := time.Now()
			found, err := disp.matchWaits(ctx, tx, claimed, newActivations(claimed))
			matching += time.Since(start)
			matched += len(found)
			ids := make([]string, len(claimed))
			for i := range claimed {
				ids[i] = claimed[i].ID
			}
			// Dispatch the events but resolve nothing, so every wait stays pending.
			return store.Claim{Dispatched: ids}, err
		})
		claiming += time.Since(claimStart)
		if err != nil {
			b.Fatal(err)
		}
	}
	if matched == 0 {
		b.Fatal("no event matched a wait: the benchmark measures nothing")
	}
	per := float64(b.N * batch)
	return float64(matching.Microseconds()) / per, float64(claiming.Microseconds()) / per
}
