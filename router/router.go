// Package router is Herald's outbox dispatcher: it claims pending events from
// the store, matches them against the registry's triggers, starts one
// Temporal workflow per (function, event) and records the runs. Dispatch is
// at least once; every start is idempotent (a deterministic workflow id and
// "already started" counted as success), so each run happens once.
//
// # What dispatch costs
//
// Per claimed batch (up to Config.BatchSize events), on PostgreSQL, in one
// transaction: BEGIN; the claim (one statement: it deletes the batch's
// pending_events rows, FOR UPDATE SKIP LOCKED, and reads their events); the
// apps' sync times (one read, outside the transaction, so another replica's
// sync applies at once); the match paths of pending waits for the batch's
// names and the candidate waits (one read each); then, when there is
// something to write, one INSERT of the runs, one of the cancelOn waits, one
// UPDATE of the resolved waits; COMMIT. That is about six round trips per
// batch whatever its size. No event row is locked or rewritten: an event
// costs its pending_events row (a few bytes, deleted by the claim) and
// nothing else. Flow control adds a locking read and a write per controlled
// start (limiters, idempotency keys, singletons). After the commit, one
// indexed read per cancelOn wait registered (catchUp).
//
// A claimer woken by a commit waits Config.Linger before it claims, so under
// load a claim carries the commits of that interval, not one claim each.
//
// Per run started: one Temporal call (StartWorkflow), up to Config.Concurrency
// in flight. Per wait resolved: one (Signal or Cancel). Per debounce or batch
// key in the batch: one SignalWithStart carrying all of that key's events.
package router

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/herald-run/herald/internal/temporalx"
	"github.com/herald-run/herald/internal/tracing"
	"github.com/herald-run/herald/internal/wire"
	"github.com/herald-run/herald/registry"
	"github.com/herald-run/herald/store"
	"github.com/herald-run/herald/waits"
)

// Temporal is what the router asks of Temporal. *temporalx.Client
// implements it; the router's unit tests use a fake.
type Temporal interface {
	// StartWorkflow starts a run; an already started id is success.
	StartWorkflow(ctx context.Context, s temporalx.Start) error
	// SignalWithStart hands events to a debounce or batch workflow.
	SignalWithStart(ctx context.Context, s temporalx.SignalStart) error
	// Signal delivers an event to a waiting run; Cancel cancels a run.
	// Both wrap temporalx.ErrNotFound when the run is gone.
	Signal(ctx context.Context, workflowID, signal string, arg any) error
	Cancel(ctx context.Context, workflowID string) error
	// IsRunning reports whether a workflow has an open execution.
	IsRunning(ctx context.Context, workflowID string) (bool, error)
}

// Config configures a Dispatcher. Store, Registry and Temporal are required.
type Config struct {
	Store    store.Driver
	Registry *registry.Registry
	Temporal Temporal
	// BatchSize is the most events claimed at once. Default 100.
	BatchSize int
	// Concurrency is the most Temporal starts in flight. Default 64.
	Concurrency int
	// Claimers is the number of batches dispatched at once, so starts stay in
	// flight while one batch waits for its slowest start. Default 4. (On
	// SQLite claims take turns.)
	Claimers int
	// PollInterval is how often the outbox is checked without a
	// notification (events from another replica). Default 500ms.
	PollInterval time.Duration
	// Linger is how long a claimer woken by a commit waits before it claims,
	// so that under load one claim carries the commits of that interval
	// instead of a claim per commit. Default 2ms; negative means none.
	Linger time.Duration
	// StartTimeout bounds one Temporal call. Default 5s.
	StartTimeout time.Duration
	// EvalTimeout bounds the evaluation of one event's trigger expressions.
	// Default 100ms.
	EvalTimeout time.Duration
	// SystemTaskQueue is the task queue of Herald's own workflows (debounce,
	// batch, concurrency semaphores). Default wire.DefaultSystemTaskQueue.
	SystemTaskQueue string
	// Tracing makes a span of each run the router starts, skips or hands to a
	// debounce or batch workflow, continuing the trace of the request that
	// sent the event (its stored traceparent).
	Tracing bool
	// Metrics receives the router's metrics; nil registers none.
	Metrics *Metrics
	// Logger defaults to discard.
	Logger *slog.Logger
}

