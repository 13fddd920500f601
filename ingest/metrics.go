package ingest

import (
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the ingest API's Prometheus series.
type metrics struct {
	accepted      prometheus.Counter
	deduplicated  prometheus.Counter
	rejected      *prometheus.CounterVec
	requests      *prometheus.HistogramVec
	commitEvents  prometheus.Histogram
	commitReqs    prometheus.Histogram
	commitLatency prometheus.Histogram
	commitErrors  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		accepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_events_accepted_total",
			Help: "Events stored by the ingest API (duplicates excluded).",
		}),
		deduplicated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_events_deduplicated_total",
			Help: "Events acknowledged but not stored because their id was accepted within the dedupe window.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_events_rejected_total",
			Help: "Ingest requests refused, by reason (invalid, too_large, unauthorized, unavailable).",
		}, []string{"reason"}),
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "herald_http_request_duration_seconds",
			Help:    "HTTP request latency by route, method and status code.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route", "method", "code"}),
		commitEvents: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "herald_ingest_commit_events",
			Help:    "Events written per group commit.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14),
		}),
		commitReqs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "herald_ingest_commit_requests",
			Help:    "HTTP requests served per group commit.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}),
		commitLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "herald_ingest_commit_duration_seconds",
			Help:    "Time to write one group commit.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5},
		}),
		commitErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_ingest_commit_errors_total",
			Help: "Group commits that failed.",
		}),
	}
	reg.MustRegister(m.accepted, m.deduplicated, m.rejected, m.requests, m.commitEvents, m.commitReqs, m.commitLatency, m.commitErrors)
	return m
}

func (m *metrics) observeCommit(requests, events int, d time.Duration, err error) {
	if err != nil {
		m.commitErrors.Inc()
		return
	}
	m.commitReqs.Observe(float64(requests))
	m.commitEvents.Observe(float64(events))
	m.commitLatency.Observe(d.Seconds())
}

// middleware records every request's latency under its route pattern, so the
// label set stays bounded whatever paths clients try.
func (m *metrics) middleware(c *gin.Context) {
	start := time.Now()
	c.Next()
	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	m.requests.WithLabelValues(route, c.Request.Method, strconv.Itoa(c.Writer.Status())).Observe(time.Since(start).Seconds())
}
