package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"

	"github.com/herald-run/herald/ingest"
	"github.com/herald-run/herald/internal/server"
	"github.com/herald-run/herald/internal/temporalx"
	"github.com/herald-run/herald/internal/tracing"
	"github.com/herald-run/herald/internal/wire"
	"github.com/herald-run/herald/router"
	"github.com/herald-run/herald/store"
	"github.com/herald-run/herald/store/postgres"
	"github.com/herald-run/herald/store/sqlite"
)

// openStore opens the store a database URL names: postgres:// (or
// postgresql://) for PostgreSQL, sqlite:PATH for an SQLite file.
func openStore(ctx context.Context, url string) (store.Driver, error) {
	switch {
	case url == "":
		return nil, usageError{"a database URL is required: postgres://user@host:5432/db or sqlite:path/to/herald.db"}
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		return postgres.Open(ctx, url)
	case strings.HasPrefix(url, "sqlite:"):
		path := strings.TrimPrefix(strings.TrimPrefix(url, "sqlite:"), "//")
		if path == "" {
			return nil, usageError{"sqlite URL needs a path: sqlite:path/to/herald.db"}
		}
		return sqlite.Open(ctx, path)
	default:
		return nil, usageError{fmt.Sprintf("unsupported database URL %q: use postgres://... or sqlite:PATH", redactURL(url))}
	}
}

// redactURL hides a password in a database URL before it is printed.
func redactURL(url string) string {
	scheme, rest, ok := strings.Cut(url, "://")
	if !ok {
		return url
	}
	userinfo, host, ok := strings.Cut(rest, "@")
	if !ok {
		return url
	}
	if user, _, hasPass := strings.Cut(userinfo, ":"); hasPass {
		return scheme + "://" + user + ":xxxxx@" + host
	}
	return url
}

// limitFlags are the ingest limits every server command exposes.
type limitFlags struct {
	maxEvents, maxEventBytes, maxConns *int
	maxBody                            *int64
	systemQueue                        *string
}

func addLimitFlags(fs *flagSet) limitFlags {
	return limitFlags{
		maxEvents:     fs.Int("max-events-per-request", "HERALD_MAX_EVENTS_PER_REQUEST", ingest.DefaultMaxEventsPerRequest, "most events accepted in one request"),
		maxBody:       fs.Int64("max-body-bytes", "HERALD_MAX_BODY_BYTES", ingest.DefaultMaxBodyBytes, "largest request body accepted, in bytes"),
		maxEventBytes: fs.Int("max-event-bytes", "HERALD_MAX_EVENT_BYTES", ingest.DefaultMaxEventBytes, "largest single event accepted, in bytes of JSON"),
		maxConns: fs.Int("max-connections", "HERALD_MAX_CONNECTIONS", server.DefaultMaxConnections,
			"most HTTP connections served at once; further ones wait to be accepted"),
		systemQueue: fs.String("system-task-queue", "HERALD_SYSTEM_TASK_QUEUE", wire.DefaultSystemTaskQueue,
			"Temporal task queue of Herald's own workflows (debounce, batch, concurrency limits); give each Herald deployment sharing a namespace its own"),
	}
}

// housekeepingFlags are the retention and upkeep flags every server command
// exposes.
type housekeepingFlags struct {
	retention, interval, jobStaleAfter *time.Duration
}

func addHousekeepingFlags(fs *flagSet) housekeepingFlags {
	return housekeepingFlags{
		retention: fs.Duration("retention", "HERALD_RETENTION", store.DefaultRetention,
			"how long events, finished runs and finished bulk cancellations are kept before they are purged; at least 48h (events outlive the 24h deduplication window); pending events and unfinished runs are never purged"),
		interval: fs.Duration("housekeeping-interval", "HERALD_HOUSEKEEPING_INTERVAL", server.DefaultHousekeepingInterval,
			"how often each replica refreshes its gauges and starts a retention purge round"),
		jobStaleAfter: fs.Duration("job-stale-after", "HERALD_JOB_STALE_AFTER", ingest.DefaultJobStaleAfter,
			"a bulk cancellation whose replica has not renewed its lease for this long (it died) is taken over by another replica; jobs renew every sixth of it"),
	}
}