// Dispatcher moves events from the outbox to Temporal.
type Dispatcher struct {
	cfg   Config
	wake  chan struct{}
	sem   chan struct{}
	waits *waits.Matcher
	// lingering is set while a woken claimer waits out Config.Linger.
	lingering atomic.Bool
}

// New returns a Dispatcher; call Run to start it.
func New(cfg Config) (*Dispatcher, error) {
	if cfg.Store == nil || cfg.Registry == nil || cfg.Temporal == nil {
		return nil, errors.New("router: Store, Registry and Temporal are required")
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 100
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 64
	}
	if cfg.Claimers <= 0 {
		cfg.Claimers = 4
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 500 * time.Millisecond
	}
	if cfg.Linger == 0 {
		cfg.Linger = 5 * time.Millisecond
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 5 * time.Second
	}
	if cfg.EvalTimeout <= 0 {
		cfg.EvalTimeout = 100 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.SystemTaskQueue == "" {
		cfg.SystemTaskQueue = wire.DefaultSystemTaskQueue
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	wm, err := waits.NewMatcher(cfg.EvalTimeout)
	if err != nil {
		return nil, err
	}
	return &Dispatcher{cfg: cfg, wake: make(chan struct{}, 1), sem: make(chan struct{}, cfg.Concurrency), waits: wm}, nil
}

// Notify wakes the dispatcher: new events are waiting. It never blocks.
func (d *Dispatcher) Notify() {
	if d.lingering.Load() {
		// A claimer is about to claim; its claim begins after this commit
		// and takes these events with the others.
		return
	}
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Run dispatches until ctx is done. Failures (store or Temporal down) are
// logged and retried with backoff; events stay pending meanwhile.
func (d *Dispatcher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for range d.cfg.Claimers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.loop(ctx)
		}()
	}
	wg.Wait()
	return nil
}

func (d *Dispatcher) loop(ctx context.Context) {
	backoff := time.Duration(0)
	for ctx.Err() == nil {
		n, err := d.DispatchOnce(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			backoff = min(max(backoff*2, 100*time.Millisecond), 5*time.Second)
			d.cfg.Logger.Warn("dispatch failed; events stay pending and will be retried", "err", err, "retry_in", backoff)
			d.sleep(ctx, backoff+time.Duration(rand.Int64N(int64(backoff/4)+1)), false)
			continue
		case n >= d.cfg.BatchSize:
			backoff = 0
			d.Notify() // more are waiting: another claimer helps
			continue
		}
		backoff = 0
		d.await(ctx)
	}
}

// await sleeps until this claimer's next claim is due: after the poll
// interval, or after a wake by Notify and then Linger, which lets the commits
// right behind the first land so that one claim carries them all. A claimer
// woken while another lingers sleeps again: that one's claim takes the
// events.
func (d *Dispatcher) await(ctx context.Context) {
	for ctx.Err() == nil {
		if !d.sleep(ctx, d.cfg.PollInterval, true) || d.cfg.Linger <= 0 {
			return
		}
		if d.lingering.CompareAndSwap(false, true) {
			d.sleep(ctx, d.cfg.Linger, false)
			d.lingering.Store(false)
			return
		}
	}
}

// sleep waits for dur, ctx or (if wakeable) Notify, and reports whether
// Notify woke it.
func (d *Dispatcher) sleep(ctx context.Context, dur time.Duration, wakeable bool) bool {
	t := time.NewTimer(dur)
	defer t.Stop()
	var wake <-chan struct{}
	if wakeable {
		wake = d.wake
	}
	select {
	case <-ctx.Done():
	case <-t.C:
	case <-wake:
		return true
	}
	return false
}

// DispatchOnce claims one batch and dispatches it. It returns how many events
// it claimed.
func (d *Dispatcher) DispatchOnce(ctx context.Context) (int, error) {
	var registered []store.Wait
	n, err := d.cfg.Store.ClaimEvents(ctx, d.cfg.BatchSize, func(ctx context.Context, tx store.ClaimTx, events []store.Event) (store.Claim, error) {
		// Taken after the events are read: a sync that finished before an
		// event was sent is always seen by this process (a sync invalidates
		// the snapshot; other replicas' syncs show within Registry MaxAge).
		snap, err := d.cfg.Registry.Snapshot(ctx)
		if err != nil {
			return store.Claim{}, err
		}
		claim, err := d.dispatch(ctx, tx, snap, events)
		registered = claim.Waits
		return claim, err
	})
	if err == nil && len(registered) > 0 {
		d.catchUpCancels(ctx, registered)
	}
	return n, err
}

// catchUpCancels looks, once the claim that registered them has committed,
// for events that already cancel the runs it started: an event of the same
// batch, or one a concurrent claim dispatched while these waits were not yet
// visible to it. It is the router's side of what wait registration does for
// step.WaitForEvent. One store read per wait, in parallel.
func (d *Dispatcher) catchUpCancels(ctx context.Context, ws []store.Wait) {
	var wg sync.WaitGroup
	for _, w := range ws {
		d.sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-d.sem; wg.Done() }()
			eventID, won, err := d.waits.CatchUp(ctx, d.cfg.Store, w)
			if err != nil {
				d.cfg.Logger.Warn("looking for an event that already cancels a new run failed", "run_id", w.RunID, "workflow_id", w.WorkflowID, "err", err)
				return
			}
			if !won {
				return
			}
			if err := d.cancel(ctx, w.WorkflowID); err != nil {
				d.cfg.Metrics.temporalErrors.Inc()
				d.cfg.Logger.Warn("cancelling a run whose cancelOn event arrived with it failed", "run_id", w.RunID, "workflow_id", w.WorkflowID, "event_id", eventID, "err", err)
				return
			}
			d.cfg.Metrics.waitsResolved.Inc()
		}()
	}
	wg.Wait()
}

