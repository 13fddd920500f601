// Package server is Herald's composition root: it wires one process from the
// HTTP API, the function registry, the outbox router, Herald's system worker
// and housekeeping, over one store and one door to Temporal. `herald dev`,
// `herald serve` and the integration tests all run Herald through it.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.temporal.io/sdk/client"
	"golang.org/x/net/netutil"

	"github.com/herald-run/herald/ingest"
	"github.com/herald-run/herald/internal/console"
	"github.com/herald-run/herald/internal/temporalx"
	"github.com/herald-run/herald/internal/wire"
	"github.com/herald-run/herald/registry"
	"github.com/herald-run/herald/router"
	"github.com/herald-run/herald/store"
	"github.com/herald-run/herald/triggers"
)

// Options configures one Herald process.
type Options struct {
	// Addr is the address the API listens on.
	Addr string
	// Store and Temporal are required.
	Store    store.Driver
	Temporal client.Client
	// Ingest configures the API; Run fills in its Store, Registry, Temporal,
	// OnCommit, Metrics and Logger.
	Ingest ingest.Config
	// Router configures the dispatcher; Run fills in Store, Registry,
	// Temporal, Metrics and Logger.
	Router router.Config
	// MaxConnections caps the API's open connections; further ones wait in
	// the listen backlog. Default DefaultMaxConnections.
	MaxConnections int
	// MetricsAddr, when set, serves GET /metrics and /debug/pprof/ there,
	// without authentication, and not on Addr. Otherwise Addr serves them,
	// behind the signing key when one is set.
	MetricsAddr string
	// Housekeeping configures the process's upkeep: gauges, retention and
	// the other purges, the takeover of stale bulk cancellations. The zero
	// value means the defaults.
	Housekeeping Housekeeping
	// Console configures the web console served beside the API (every path
	// outside /v1/, /e/, /w/, /healthz, /readyz, /metrics and /debug/); Run
	// fills in its API, SigningKey (the API's) and Logger.
	Console console.Config
	// NoConsole leaves the console out.
	NoConsole bool
	// TemporalNamespace is the namespace of Temporal (the client's), which
	// resetting a run (a rerun from a step) names. Default "default".
	TemporalNamespace string
	// Logger defaults to discard.
	Logger *slog.Logger
	// Ready is called once the API listens, with its base URL.
	Ready func(ctx context.Context, baseURL string)
}

// DefaultMaxConnections is Options.MaxConnections's default: far above what
// the clients of one replica need, far below the file descriptors a process
// gets.
const DefaultMaxConnections = 4096

// Run runs the API and the router until ctx is done.
func Run(ctx context.Context, o Options) error {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	env, err := triggers.NewEnv()
	if err != nil {
		return err
	}
	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	tc := temporalx.New(o.Temporal)
	reg, err := registry.New(registry.Config{Store: o.Store, Env: env, Temporal: tc, Logger: o.Logger})
	if err != nil {
		return err
	}
	rc := o.Router
	if rc.SystemTaskQueue == "" {
		rc.SystemTaskQueue = wire.DefaultSystemTaskQueue
	}
	rc.Store, rc.Registry, rc.Temporal, rc.Metrics, rc.Logger = o.Store, reg, tc, router.NewMetrics(metrics), o.Logger
	disp, err := router.New(rc)
	if err != nil {
		return err
	}
	hkc, err := o.Housekeeping.withDefaults(o.Ingest.Jobs.WithDefaults().Heartbeat)
	if err != nil {
		return err
	}
	cfg := o.Ingest
	cfg.Store, cfg.Registry, cfg.Temporal, cfg.OnCommit, cfg.Metrics, cfg.Logger = o.Store, reg, tc, disp.Notify, metrics, o.Logger
	cfg.MetricsElsewhere = o.MetricsAddr != ""
	cfg.Replayer, cfg.Resetter = disp, tc.WithNamespace(o.TemporalNamespace)
	srv, err := ingest.New(cfg)
	if err != nil {
		return err
	}
	handler := srv.Handler()
	if !o.NoConsole {
		cc := o.Console
		cc.API, cc.SigningKey, cc.Logger = handler, cfg.SigningKey, o.Logger
		con, err := console.New(cc)
		if err != nil {
			srv.Close()
			return err
		}
		handler = console.Route(handler, con)
	}
	routerCtx, stopRouter := context.WithCancel(context.Background())
	routerDone := make(chan struct{})
	go func() {
		defer close(routerDone)
		_ = disp.Run(routerCtx)
	}()
	sysDone := make(chan struct{})
	go func() {
		defer close(sysDone)
		runSystemWorker(routerCtx, tc, rc.SystemTaskQueue, disp, o.Logger)
	}()
	// Housekeeping stops before the API closes: a job it takes over runs in
	// the API's background.
	hk := newHousekeeping(hkc, o.Store, srv, metrics, o.Logger)
	hkCtx, stopHousekeeping := context.WithCancel(context.Background())
	hkDone := make(chan struct{})
	go func() {
		defer close(hkDone)
		hk.run(hkCtx)
	}()
	metricsDone := make(chan error, 1)
	if o.MetricsAddr != "" {
		go func() {
			metricsDone <- ServeHTTP(ctx, o.MetricsAddr, o.MaxConnections, srv.OperatorHandler(), o.Logger, func(a net.Addr) {
				o.Logger.Info("serving metrics", "url", "http://"+a.String()+"/metrics")
			})
		}()
	} else {
		metricsDone <- nil
	}
	err = ServeHTTP(ctx, o.Addr, o.MaxConnections, handler, o.Logger, func(a net.Addr) {
		if o.Ready != nil {
			o.Ready(ctx, "http://"+a.String())
		}
	})
	if merr := <-metricsDone; err == nil {
		err = merr
	}
	// The API has stopped taking requests: stop housekeeping, flush the
	// API's commits and hand its bulk cancellations over, then stop the
	// router (what it has not dispatched stays pending for the next start).
	stopHousekeeping()
	<-hkDone
	srv.Close()
	stopRouter()
	<-routerDone
	<-sysDone
	return err
}

// ServeHTTP serves handler on addr until ctx is done, then shuts down
// gracefully: in-flight requests finish (their events are committed) before it
// returns.
//
// At most maxConns connections are served at once (0 means
// DefaultMaxConnections), and a response must be written within a minute, so
// slow or idle clients cannot pile up connections, goroutines and buffers.
func ServeHTTP(ctx context.Context, addr string, maxConns int, handler http.Handler, log *slog.Logger, ready func(net.Addr)) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	if maxConns <= 0 {
		maxConns = DefaultMaxConnections
	}
	ln = netutil.LimitListener(ln, maxConns)
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if ready != nil {
		ready(ln.Addr())
	}
	select {
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing in-flight requests")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http shutdown: %w", err)
	}
	return nil
}