// options checks the flags and returns what they configure: the process's
// housekeeping and the leases of its bulk cancellations.
func (h housekeepingFlags) options() (server.Housekeeping, ingest.JobLease, error) {
	switch {
	case *h.retention < store.MinRetention:
		return server.Housekeeping{}, ingest.JobLease{}, usageError{fmt.Sprintf(
			"--retention %s is too short: the minimum is %s, so that every event outlives the 24h deduplication window (default %s, 30 days)",
			*h.retention, store.MinRetention, store.DefaultRetention)}
	case *h.interval < 100*time.Millisecond:
		return server.Housekeeping{}, ingest.JobLease{}, usageError{fmt.Sprintf("--housekeeping-interval %s is too short: use 100ms or more (default %s)",
			*h.interval, server.DefaultHousekeepingInterval)}
	case *h.jobStaleAfter < time.Second:
		return server.Housekeeping{}, ingest.JobLease{}, usageError{fmt.Sprintf("--job-stale-after %s is too short: use 1s or more (default %s)",
			*h.jobStaleAfter, ingest.DefaultJobStaleAfter)}
	}
	return server.Housekeeping{Interval: *h.interval, Retention: *h.retention}, ingest.JobLease{StaleAfter: *h.jobStaleAfter}, nil
}

func (l limitFlags) router(tracing bool) router.Config {
	return router.Config{SystemTaskQueue: *l.systemQueue, Tracing: tracing}
}

// tracer is OpenTelemetry tracing as the standard OTEL_* variables set it up.
type tracer struct {
	on           bool
	interceptors []interceptor.ClientInterceptor
	shutdown     func(context.Context) error
}

// startTracing turns tracing on when OTEL_EXPORTER_OTLP_ENDPOINT (or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set.
func startTracing(ctx context.Context, log *slog.Logger) (*tracer, error) {
	shutdown, on, err := tracing.Setup(ctx, log)
	if err != nil {
		return nil, err
	}
	t := &tracer{on: on, shutdown: shutdown}
	if on {
		ti, err := tracing.TemporalInterceptor()
		if err != nil {
			return nil, err
		}
		t.interceptors = append(t.interceptors, ti)
	}
	return t, nil
}

// stop flushes the spans not yet exported.
func (t *tracer) stop(log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := t.shutdown(ctx); err != nil {
		log.Warn("flushing traces failed", "err", err)
	}
}

func (l limitFlags) limits() ingest.Limits {
	return ingest.Limits{MaxEventsPerRequest: *l.maxEvents, MaxBodyBytes: *l.maxBody, MaxEventBytes: *l.maxEventBytes}
}

func newLogger(format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, usageError{fmt.Sprintf("log level %q: use debug, info, warn or error", level)}
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	default:
		return nil, usageError{fmt.Sprintf("log format %q: use text or json", format)}
	}
}

// temporalFlags are the Temporal connection flags every command that talks
// to Temporal exposes, declared once so their names, variables and defaults
// cannot drift apart.
type temporalFlags struct {
	address, namespace, compression *string
}

// addTemporalFlags declares --temporal-address, --temporal-namespace and
// --temporal-grpc-compression; addressHelp completes the address flag's help for the command.
func addTemporalFlags(fs *flagSet, addressHelp string) temporalFlags {
	help := "Temporal frontend host:port"
	if addressHelp != "" {
		help += "; " + addressHelp
	}
	return temporalFlags{
		address:   fs.String("temporal-address", "HERALD_TEMPORAL_ADDRESS", "127.0.0.1:7233", help),
		namespace: fs.String("temporal-namespace", "HERALD_TEMPORAL_NAMESPACE", "default", "Temporal namespace Herald's runs live in"),
		compression: fs.String("temporal-grpc-compression", "HERALD_TEMPORAL_GRPC_COMPRESSION", string(temporalx.CompressionNone),
			"gRPC compression of Herald's calls to Temporal: none, or gzip (the Temporal SDK's default) to save bandwidth over a slow link at a CPU cost on both sides"),
	}
}

// check refuses a compression the client would not accept, before the
// command opens anything.
func (f temporalFlags) check() error {
	if _, err := temporalx.Compression(*f.compression).ConnectionOptions(); err != nil {
		return usageError{"--temporal-grpc-compression: " + err.Error()}
	}
	return nil
}

// client returns a lazily connecting Temporal client for the flags.
func (f temporalFlags) client(log *slog.Logger, interceptors ...interceptor.ClientInterceptor) (client.Client, error) {
	c, err := temporalx.NewLazyClient(*f.address, *f.namespace, temporalx.Compression(*f.compression), log, interceptors...)
	if err != nil {
		return nil, fmt.Errorf("--temporal-grpc-compression: %w", err)
	}
	return c, nil
}
