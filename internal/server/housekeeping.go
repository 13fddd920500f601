package server

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-run/herald/store"
)

// housekeeping publishes the gauges an operator watches (outbox depth,
// pending waits, waits no index can serve) and purges finished waits.
type housekeeping struct {
	store     store.Driver
	log       *slog.Logger
	outbox    prometheus.Gauge
	waits     prometheus.Gauge
	unindexed prometheus.Gauge
}

func newHousekeeping(st store.Driver, reg prometheus.Registerer, log *slog.Logger) *housekeeping {
	h := &housekeeping{
		store: st,
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
	}
	reg.MustRegister(h.outbox, h.waits, h.unindexed)
	return h
}

// run refreshes the gauges every interval and purges waits resolved or
// expired more than an hour ago every ten intervals, until ctx is done.
func (h *housekeeping) run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for n := 0; ; n++ {
		h.refresh(ctx)
		if n%10 == 0 {
			if purged, err := h.store.PurgeWaits(ctx, time.Now().Add(-time.Hour)); err != nil {
				h.log.Warn("purging finished waits failed", "err", err)
			} else if purged > 0 {
				h.log.Debug("purged finished waits", "count", purged)
			}
			if purged, err := h.store.PurgeFlowState(ctx, time.Now()); err != nil {
				h.log.Warn("purging expired idempotency keys and limiter state failed", "err", err)
			} else if purged > 0 {
				h.log.Debug("purged expired idempotency keys and limiter state", "count", purged)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
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