// start is one workflow to start for one event.
type start struct {
	event   *store.Event
	fn      *registry.Func
	act     func() (map[string]any, error) // the event decoded for CEL
	req     wire.RunRequest
	run     store.Run
	cancels []store.Wait
	charges []charge // limiter admissions, given back if it does not start
	err     error

	// Set by flow control.
	action    action
	reason    string    // why it is skipped
	entity    entity    // the debounce or batch workflow to signal
	notBefore time.Time // throttled: start no sooner
	priority  int       // Temporal priority key; 0 means the default
}

// flowControlled reports whether a function's runs need control before
// they start.
func flowControlled(c *wire.FunctionConfig) bool {
	return c.Batch != nil || c.Debounce != nil || c.Timeouts != nil && c.Timeouts.StartMS > 0 ||
		c.Idempotency != "" || c.RateLimit != nil || c.Throttle != nil || c.Singleton != nil ||
		c.Priority != nil || len(c.Concurrency) > 0
}

func (d *Dispatcher) dispatch(ctx context.Context, tx store.ClaimTx, snap *registry.Snapshot, events []store.Event) (store.Claim, error) {
	// Waits first: an event that resolves a wait or cancels a run is handled
	// even if it triggers nothing.
	acts := newActivations(events)
	resolved, waitFailed, err := d.resolveWaits(ctx, tx, events, acts)
	if err != nil {
		return store.Claim{}, err
	}
	var starts []*start
	singles := map[string]*start{}
	now := time.Now()
	for i := range events {
		fns := d.match(ctx, snap, acts, i)
		d.cfg.Metrics.matches.Observe(float64(len(fns)))
		for _, fn := range fns {
			s := d.plan(acts, i, fn)
			if fn.PausedAt != nil {
				// Recorded Skipped, so a replay can run it once resumed.
				s.skip(SkipPaused, "")
				s.cancels = nil
			} else if flowControlled(&fn.Config) {
				if err := d.control(ctx, tx, s, now, singles); err != nil {
					return store.Claim{}, fmt.Errorf("router: flow control of %s for event %s: %w", fn.Key(), s.event.ID, err)
				}
			}
			starts = append(starts, s)
		}
	}
	// Events for one debounce or batch workflow are handed over in one
	// signal, oldest first.
	var calls [][]*start
	entities := map[string]int{}
	for _, s := range starts {
		switch s.action {
		case actSkip:
			continue
		case actSignal:
			if i, ok := entities[s.entity.id]; ok {
				calls[i] = append(calls[i], s)
				continue
			}
			entities[s.entity.id] = len(calls)
		}
		calls = append(calls, []*start{s})
	}
	var wg sync.WaitGroup
	for _, seq := range calls {
		d.sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-d.sem; wg.Done() }()
			sctx, end := d.span(ctx, seq[0])
			var err error
			if seq[0].action == actSignal {
				err = d.signalEntity(sctx, seq)
			} else {
				err = d.startWorkflow(sctx, seq[0])
			}
			for _, s := range seq {
				s.err = err
			}
			if err != nil {
				d.cfg.Metrics.temporalErrors.Inc()
			}
			end(err)
		}()
	}
	wg.Wait()

	failed := waitFailed
	claim := store.Claim{Resolved: resolved}
	started := 0
	// Per-run lines cost a string per start: build them only when wanted.
	debug := d.cfg.Logger.Enabled(ctx, slog.LevelDebug)
	for _, s := range starts {
		if s.err != nil {
			failed[s.event.ID] = s.err
			// Its retry must not be skipped or delayed for this attempt.
			if err := d.release(ctx, tx, s); err != nil {
				return store.Claim{}, err
			}
			continue
		}
		switch s.action {
		case actSignal:
			continue // the debounce or batch workflow starts and records the run
		case actSkip:
			s.run.StartedAt = now
			s.run.EndedAt = &now
			d.cfg.Metrics.skipped.WithLabelValues(s.reason).Inc()
			_, end := d.span(ctx, s)
			end(nil)
			if debug {
				d.cfg.Logger.Debug("run skipped", "function", s.fn.Key(), "event_id", s.event.ID, "run_id", s.run.ID, "reason", s.run.Error)
			}
			claim.Runs = append(claim.Runs, s.run)
			continue
		}
		started++
		if debug {
			d.cfg.Logger.Debug("run started", "function", s.fn.Key(), "event_id", s.event.ID, "run_id", s.run.ID, "workflow_id", s.run.WorkflowID)
		}
		claim.Runs = append(claim.Runs, s.run)
		claim.Waits = append(claim.Waits, s.cancels...)
	}
	now = time.Now()
	for i := range events {
		if _, bad := failed[events[i].ID]; bad {
			continue
		}
		claim.Dispatched = append(claim.Dispatched, events[i].ID)
		d.cfg.Metrics.lag.Observe(now.Sub(events[i].ReceivedAt).Seconds())
	}
	d.cfg.Metrics.dispatched.Add(float64(len(claim.Dispatched)))
	d.cfg.Metrics.started.Add(float64(started))
	if len(failed) > 0 {
		var (
			first   error
			firstID string
		)
		for id, err := range failed {
			first, firstID = err, id
			break
		}
		if len(claim.Dispatched) == 0 {
			// Nothing went through (Temporal down, say): report it so Run backs off.
			return store.Claim{}, fmt.Errorf("router: %d of %d events could not be dispatched: %w", len(failed), len(events), first)
		}
		d.cfg.Logger.Warn("some events could not be dispatched; they stay pending", "failed", len(failed), "event_id", firstID, "err", first)
	}
	return claim, nil
}

