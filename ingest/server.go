// Package ingest is Herald's HTTP API: event intake (POST /e/{key}), webhook
// deliveries (POST /w/{id}), the REST v1 API, health, readiness and metrics.
// Event intake is durable: a 200 is sent only after the events are committed
// to the store.
package ingest

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/herald-run/herald/internal/tracing"
	"github.com/herald-run/herald/registry"
	"github.com/herald-run/herald/store"
	"github.com/herald-run/herald/triggers"
	"github.com/herald-run/herald/waits"
	"github.com/herald-run/herald/webhooks"
)

// DefaultCommitTimeout is Config.CommitTimeout's default.
const DefaultCommitTimeout = 2 * time.Second

// Config configures a Server. Only Store is required; the zero value of every
// other field means its documented default.
type Config struct {
	// Store holds the events. Required.
	Store store.Driver
	// Tracing makes a span of every request (continuing the caller's trace
	// from its traceparent header) and stores each event with the request's
	// traceparent, so the router's spans join the same trace.
	Tracing bool
	// EventKeys are the keys accepted in POST /e/{key}. Required unless
	// AllowAnyEventKey is set. Only their SHA-256 hashes are kept.
	EventKeys []string
	// AllowAnyEventKey accepts every event key; for `herald dev` only.
	AllowAnyEventKey bool
	// MetricsElsewhere leaves GET /metrics and /debug/pprof/ out of Handler,
	// because the process serves OperatorHandler on a listener of its own
	// (herald serve --metrics-addr). Otherwise Handler serves them, behind
	// the signing key when one is set.
	MetricsElsewhere bool
	// SigningKey, when set, must be sent as "Authorization: Bearer <key>" on
	// every /v1 route. Empty leaves /v1 open; `herald serve` never does that
	// without --insecure.
	SigningKey string
	// Limits bound request and event sizes; see Limits for the defaults.
	Limits Limits
	// DedupeWindow is how long an event id deduplicates later events with the
	// same id. Default 24h.
	DedupeWindow time.Duration
	// CommitTimeout bounds how long a request waits for its events to be
	// committed, from its arrival, queueing for a group commit included; when
	// the store does not answer in time (down, or frozen with its connections
	// hanging) the request gets 503 and nothing of it is stored. Default 2s:
	// a healthy commit takes milliseconds.
	CommitTimeout time.Duration
	// Flushers is the number of group commits that may run at once. Default 1:
	// requests queue while a commit runs and the next commit carries them
	// all, so there are fewer, larger transactions (each costs Postgres a WAL
	// flush and a round trip or two whatever its size). A second flusher
	// measured no faster on 2 cores (make bench). SQLite has one writer.
	Flushers int
	// MaxCommitEvents is the most events one group commit collects before it
	// writes. Default 10,000.
	MaxCommitEvents int
	// ReadyChecks are run by GET /readyz, by name; the store is always checked.
	ReadyChecks map[string]func(context.Context) error
	// Registry validates and stores app syncs (POST /v1/apps/{app}/sync) and
	// resolves invoked functions. Optional: without it those routes answer 503.
	Registry *registry.Registry
	// PublicURL is the base URL (scheme, host and any path prefix) at which
	// senders reach this server; webhook sources report their delivery URL
	// under it. Default: the scheme and Host of each request.
	PublicURL string
	// Temporal is used to cancel runs. Optional: without it the cancel
	// routes answer 503.
	Temporal Canceller
	// Replayer starts replayed and rerun runs (POST /v1/replays and
	// /v1/runs/{id}/rerun); Resetter reruns a run from a step. Optional:
	// without them those endpoints answer 503.
	Replayer Replayer
	Resetter Resetter
	// Jobs configures the leases under which bulk cancellations run, so a
	// job whose replica dies is taken over (see JobLease).
	Jobs JobLease
	// OnCommit is called after events are committed, to wake the router
	// without waiting for its poll. It must not block.
	OnCommit func()
	// Metrics receives Herald's metrics and is served on /metrics. Default: a
	// new registry with Go runtime and process collectors.
	Metrics *prometheus.Registry
	// Logger receives Herald's logs. Default: discard.
	Logger *slog.Logger
}

// Canceller is what the API asks of Temporal: to cancel a run's workflow.
// *temporalx.Client implements it; the error wraps temporalx.ErrNotFound
// when the workflow has no open execution.
type Canceller interface {
	Cancel(ctx context.Context, workflowID string) error
}

