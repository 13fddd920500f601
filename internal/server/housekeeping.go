package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-run/herald/store"
)

// Housekeeping configures a process's upkeep: the gauges an operator
// watches, the purges that keep the store bounded (retention, finished
// waits, expired flow state) and the takeover of background jobs whose
// replica died. Every replica runs it; purges and takeovers are safe to run
// on several at once. The zero value means the defaults.
type Housekeeping struct {
	// Interval is how often the gauges are refreshed and a retention round
	// starts (finished waits and expired flow state are purged every ten
	// intervals). Default DefaultHousekeepingInterval.
	Interval time.Duration
	// Retention is how long finished work is kept: events, runs and bulk
	// cancellations older than this are purged (see store.Driver.Purge for
	// exactly which). Default store.DefaultRetention (30 days); Run refuses
	// less than store.MinRetention (48 hours), which keeps every event well
	// past the 24-hour deduplication window.
	Retention time.Duration
	// PurgeBatch is how many rows of each table one purge statement deletes.
	// Default 1,000.
	PurgeBatch int
	// PurgePause is the shortest pause between two purge batches of a
	// round, so a large backlog is worked off without crowding ingest out of
	// the database; the pause is also at least four times as long as the
	// last batch took, so a slow database gets more room. Default 100ms.
	PurgePause time.Duration
	// JobScanInterval is how often the process looks for bulk cancellations
	// whose lease is stale (Options.Ingest.Jobs) and takes them over.
	// Default: the jobs' heartbeat interval, a sixth of their stale
	// threshold (5s by default).
	JobScanInterval time.Duration
}

// DefaultHousekeepingInterval is Housekeeping.Interval's default.
const DefaultHousekeepingInterval = 15 * time.Second

// withDefaults returns h with its zero fields set, or an error for a
// retention below the minimum. jobHeartbeat is the jobs' renewal interval.
func (h Housekeeping) withDefaults(jobHeartbeat time.Duration) (Housekeeping, error) {
	if h.Interval <= 0 {
		h.Interval = DefaultHousekeepingInterval
	}
	switch {
	case h.Retention == 0:
		h.Retention = store.DefaultRetention
	case h.Retention < store.MinRetention:
		return h, fmt.Errorf("retention %s is below the minimum of %s: events must outlive the 24-hour deduplication window", h.Retention, store.MinRetention)
	}
	if h.PurgeBatch <= 0 {
		h.PurgeBatch = 1000
	}
	if h.PurgePause <= 0 {
		h.PurgePause = 100 * time.Millisecond
	}
	if h.JobScanInterval <= 0 {
		h.JobScanInterval = jobHeartbeat
	}
	return h, nil
}

// jobTaker takes over background jobs whose lease is stale; the API server
// (ingest.Server) is one.
type jobTaker interface {
	TakeOverCancellations(ctx context.Context) (int, error)
	TakeOverReplays(ctx context.Context) (int, error)
}

// Table labels of herald_purged_rows_total.
const (
	purgedEvents        = "events"
	purgedRuns          = "runs"
	purgedRunLinks      = "run_events"
	purgedCancellations = "cancellations"
	purgedReplays       = "replays"
	purgedWaits         = "waits"
	purgedFlowState     = "flow_state"
)

// housekeeping publishes the gauges an operator watches (outbox depth,
// pending waits, waits no index can serve), purges what the store no longer
// needs and takes over background jobs whose replica died.
type housekeeping struct {
	cfg       Housekeeping
	store     store.Driver
	jobs      jobTaker // nil: no takeover
	log       *slog.Logger
	outbox    prometheus.Gauge
	waits     prometheus.Gauge
	unindexed prometheus.Gauge
	purged    *prometheus.CounterVec
	takeovers prometheus.Counter
}

func newHousekeeping(cfg Housekeeping, st store.Driver, jobs jobTaker, reg prometheus.Registerer, log *slog.Logger) *housekeeping {
	h := &housekeeping{
		cfg:   cfg,
		store: st,
		jobs:  jobs,
		log:   log,
		outbox: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herald_outbox_pending",
			Help: "Events accepted but not yet dispatched.",
		}),
		waits: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herald_waits_pending",
			Help: "Pending waitForEvent and cancelOn waits.",
		}),
		unindexed: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herald_waits_unindexed",
			Help: "Pending waits with no equality key: every event of their name is checked against them.",
		}),
		purged: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_purged_rows_total",
			Help: "Rows this process purged, by table: events, runs, run_events (batch links), cancellations and replays past the retention; waits finished an hour ago; flow_state (expired idempotency keys, idle limiters).",
		}, []string{"table"}),
		takeovers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_jobs_taken_over_total",
			Help: "Bulk cancellations this process took over from a replica that stopped renewing their lease.",
		}),
	}
	for _, table := range []string{purgedEvents, purgedRuns, purgedRunLinks, purgedCancellations, purgedReplays, purgedWaits, purgedFlowState} {
		h.purged.WithLabelValues(table)
	}
	reg.MustRegister(h.outbox, h.waits, h.unindexed, h.purged, h.takeovers)
	return h
}