// span starts the span of one start when tracing is on, as a child of the
// span that sent the event; end records err and ends it.
func (d *Dispatcher) span(ctx context.Context, s *start) (context.Context, func(error)) {
	if !d.cfg.Tracing {
		return ctx, func(error) {}
	}
	action := map[action]string{actStart: "start", actSkip: "skip", actSignal: "signal"}[s.action]
	ctx, span := tracing.Tracer().Start(tracing.FromTraceparent(ctx, s.event.Trace), "herald.dispatch "+s.fn.Key(),
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attribute.String("herald.event.id", s.event.ID),
			attribute.String("herald.event.name", s.event.Name),
			attribute.String("herald.function", s.fn.Key()),
			attribute.String("herald.run.id", s.run.ID),
			attribute.String("herald.workflow.id", s.run.WorkflowID),
			attribute.String("herald.action", action),
		))
	if s.action == actSkip {
		span.SetAttributes(attribute.String("herald.skip.reason", s.reason))
	}
	return ctx, func(err error) {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}

// match returns the functions an event runs.
func (d *Dispatcher) match(ctx context.Context, snap *registry.Snapshot, acts *activations, i int) []*registry.Func {
	e := &acts.events[i]
	if e.Name == wire.EventFunctionInvoked {
		// POST /v1/invoke stores the target in the event.
		var inv struct {
			FunctionID string `json:"function_id"`
		}
		if json.Unmarshal(e.Data, &inv) == nil {
			if fn := snap.Functions[inv.FunctionID]; fn != nil {
				return []*registry.Func{fn}
			}
		}
		d.cfg.Logger.Warn("invoked function does not exist; event ignored", "event_id", e.ID)
		return nil
	}
	candidates := snap.Matcher.Candidates(e.Name)
	if len(candidates) == 0 {
		return nil
	}
	act, err := acts.get(i)
	if err != nil {
		// Ingest refuses such data; an event stored before it did still runs
		// its functions without a condition, while every condition counts
		// as failed. Logged once, without the payload.
		d.cfg.Metrics.evalErrors.Inc()
		d.cfg.Logger.Warn("event data cannot be evaluated: its functions without a condition run, conditions count as false", "event_id", e.ID, "event", e.Name)
		act = nil
	}
	ectx, cancel := context.WithTimeout(ctx, d.cfg.EvalTimeout)
	defer cancel()
	keys, evalErrs := snap.Matcher.Match(ectx, act, e.Name)
	for _, err := range evalErrs {
		d.cfg.Metrics.evalErrors.Inc()
		d.cfg.Logger.Debug("trigger expression failed on an event; counted as no match", "event_id", e.ID, "err", err)
	}
	out := make([]*registry.Func, 0, len(keys))
	for _, k := range keys {
		if fn := snap.Functions[k]; fn != nil {
			out = append(out, fn)
		}
	}
	return out
}