// Server is the HTTP API. Create it with New, serve Handler, and Close it after
// the HTTP server has shut down.
type Server struct {
	cfg        Config
	limits     Limits
	engine     *gin.Engine
	committer  *committer
	metrics    *metrics
	eventKeys  [][32]byte
	signingKey *[32]byte
	log        *slog.Logger
	waits      *waits.Matcher
	triggerEnv *triggers.Env
	transforms *transformCache
	// Background jobs (bulk cancellations) run under bgCtx until Close.
	bgCtx      context.Context
	bgCancel   context.CancelFunc
	background sync.WaitGroup
}

func init() { gin.SetMode(gin.ReleaseMode) }

// New validates cfg and builds a Server. It starts the group-commit flushers.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("ingest: Config.Store is required")
	}
	if len(cfg.EventKeys) == 0 && !cfg.AllowAnyEventKey {
		return nil, errors.New("ingest: at least one event key is required (or AllowAnyEventKey for development)")
	}
	if cfg.DedupeWindow <= 0 {
		cfg.DedupeWindow = 24 * time.Hour
	}
	if cfg.CommitTimeout <= 0 {
		cfg.CommitTimeout = DefaultCommitTimeout
	}
	if cfg.Flushers <= 0 {
		cfg.Flushers = 1
	}
	if cfg.MaxCommitEvents <= 0 {
		cfg.MaxCommitEvents = 10000
	}
	if cfg.Metrics == nil {
		cfg.Metrics = prometheus.NewRegistry()
		cfg.Metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:     cfg,
		limits:  cfg.Limits.withDefaults(),
		metrics: newMetrics(cfg.Metrics),
		log:     cfg.Logger,
	}
	for _, k := range cfg.EventKeys {
		if k == "" {
			return nil, errors.New("ingest: an event key must not be empty")
		}
		s.eventKeys = append(s.eventKeys, sha256.Sum256([]byte(k)))
	}
	if cfg.PublicURL != "" {
		u, err := url.Parse(cfg.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("ingest: Config.PublicURL %q must be an absolute http or https URL", cfg.PublicURL)
		}
	}
	if cfg.SigningKey != "" {
		h := sha256.Sum256([]byte(cfg.SigningKey))
		s.signingKey = &h
	}
	var err error
	if s.waits, err = waits.NewMatcher(0); err != nil {
		return nil, err
	}
	if s.triggerEnv, err = triggers.NewEnv(); err != nil {
		return nil, err
	}
	webhookEnv, err := webhooks.NewEnv()
	if err != nil {
		return nil, err
	}
	s.transforms = &transformCache{env: webhookEnv}
	s.bgCtx, s.bgCancel = context.WithCancel(context.Background())
	s.committer = newCommitter(cfg.Store, cfg.Flushers, cfg.MaxCommitEvents, cfg.DedupeWindow, cfg.CommitTimeout, s.metrics)
	s.engine = s.routes()
	return s, nil
}

// Handler returns the HTTP handler serving every route.
func (s *Server) Handler() http.Handler { return s.engine }

// Engine exposes the gin engine so Herald's own tools (the benchmark's
// store-nothing ceiling) can mount routes on the same stack.
func (s *Server) Engine() *gin.Engine { return s.engine }

// Close flushes queued commits and stops the flushers. Call it after the HTTP
// server has stopped accepting requests.
func (s *Server) Close() {
	s.committer.Close()
	s.bgCancel()
	s.background.Wait()
}

