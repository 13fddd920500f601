package router

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the router's Prometheus series.
type Metrics struct {
	dispatched     prometheus.Counter
	started        prometheus.Counter
	evalErrors     prometheus.Counter
	lag            prometheus.Histogram
	waitsResolved  prometheus.Counter
	skipped        *prometheus.CounterVec
	temporalErrors prometheus.Counter
	matches        prometheus.Histogram
}

// NewMetrics creates the router's metrics and registers them on reg (nil: not
// registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		dispatched: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_router_events_dispatched_total",
			Help: "Events the router finished with (matched and their runs started).",
		}),
		started: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_runs_started_total",
			Help: "Function runs started (or found already started) by the router.",
		}),
		evalErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_trigger_eval_errors_total",
			Help: "Trigger expressions that failed on an event (counted as no match).",
		}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "herald_dispatch_lag_seconds",
			Help:    "Time from an event's acceptance to the end of its dispatch.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}),
		waitsResolved: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_waits_resolved_total",
			Help: "Waits (waitForEvent and cancelOn) resolved by the router.",
		}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_runs_skipped_total",
			Help: "Runs not started, by reason: rate_limit, idempotency, singleton, timeouts.start.",
		}, []string{"reason"}),
		temporalErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_temporal_errors_total",
			Help: "Temporal calls of the router that failed (start, signal-with-start, signal, cancel); their events stay pending and are retried.",
		}),
		matches: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "herald_router_matches_per_event",
			Help:    "Functions an event triggered.",
			Buckets: []float64{0, 1, 2, 3, 5, 10, 20, 50},
		}),
	}
	if reg != nil {
		reg.MustRegister(m.dispatched, m.started, m.evalErrors, m.lag, m.waitsResolved, m.skipped, m.temporalErrors, m.matches)
	}
	return m
}
