package server

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/stretchr/testify/require"

	"github.com/herald-run/herald/internal/testdb"
	"github.com/herald-run/herald/internal/testlog"
	"github.com/herald-run/herald/store"
	"github.com/herald-run/herald/store/postgres"
	"github.com/herald-run/herald/store/sqlite"
)

func TestHousekeepingDefaults(t *testing.T) {
	t.Parallel()
	h, err := Housekeeping{}.withDefaults(5 * time.Second)
	require.NoError(t, err)
	require.Equal(t, Housekeeping{Interval: 15 * time.Second, Retention: 720 * time.Hour, PurgeBatch: 1000,
		PurgePause: 100 * time.Millisecond, JobScanInterval: 5 * time.Second}, h)

	_, err = Housekeeping{Retention: 47 * time.Hour}.withDefaults(time.Second)
	require.ErrorContains(t, err, "below the minimum of 48h0m0s")
	h, err = Housekeeping{Retention: 48 * time.Hour, JobScanInterval: time.Second}.withDefaults(5 * time.Second)
	require.NoError(t, err)
	require.Equal(t, 48*time.Hour, h.Retention)
	require.Equal(t, time.Second, h.JobScanInterval)
}

// openStores returns a fresh, migrated store of each driver.
func openStores(t *testing.T) map[string]store.Driver {
	t.Helper()
	ctx := context.Background()
	pg, err := postgres.Open(ctx, testdb.Schema(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = pg.Close() })
	lite, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "herald.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = lite.Close() })
	stores := map[string]store.Driver{"postgres": pg, "sqlite": lite}
	for _, st := range stores {
		require.NoError(t, st.Migrate(ctx))
	}
	return stores
}

// metrics returns what /metrics would serve from reg.
func metrics(reg *prometheus.Registry) string {
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

type lockedBuffer = testlog.Buffer

// A retention round purges batch after batch until nothing is due, counts
// what it purged in herald_purged_rows_total and logs one debug line.
func TestPurgeRound(t *testing.T) {
	t.Parallel()
	for name, st := range openStores(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			now := time.Now().UTC().Truncate(time.Millisecond)
			var events []store.Event
			for i := range 25 {
				events = append(events, store.Event{ID: fmt.Sprintf("old-%02d", i), Name: "h/x", Data: json.RawMessage(`{}`),
					ReceivedAt: now.Add(-60 * 24 * time.Hour)})
			}
			for i := range 3 {
				events = append(events, store.Event{ID: fmt.Sprintf("young-%d", i), Name: "h/x", Data: json.RawMessage(`{}`),
					ReceivedAt: now.Add(-29 * 24 * time.Hour)})
			}
			_, err := st.InsertEvents(ctx, events, now.Add(-90*24*time.Hour))
			require.NoError(t, err)
			_, err = st.ClaimEvents(ctx, 100, func(_ context.Context, _ store.ClaimTx, evs []store.Event) (store.Claim, error) {
				var c store.Claim
				for _, e := range evs {
					c.Dispatched = append(c.Dispatched, e.ID)
				}
				return c, nil
			})
			require.NoError(t, err)

			var logs lockedBuffer
			log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			cfg, err := Housekeeping{PurgeBatch: 10, PurgePause: time.Millisecond}.withDefaults(time.Second)
			require.NoError(t, err)
			reg := prometheus.NewRegistry()
			h := newHousekeeping(cfg, st, nil, reg, log)

			require.Equal(t, store.PurgeCounts{Events: 25}, h.purgeRound(ctx))
			require.Contains(t, metrics(reg), `herald_purged_rows_total{table="events"} 25`+"\n")
			require.Contains(t, logs.String(), "retention: purge round")
			require.Contains(t, logs.String(), "events=25")
			require.Contains(t, logs.String(), "batches=3", "10, 10, then 5: nothing more")
			for i := range 3 {
				_, err := st.GetEvent(ctx, fmt.Sprintf("young-%d", i))
				require.NoError(t, err, "younger than the retention")
			}
			require.Equal(t, store.PurgeCounts{}, h.purgeRound(ctx))

			// Every table has its series from the start.
			for _, table := range []string{"runs", "run_events", "cancellations", "replays", "waits", "flow_state"} {
				require.Contains(t, metrics(reg), `herald_purged_rows_total{table="`+table+`"} 0`+"\n")
			}
		})
	}
}

// jobCounter is a jobTaker that counts its calls and takes n jobs each time.
type jobCounter struct {
	calls atomic.Int64
	n     int
}

func (j *jobCounter) TakeOverCancellations(context.Context) (int, error) {
	j.calls.Add(1)
	return j.n, nil
}

func (j *jobCounter) TakeOverReplays(context.Context) (int, error) { return 0, nil }

// Housekeeping looks for stale jobs every JobScanInterval, beside its other
// loops, and counts what it took over.
func TestHousekeepingTakesOverJobs(t *testing.T) {
	t.Parallel()
	st := openStores(t)["sqlite"]
	jobs := &jobCounter{n: 2}
	cfg, err := Housekeeping{Interval: time.Hour, JobScanInterval: 10 * time.Millisecond}.withDefaults(time.Second)
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	h := newHousekeeping(cfg, st, jobs, reg, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.run(ctx)
	}()
	require.Eventually(t, func() bool { return jobs.calls.Load() >= 5 }, 5*time.Second, 5*time.Millisecond)
	cancel()
	<-done
	require.Contains(t, metrics(reg), fmt.Sprintf("herald_jobs_taken_over_total %d\n", 2*jobs.calls.Load()))
}