func (s *Server) routes() *gin.Engine {
	r := gin.New()
	r.HandleMethodNotAllowed = true
	// No redirects: /e/{key}/ would answer with the key in Location.
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	// Event and run ids may hold "/": clients escape it (%2F) and the route
	// parameter is unescaped after matching.
	r.UseRawPath = true
	r.UnescapePathValues = true
	r.ContextWithFallback = true
	r.Use(s.recover, s.metrics.middleware, checkParams)
	if s.cfg.Tracing {
		r.Use(s.trace)
	}
	r.NoRoute(func(c *gin.Context) {
		writeError(c, http.StatusNotFound, fmt.Sprintf("no route for %s %s", c.Request.Method, c.Request.URL.Path))
	})
	r.NoMethod(func(c *gin.Context) {
		writeError(c, http.StatusMethodNotAllowed, fmt.Sprintf("method %s is not allowed on %s", c.Request.Method, c.Request.URL.Path))
	})

	r.POST("/e/:key", s.handleIngest)
	// Public by design: each delivery is authenticated by its signature.
	r.POST("/w/:id", s.handleWebhookDelivery)
	get(r, "/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	get(r, "/readyz", s.handleReady)
	if !s.cfg.MetricsElsewhere {
		get(r, "/metrics", s.requireSigningKey, gin.WrapH(s.MetricsHandler()))
		get(r, "/debug/pprof/*profile", s.requireSigningKey, gin.WrapH(pprofHandler()))
	}

	v1 := r.Group("/v1", s.requireSigningKey)
	get(v1, "/events", s.handleListEvents)
	get(v1, "/events/:id", s.handleGetEvent)
	v1.POST("/events", s.handleIngest)
	get(v1, "/events/:id/runs", s.handleEventRuns)
	get(v1, "/runs/:id", s.handleGetRun)
	v1.DELETE("/runs/:id", s.handleCancelRun)
	v1.POST("/runs/:id/finish", s.handleFinishRun)
	v1.POST("/runs/:id/rerun", s.handleRerun)
	get(v1, "/runs", s.handleListRuns)
	get(v1, "/waits", s.handleListWaits)
	v1.POST("/functions/:app/:function/pause", s.handlePause(true))
	v1.POST("/functions/:app/:function/resume", s.handlePause(false))
	v1.POST("/replays", s.handleCreateReplay)
	get(v1, "/replays/:id", s.handleGetReplay)
	get(v1, "/functions", s.handleListFunctions)
	v1.POST("/apps/:app/sync", s.handleSync)
	v1.POST("/invoke/*function_id", s.handleInvoke)
	v1.POST("/waits", s.handleRegisterWait)
	v1.POST("/cancellations", s.handleCreateCancellation)
	get(v1, "/cancellations/:id", s.handleGetCancellation)
	v1.POST("/webhooks", s.handleCreateWebhook)
	get(v1, "/webhooks", s.handleListWebhooks)
	get(v1, "/webhooks/:id", s.handleGetWebhook)
	v1.PATCH("/webhooks/:id", s.handleUpdateWebhook)
	v1.DELETE("/webhooks/:id", s.handleDeleteWebhook)
	return r
}

// get serves a GET route and answers HEAD on it too (without a body).
func get(r gin.IRoutes, path string, handlers ...gin.HandlerFunc) {
	r.GET(path, handlers...)
	r.HEAD(path, handlers...)
}

// MetricsHandler serves Herald's Prometheus metrics, with no authentication:
// mount it on a listener only operators reach (see Config.MetricsElsewhere).
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.cfg.Metrics, promhttp.HandlerOpts{})
}

// OperatorHandler serves /metrics and Go's profiles under /debug/pprof/,
// with no authentication, for the operators' listener (--metrics-addr).
func (s *Server) OperatorHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", s.MetricsHandler())
	mux.Handle("/debug/pprof/", pprofHandler())
	return mux
}

// pprofHandler serves Go's runtime profiles (net/http/pprof) under
// /debug/pprof/: CPU, heap, goroutines, block and mutex.
func pprofHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// checkParams refuses path and query parameters that no stored id, name or
// filter can hold (invalid UTF-8, control characters) with a 400 naming the
// parameter, before any handler passes them to the store: a driver refusing
// them would look like a store outage. The value is not echoed: /e/{key}
// carries the event key.
func checkParams(c *gin.Context) {
	for _, p := range c.Params {
		if !utf8.ValidString(p.Value) || hasControl(p.Value) {
			writeError(c, http.StatusBadRequest, fmt.Sprintf("path parameter %q must be valid UTF-8 without control characters", p.Key))
			return
		}
	}
	if c.Request.URL.RawQuery == "" {
		return // event intake: nothing to parse
	}
	for key, values := range c.Request.URL.Query() {
		for _, v := range values {
			if !utf8.ValidString(key) || !utf8.ValidString(v) || hasControl(key) || hasControl(v) {
				writeError(c, http.StatusBadRequest, fmt.Sprintf("query parameter %q must be valid UTF-8 without control characters", strings.ToValidUTF8(key, "?")))
				return
			}
		}
	}
}

// errorBody is the JSON shape of every error Herald's HTTP API returns.
type errorBody struct {
	Status int    `json:"status"`
	Error  string `json:"error"`
}