// run runs the gauges and short purges, the retention rounds and the job
// takeovers, each on its own clock so a long purge delays nothing else,
// until ctx is done.
func (h *housekeeping) run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, loop := range []func(context.Context){h.upkeep, h.retain, h.takeOver} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			loop(ctx)
		}()
	}
	wg.Wait()
}

// every calls fn now and then every interval after it returns, until ctx is
// done.
func every(ctx context.Context, interval time.Duration, fn func()) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fn()
		t.Reset(interval)
	}
}

// upkeep refreshes the gauges every interval and purges waits resolved or
// expired more than an hour ago, and expired flow state, every ten intervals.
func (h *housekeeping) upkeep(ctx context.Context) {
	n := 0
	every(ctx, h.cfg.Interval, func() {
		h.refresh(ctx)
		if n%10 == 0 {
			if purged, err := h.store.PurgeWaits(ctx, time.Now().Add(-time.Hour)); err != nil {
				h.log.Warn("purging finished waits failed", "err", err)
			} else if purged > 0 {
				h.purged.WithLabelValues(purgedWaits).Add(float64(purged))
				h.log.Debug("purged finished waits", "count", purged)
			}
			if purged, err := h.store.PurgeFlowState(ctx, time.Now()); err != nil {
				h.log.Warn("purging expired idempotency keys and limiter state failed", "err", err)
			} else if purged > 0 {
				h.purged.WithLabelValues(purgedFlowState).Add(float64(purged))
				h.log.Debug("purged expired idempotency keys and limiter state", "count", purged)
			}
		}
		n++
	})
}

func (h *housekeeping) refresh(ctx context.Context) {
	if n, err := h.store.PendingEvents(ctx); err == nil {
		h.outbox.Set(float64(n))
	}
	if pending, unindexed, err := h.store.WaitStats(ctx); err == nil {
		h.waits.Set(float64(pending))
		h.unindexed.Set(float64(unindexed))
	}
}

// retain runs a retention round every interval.
func (h *housekeeping) retain(ctx context.Context) {
	every(ctx, h.cfg.Interval, func() { h.purgeRound(ctx) })
}

// purgeRound purges what is older than the retention, one batch after the
// other with a pause between them, until a batch finds nothing more due.
func (h *housekeeping) purgeRound(ctx context.Context) store.PurgeCounts {
	start := time.Now()
	before := start.Add(-h.cfg.Retention)
	var total store.PurgeCounts
	batches := 0
	for {
		batchStart := time.Now()
		n, err := h.store.Purge(ctx, before, h.cfg.PurgeBatch)
		took := time.Since(batchStart)
		batches++
		total.Add(n)
		h.purged.WithLabelValues(purgedEvents).Add(float64(n.Events))
		h.purged.WithLabelValues(purgedRuns).Add(float64(n.Runs))
		h.purged.WithLabelValues(purgedRunLinks).Add(float64(n.RunLinks))
		h.purged.WithLabelValues(purgedCancellations).Add(float64(n.Cancellations))
		h.purged.WithLabelValues(purgedReplays).Add(float64(n.Replays))
		if err != nil {
			if ctx.Err() == nil {
				h.log.Warn("retention: purge failed; the next round retries", "err", err)
			}
			break
		}
		if !n.More(h.cfg.PurgeBatch) || !sleep(ctx, max(h.cfg.PurgePause, 4*took)) {
			break
		}
	}
	h.log.Debug("retention: purge round", "before", before.UTC(), "events", total.Events, "runs", total.Runs,
		"run_events", total.RunLinks, "cancellations", total.Cancellations, "replays", total.Replays, "batches", batches, "took", time.Since(start))
	return total
}

// sleep waits for d and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// takeOver looks for stale background jobs every JobScanInterval.
func (h *housekeeping) takeOver(ctx context.Context) {
	if h.jobs == nil {
		return
	}
	every(ctx, h.cfg.JobScanInterval, func() {
		n, err := h.jobs.TakeOverCancellations(ctx)
		h.takeovers.Add(float64(n))
		if err != nil && !errors.Is(err, context.Canceled) {
			h.log.Warn("taking over stale bulk cancellations failed", "err", err)
		}
		n, err = h.jobs.TakeOverReplays(ctx)
		h.takeovers.Add(float64(n))
		if err != nil && !errors.Is(err, context.Canceled) {
			h.log.Warn("taking over stale replays failed", "err", err)
		}
	})
}
