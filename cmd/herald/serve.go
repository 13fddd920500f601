package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/herald-run/herald/ingest"
	"github.com/herald-run/herald/internal/console"
	"github.com/herald-run/herald/internal/server"
	"github.com/herald-run/herald/internal/temporalx"
)

func serveCommand() command {
	var (
		addr, dbURL, eventKeys, signingKey *string
		publicURL                          *string
		insecure, migrate                  *bool
		logFormat, logLevel                *string
		commitTimeout                      *time.Duration
		metricsAddr                        *string
		temporalUI                         *string
		limits                             limitFlags
		temporal                           temporalFlags
		housekeeping                       housekeepingFlags
	)
	return command{
		name:    "serve",
		summary: "run Herald in production: PostgreSQL and an existing Temporal cluster",
		flags: func(fs *flagSet) {
			addr = fs.String("addr", "HERALD_ADDR", ":8288", "address the HTTP API listens on")
			dbURL = fs.String("database-url", "HERALD_DATABASE_URL", "", "PostgreSQL URL, e.g. postgres://herald:secret@db:5432/herald (required)")
			temporal = addTemporalFlags(fs, "")
			eventKeys = fs.Secret("event-keys", "HERALD_EVENT_KEYS", "comma-separated keys accepted in POST /e/{key} (required unless --insecure)")
			signingKey = fs.Secret("signing-key", "HERALD_SIGNING_KEY", "key the REST API requires as 'Authorization: Bearer <key>' (required unless --insecure)")
			temporalUI = fs.String("temporal-ui-url", "HERALD_TEMPORAL_UI_URL", "", "base URL of the Temporal Web UI the console links runs to, e.g. https://temporal.example.com (default: no links)")
			publicURL = fs.String("public-url", "HERALD_PUBLIC_URL", "", "base URL senders reach Herald at, for webhook delivery URLs (default: the scheme and host of each request)")
			insecure = fs.Bool("insecure", "HERALD_INSECURE", false, "allow starting without event keys or signing key: any event key is accepted and the REST API is open")
			metricsAddr = fs.String("metrics-addr", "HERALD_METRICS_ADDR", "", "serve GET /metrics on this address (e.g. :9090), without authentication, for a scraper on a private network; by default the API address serves it behind the signing key")
			migrate = fs.Bool("migrate", "HERALD_MIGRATE", false, "apply database migrations before serving (otherwise run 'herald migrate')")
			commitTimeout = fs.Duration("commit-timeout", "HERALD_COMMIT_TIMEOUT", ingest.DefaultCommitTimeout, "how long a request waits for its events to be committed, queueing included, before it gets 503 (the store is down or frozen)")
			logFormat = fs.String("log-format", "HERALD_LOG_FORMAT", "json", "log format: json or text")
			logLevel = fs.String("log-level", "HERALD_LOG_LEVEL", "info", "log level: debug, info, warn or error")
			limits = addLimitFlags(fs)
			housekeeping = addHousekeepingFlags(fs)
		},
		run: func(ctx context.Context, fs *flagSet, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Sprintf("unexpected arguments %q", args)}
			}
			if err := temporal.check(); err != nil {
				return err
			}
			tuneGC()
			hk, jobs, err := housekeeping.options()
			if err != nil {
				return err
			}
			log, err := newLogger(*logFormat, *logLevel)
			if err != nil {
				return err
			}
			keys := splitList(*eventKeys)
			if !*insecure && (len(keys) == 0 || *signingKey == "") {
				return usageError{"refusing to start without event keys and a signing key: set HERALD_EVENT_KEYS and HERALD_SIGNING_KEY, or pass --insecure for a closed test network"}
			}
			if *insecure {
				log.Warn("running with --insecure: event keys and the signing key are not enforced where unset; do not expose this server")
			}

			st, err := openStore(ctx, *dbURL)
			if err != nil {
				return err
			}
			defer st.Close()
			if *migrate {
				if err := st.Migrate(ctx); err != nil {
					return err
				}
			}
			tr, err := startTracing(ctx, log)
			if err != nil {
				return err
			}
			defer tr.stop(log)
			tc, err := temporal.client(log, tr.interceptors...)
			if err != nil {
				return err
			}
			defer tc.Close()

			return server.Run(ctx, server.Options{
				Addr:              *addr,
				Store:             st,
				Temporal:          tc,
				Logger:            log,
				Router:            limits.router(tr.on),
				MaxConnections:    *limits.maxConns,
				Housekeeping:      hk,
				MetricsAddr:       *metricsAddr,
				Console:           console.Config{TemporalUIURL: *temporalUI, TemporalNamespace: *temporal.namespace},
				TemporalNamespace: *temporal.namespace,
				Ingest: ingest.Config{
					Tracing:          tr.on,
					Jobs:             jobs,
					EventKeys:        keys,
					AllowAnyEventKey: *insecure && len(keys) == 0,
					SigningKey:       *signingKey,
					PublicURL:        *publicURL,
					Limits:           limits.limits(),
					CommitTimeout:    *commitTimeout,
					ReadyChecks:      map[string]func(context.Context) error{"temporal": temporalx.HealthCheck(tc)},
				},
				Ready: func(_ context.Context, url string) {
					log.Info("herald serving", "url", url, "database", redactURL(*dbURL), "temporal", *temporal.address, "namespace", *temporal.namespace, "event_keys", len(keys))
				},
			})
		},
	}
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var keys []string
	for _, k := range strings.Split(s, ",") {
		if k = strings.TrimSpace(k); k != "" {
			keys = append(keys, k)
		}
	}
	return keys
}

func migrateCommand() command {
	var (
		dbURL        *string
		skipTemporal *bool
		temporal     temporalFlags
	)
	return command{
		name:    "migrate",
		summary: "apply database migrations and register Herald's search attributes on the Temporal namespace",
		flags: func(fs *flagSet) {
			dbURL = fs.String("database-url", "HERALD_DATABASE_URL", "", "postgres://... or sqlite:PATH (required)")
			temporal = addTemporalFlags(fs, "")
			skipTemporal = fs.Bool("skip-temporal", "HERALD_MIGRATE_SKIP_TEMPORAL", false, "only migrate the database; do not contact Temporal")
		},
		run: func(ctx context.Context, fs *flagSet, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Sprintf("unexpected arguments %q", args)}
			}
			if err := temporal.check(); err != nil {
				return err
			}
			st, err := openStore(ctx, *dbURL)
			if err != nil {
				return err
			}
			defer st.Close()
			if err := st.Migrate(ctx); err != nil {
				return err
			}
			fmt.Fprintf(fs.stdout, "database migrated: %s\n", redactURL(*dbURL))
			if *skipTemporal {
				return nil
			}
			log, _ := newLogger("text", "error")
			tc, err := temporal.client(log)
			if err != nil {
				return err
			}
			defer tc.Close()
			tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			if err := temporalx.EnsureSearchAttributes(tctx, tc, *temporal.namespace); err != nil {
				return fmt.Errorf("%w (is Temporal running at %s? use --skip-temporal to migrate only the database)", err, *temporal.address)
			}
			fmt.Fprintf(fs.stdout, "search attributes registered on namespace %q: %s\n", *temporal.namespace, strings.Join(temporalx.SearchAttributes, ", "))
			return nil
		},
	}
}