func writeError(c *gin.Context, status int, msg string) {
	c.AbortWithStatusJSON(status, errorBody{Status: status, Error: msg})
}

func (s *Server) recover(c *gin.Context) {
	defer func() {
		if v := recover(); v != nil {
			if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				panic(v)
			}
			// The route, not the path: /e/{key} carries the event key.
			s.log.Error("panic serving request", "route", c.FullPath(), "method", c.Request.Method, "panic", v)
			writeError(c, http.StatusInternalServerError, "internal error; the event was not accepted, retry the request")
		}
	}()
	c.Next()
}

// trace makes a span of the request, continuing the caller's trace.
func (s *Server) trace(c *gin.Context) {
	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	ctx := otel.GetTextMapPropagator().Extract(c.Request.Context(), propagation.HeaderCarrier(c.Request.Header))
	ctx, span := tracing.Tracer().Start(ctx, c.Request.Method+" "+route, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("http.request.method", c.Request.Method), attribute.String("http.route", route)))
	defer span.End()
	c.Request = c.Request.WithContext(ctx)
	c.Next()
	status := c.Writer.Status()
	span.SetAttributes(attribute.Int("http.response.status_code", status))
	if status >= 500 {
		span.SetStatus(codes.Error, http.StatusText(status))
	}
}

// checkKey compares key's hash against each accepted hash in constant time.
func checkKey(key string, accepted [][32]byte) bool {
	h := sha256.Sum256([]byte(key))
	ok := 0
	for i := range accepted {
		ok |= subtle.ConstantTimeCompare(h[:], accepted[i][:])
	}
	return ok == 1
}

func (s *Server) requireSigningKey(c *gin.Context) {
	if s.signingKey == nil {
		return
	}
	auth := c.GetHeader("Authorization")
	token, found := strings.CutPrefix(auth, "Bearer ")
	if !found || token == "" {
		writeError(c, http.StatusUnauthorized, `missing signing key: send "Authorization: Bearer <HERALD_SIGNING_KEY>"`)
		return
	}
	if !checkKey(strings.TrimSpace(token), [][32]byte{*s.signingKey}) {
		writeError(c, http.StatusUnauthorized, "invalid signing key")
		return
	}
}

type ingestResponse struct {
	IDs    []string `json:"ids"`
	Status int      `json:"status"`
}

// notify tells the router new events are waiting.
func (s *Server) notify() {
	if s.cfg.OnCommit != nil {
		s.cfg.OnCommit()
	}
}

// handleIngest serves POST /e/{key} and, behind the signing key, POST
// /v1/events (which workers use for step.SendEvent).
func (s *Server) handleIngest(c *gin.Context) {
	if c.FullPath() == "/e/:key" && !s.cfg.AllowAnyEventKey && !checkKey(c.Param("key"), s.eventKeys) {
		s.metrics.rejected.WithLabelValues("unauthorized").Inc()
		writeError(c, http.StatusUnauthorized, "unknown event key: send events to /e/<one of HERALD_EVENT_KEYS>")
		return
	}
	body, ok := s.readBody(c)
	if !ok {
		return
	}
	// Only workers, which hold the signing key, may send ids in the space
	// Herald derives its own event ids in (step.SendEvent's retries).
	s.ingestBody(c, body, c.FullPath() == "/v1/events", nil)
}

// readBody reads the request body within Limits.MaxBodyBytes. When it cannot
// (too large: 413, unreadable: 400) it has replied, and ok is false.
func (s *Server) readBody(c *gin.Context) (body []byte, ok bool) {
	if c.Request.ContentLength > s.limits.MaxBodyBytes {
		s.tooLarge(c)
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, s.limits.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.tooLarge(c)
			return nil, false
		}
		s.metrics.rejected.WithLabelValues("invalid").Inc()
		writeError(c, http.StatusBadRequest, "could not read request body: "+err.Error())
		return nil, false
	}
	return body, true
}