func (d *Dispatcher) plan(acts *activations, i int, fn *registry.Func) *start {
	e := &acts.events[i]
	ev := wire.Event{ID: e.ID, Name: e.Name, Data: e.Data, TS: e.TS, V: e.V}
	if e.Name == wire.EventFunctionInvoked {
		var inv struct {
			Data json.RawMessage `json:"data"`
		}
		if json.Unmarshal(e.Data, &inv) == nil && len(inv.Data) > 0 && inv.Data[0] == '{' {
			ev.Data = inv.Data
		} else {
			ev.Data = json.RawMessage(`{}`)
		}
	}
	runID := wire.RunID(fn.AppID, fn.ID, e.ID, e.ReceivedAt)
	wfID := wire.WorkflowID(fn.AppID, fn.ID, e.ID)
	act := func() (map[string]any, error) { return acts.get(i) }
	return &start{
		event: e,
		fn:    fn,
		act:   act,
		req:   wire.RunRequest{AppID: fn.AppID, FunctionID: fn.ID, RunID: runID, Event: ev, ReceivedMS: e.ReceivedAt.UnixMilli(), Report: wire.ReportLocal},
		run: store.Run{
			ID: runID, AppID: fn.AppID, FunctionID: fn.ID, EventID: e.ID,
			WorkflowID: wfID,
		},
		// Registered with the run, in the claim's transaction: no Temporal call.
		cancels: cancelWaits(d.waits, fn, e, runID, wfID, func() map[string]any {
			a, _ := act()
			return a
		}),
	}
}

func (d *Dispatcher) startWorkflow(ctx context.Context, s *start) error {
	now := time.Now()
	st := temporalx.Start{
		WorkflowID:   s.run.WorkflowID,
		WorkflowType: s.fn.ID,
		TaskQueue:    s.fn.TaskQueue,
		Input:        s.req,
		App:          s.fn.AppID,
		Function:     s.fn.ID,
		EventName:    s.event.Name,
		EventID:      s.event.ID,
		Summary:      s.event.Name,
		Priority:     s.priority,
	}
	s.run.Status = wire.RunRunning
	at := time.UnixMilli(s.event.TS)
	if s.notBefore.After(at) {
		at = s.notBefore
	}
	if at.After(now) {
		st.Delay = at.Sub(now)
		s.run.Status = wire.RunScheduled
	}
	if t := s.fn.Config.Timeouts; t != nil && t.FinishMS > 0 {
		// A backstop only: the function's own timer cancels it first, so
		// its outcome is recorded. This one also bounds a start delay.
		st.ExecutionTimeout = st.Delay + time.Duration(t.FinishMS)*time.Millisecond + 10*time.Minute
	}
	s.run.StartedAt = now
	cctx, cancel := context.WithTimeout(ctx, d.cfg.StartTimeout)
	defer cancel()
	if err := d.cfg.Temporal.StartWorkflow(cctx, st); err != nil {
		return fmt.Errorf("event %s: %w", s.event.ID, err)
	}
	return nil
}