// ingestBody is event intake after authentication, shared by POST /e, POST
// /v1/events and webhook deliveries: it decodes and validates the events of
// body, refuses ids in Herald's derived-id space unless signed, lets check
// (when not nil) refuse them with a 400, commits them and replies 200 with
// their ids only once they are durable.
func (s *Server) ingestBody(c *gin.Context, body []byte, signed bool, check func([]store.Event) error) {
	events, err := DecodeEvents(body, s.limits, time.Now())
	if err == nil && !signed {
		err = refuseDerivedIDs(events)
	}
	if err == nil && check != nil {
		err = check(events)
	}
	if err != nil {
		s.metrics.rejected.WithLabelValues("invalid").Inc()
		writeError(c, http.StatusBadRequest, err.Error())
		return
	}
	if s.cfg.Tracing {
		if tp := tracing.Traceparent(c.Request.Context()); tp != "" {
			for i := range events {
				events[i].Trace = tp
			}
		}
		span := trace.SpanFromContext(c.Request.Context())
		span.SetAttributes(attribute.Int("herald.events", len(events)))
		if len(events) == 1 {
			span.SetAttributes(attribute.String("herald.event.id", events[0].ID), attribute.String("herald.event.name", events[0].Name))
		}
	}
	inserted, err := s.committer.Commit(c.Request.Context(), events)
	if err != nil {
		s.commitFailed(c, err)
		return
	}
	ids := make([]string, len(events))
	added := 0
	for i := range events {
		ids[i] = events[i].ID
		if inserted[i] {
			added++
		}
	}
	if added > 0 {
		s.notify()
	}
	s.metrics.accepted.Add(float64(added))
	s.metrics.deduplicated.Add(float64(len(events) - added))
	c.JSON(http.StatusOK, ingestResponse{IDs: ids, Status: http.StatusOK})
}

func (s *Server) tooLarge(c *gin.Context) {
	s.metrics.rejected.WithLabelValues("too_large").Inc()
	// The rest of the body is not read; close the connection rather than drain it.
	c.Header("Connection", "close")
	writeError(c, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes; split the events over several requests", s.limits.MaxBodyBytes))
}

func (s *Server) commitFailed(c *gin.Context, err error) {
	switch {
	case errors.Is(err, store.ErrInvalidData):
		s.metrics.rejected.WithLabelValues("invalid").Inc()
		// The driver's words stay in the log: they name tables and statements.
		s.log.Warn("the store refused events' data", "err", err)
		writeError(c, http.StatusBadRequest, "the store refused the events' data; nothing was stored")
	case errors.Is(err, context.Canceled) && c.Request.Context().Err() != nil:
		// The client went away; nobody reads this reply.
		writeError(c, 499, "request cancelled by the client; nothing was stored")
	default:
		s.metrics.rejected.WithLabelValues("unavailable").Inc()
		s.log.Error("storing events failed", "err", err)
		c.Header("Retry-After", "1")
		writeError(c, http.StatusServiceUnavailable, "events could not be stored right now; nothing was stored, retry the request")
	}
}

func (s *Server) handleReady(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
	defer cancel()
	checks := map[string]func(context.Context) error{"store": s.cfg.Store.Ping}
	for name, fn := range s.cfg.ReadyChecks {
		checks[name] = fn
	}
	// ?check=store (repeatable) limits the answer to those checks: a load
	// balancer asks whether a replica can accept events, which needs the
	// store only (events wait in the outbox while Temporal is away).
	if only := c.QueryArray("check"); len(only) > 0 {
		some := make(map[string]func(context.Context) error, len(only))
		for _, name := range only {
			fn, ok := checks[name]
			if !ok {
				names := make([]string, 0, len(checks))
				for n := range checks {
					names = append(names, n)
				}
				sort.Strings(names)
				writeError(c, http.StatusBadRequest, fmt.Sprintf("check: no check %q; the checks are %s", name, strings.Join(names, ", ")))
				return
			}
			some[name] = fn
		}
		checks = some
	}
	// Concurrently, each with the whole deadline: a hanging store must not
	// make a healthy Temporal look down.
	var (
		mu     sync.Mutex
		wg     sync.WaitGroup
		status = http.StatusOK
		result = make(map[string]string, len(checks))
	)
	for name, fn := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := fn(ctx)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				// The reason (hosts, users, databases) goes to the log only:
				// /readyz is public.
				s.log.Warn("readiness check failed", "check", name, "err", err)
				status = http.StatusServiceUnavailable
				result[name] = "unavailable"
				return
			}
			result[name] = "ok"
		}()
	}
	wg.Wait()
	state := "ok"
	if status != http.StatusOK {
		state = "unavailable"
	}
	c.JSON(status, gin.H{"status": state, "checks": result})
}
