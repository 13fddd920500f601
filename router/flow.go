package router

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/herald-run/herald/internal/temporalx"
	"github.com/herald-run/herald/internal/wire"
	"github.com/herald-run/herald/store"
)

// What the router does with one (function, event).
type action int

const (
	actStart  action = iota // start the function's workflow
	actSkip                 // record the run Skipped, with the reason
	actSignal               // hand the event to a debounce or batch workflow
)

// Skip reasons, as recorded in a Skipped run's error and in the
// herald_runs_skipped_total metric.
const (
	SkipRateLimit    = "rate_limit"
	SkipIdempotency  = "idempotency"
	SkipSingleton    = "singleton"
	SkipStartTimeout = "timeouts.start"
	SkipPaused       = "paused"
)

// idempotencyTTL is how long an idempotency key holds.
const idempotencyTTL = 24 * time.Hour

// keyPart makes an evaluated key safe and short enough for a workflow id or a
// row key: short keys are kept readable, long ones are hashed.
func keyPart(key string) string {
	if len(key) <= 100 {
		return key
	}
	h := sha256.Sum256([]byte(key))
	return "sha256:" + hex.EncodeToString(h[:16])
}

// evalOption evaluates an option's expression on the event of s: eval gets
// the event's activation and a context bounded by EvalTimeout. A failure
// (the event does not decode, the expression does not compile or fails) is
// counted and logged, saying what the caller does instead, and reported as
// false.
func (d *Dispatcher) evalOption(ctx context.Context, s *start, what, instead string, eval func(ctx context.Context, act map[string]any) error) bool {
	act, err := s.act()
	if err == nil {
		ectx, cancel := context.WithTimeout(ctx, d.cfg.EvalTimeout)
		err = eval(ectx, act)
		cancel()
		if err == nil {
			return true
		}
	}
	d.cfg.Metrics.evalErrors.Inc()
	d.cfg.Logger.Warn("flow-control expression failed; "+instead, "function", s.fn.Key(), "event_id", s.event.ID, "option", what, "err", err)
	return false
}

// evalKey evaluates a key expression for the event of s. An empty expression
// is the empty key. ok is false when the expression failed (counted and
// logged); callers then fall back as documented per option.
func (d *Dispatcher) evalKey(ctx context.Context, s *start, what, expr string) (key string, ok bool) {
	if expr == "" {
		return "", true
	}
	ok = d.evalOption(ctx, s, what, "using the empty key", func(ctx context.Context, act map[string]any) error {
		prg, err := d.cfg.Registry.Env().CachedKey(expr)
		if err == nil {
			key, err = prg.EvalKey(ctx, act)
		}
		return err
	})
	if !ok {
		return "", false
	}
	return key, true
}

// skip marks s to be recorded Skipped with reason.
func (s *start) skip(reason, detail string) {
	s.action = actSkip
	s.reason = reason
	s.run.Status = wire.RunSkipped
	s.run.Error = "skipped: " + reason
	if detail != "" {
		s.run.Error += ": " + detail
	}
}

// control applies the function's flow control to s, inside the claim's
// transaction. It runs for one start at a time: the limiter, idempotency and
// singleton rows it touches stay locked until the claim commits. singles
// holds the singleton keys earlier starts of the same claim took: their
// workflows do not exist yet, so Temporal cannot say they run.
func (d *Dispatcher) control(ctx context.Context, tx store.ClaimTx, s *start, now time.Time, singles map[string]*start) error {
	c := &s.fn.Config
	if b := c.Batch; b != nil {
		batched := true
		if b.If != "" {
			batched = d.evalIf(ctx, s, "batch if", b.If)
		}
		if batched {
			key, _ := d.evalKey(ctx, s, "batch", b.Key)
			s.action = actSignal
			s.entity = entity{workflowType: wire.WorkflowBatch, id: "herald/batch/" + s.fn.Key() + "/" + keyPart(key),
				state: wire.BatchState{AppID: s.fn.AppID, FunctionID: s.fn.ID, MaxSize: b.MaxSize, TimeoutMS: b.TimeoutMS}}
			return nil
		}
	}
	if db := c.Debounce; db != nil {
		key, _ := d.evalKey(ctx, s, "debounce", db.Key)
		s.action = actSignal
		s.entity = entity{workflowType: wire.WorkflowDebounce, id: "herald/debounce/" + s.fn.Key() + "/" + keyPart(key),
			state: wire.DebounceState{AppID: s.fn.AppID, FunctionID: s.fn.ID, PeriodMS: db.PeriodMS, TimeoutMS: db.TimeoutMS}}
		return nil
	}
	received := s.event.ReceivedAt
	latest := time.Time{} // zero: no start deadline
	if t := c.Timeouts; t != nil && t.StartMS > 0 {
		latest = received.Add(time.Duration(t.StartMS) * time.Millisecond)
		if now.After(latest) {
			s.skip(SkipStartTimeout, fmt.Sprintf("not started within %s of the event", time.Duration(t.StartMS)*time.Millisecond))
			return nil
		}
	}
	if c.Idempotency != "" {
		if key, ok := d.evalKey(ctx, s, "idempotency", c.Idempotency); ok {
			taken, holder, err := tx.TakeKey(ctx, "idem/"+s.fn.Key()+"/"+keyPart(key), s.run.ID, now, now.Add(idempotencyTTL))
			if err != nil {
				return err
			}
			if !taken {
				s.skip(SkipIdempotency, fmt.Sprintf("key %q already ran as run %s", key, holder))
				return nil
			}
		}
	}
	if rl := c.RateLimit; rl != nil {
		key, _ := d.evalKey(ctx, s, "rate_limit", rl.Key)
		emission := time.Duration(rl.PeriodMS) * time.Millisecond / time.Duration(rl.Limit)
		lk := "rate/" + s.fn.Key() + "/" + keyPart(key)
		_, ok, err := tx.Limit(ctx, lk, now, emission, time.Duration(rl.Limit-1)*emission, now)
		if err != nil {
			return err
		}
		if !ok {
			s.skip(SkipRateLimit, fmt.Sprintf("over %d per %s for key %q", rl.Limit, time.Duration(rl.PeriodMS)*time.Millisecond, key))
			return nil
		}
		s.charges = append(s.charges, charge{key: lk, emission: emission})
	}
	if th := c.Throttle; th != nil {
		key, _ := d.evalKey(ctx, s, "throttle", th.Key)
		emission := time.Duration(th.PeriodMS) * time.Millisecond / time.Duration(th.Limit)
		until := latest
		if until.IsZero() {
			until = now.Add(100 * 365 * 24 * time.Hour)
		}
		lk := "throttle/" + s.fn.Key() + "/" + keyPart(key)
		startAt, ok, err := tx.Limit(ctx, lk, now, emission, time.Duration(th.Burst)*emission, until)
		if err != nil {
			return err
		}
		if !ok {
			s.skip(SkipStartTimeout, fmt.Sprintf("the throttle would start it after its timeouts.start of %s", time.Duration(c.Timeouts.StartMS)*time.Millisecond))
			return d.release(ctx, tx, s)
		}
		s.charges = append(s.charges, charge{key: lk, emission: emission})
		s.notBefore = startAt
	}
	if sg := c.Singleton; sg != nil {
		key, _ := d.evalKey(ctx, s, "singleton", sg.Key)
		if err := d.singleton(ctx, tx, s, sg, "single/"+s.fn.Key()+"/"+keyPart(key), singles); err != nil {
			return err
		}
		if s.action == actSkip {
			return d.release(ctx, tx, s)
		}
	}
	d.runOptions(ctx, s)
	return nil
}

// charge is one admission a limiter gave a start.
type charge struct {
	key      string
	emission time.Duration
}

// release gives back the limiter admissions of a start that will not run
// (skipped by a later control, or its start failed), in the claim, so they
// count against no one.
func (d *Dispatcher) release(ctx context.Context, tx store.ClaimTx, s *start) error {
	for _, c := range s.charges {
		if err := tx.ReleaseLimit(ctx, c.key, c.emission); err != nil {
			return err
		}
	}
	s.charges = nil
	return nil
}

// singleton lets s run only if no other run holds key, skipping it or
// cancelling the holder per the mode.
func (d *Dispatcher) singleton(ctx context.Context, tx store.ClaimTx, s *start, sg *wire.SingletonConfig, key string, singles map[string]*start) error {
	if prev := singles[key]; prev != nil && prev.action == actStart {
		// An earlier event of this claim took the key; its run is not
		// started yet. Skip mode keeps it; cancel mode replaces it before
		// it starts.
		if sg.Mode != wire.SingletonCancel {
			s.skip(SkipSingleton, "run "+prev.run.ID+" is starting for the same key")
			return nil
		}
		prev.skip(SkipSingleton, "replaced by run "+s.run.ID+" for the same key before it started")
		prev.cancels = nil
		if err := d.release(ctx, tx, prev); err != nil {
			return err
		}
	}
	defer func() {
		if s.action == actStart {
			singles[key] = s
		}
	}()
	holder, holderWF, err := tx.SingletonHolder(ctx, key)
	if err != nil {
		return err
	}
	if holder != "" && holder != s.run.ID {
		running, err := d.isOpen(ctx, holderWF)
		if err != nil {
			return err
		}
		if running {
			if sg.Mode != wire.SingletonCancel {
				s.skip(SkipSingleton, "run "+holder+" is running for the same key")
				return nil
			}
			if err := d.cancel(ctx, holderWF); err != nil {
				return err
			}
		}
	}
	return tx.SetSingleton(ctx, key, s.run.ID, s.run.WorkflowID)
}

// isOpen reports whether a workflow has an open execution.
func (d *Dispatcher) isOpen(ctx context.Context, workflowID string) (bool, error) {
	cctx, cancel := context.WithTimeout(ctx, d.cfg.StartTimeout)
	defer cancel()
	return d.cfg.Temporal.IsRunning(cctx, workflowID)
}

func (d *Dispatcher) cancel(ctx context.Context, workflowID string) error {
	cctx, cancel := context.WithTimeout(ctx, d.cfg.StartTimeout)
	defer cancel()
	if err := d.cfg.Temporal.Cancel(cctx, workflowID); err != nil && !errors.Is(err, temporalx.ErrNotFound) {
		return err
	}
	return nil
}

// evalIf evaluates a boolean option expression; a failure counts as false.
func (d *Dispatcher) evalIf(ctx context.Context, s *start, what, expr string) (ok bool) {
	d.evalOption(ctx, s, what, "counted as false", func(ctx context.Context, act map[string]any) error {
		prg, err := d.cfg.Registry.Env().Cached(expr)
		if err == nil {
			ok, err = prg.Eval(ctx, act)
		}
		return err
	})
	return ok
}

// runOptions sets the run's priority and concurrency slots.
func (d *Dispatcher) runOptions(ctx context.Context, s *start) {
	c := &s.fn.Config
	if p := c.Priority; p != nil {
		d.evalOption(ctx, s, "priority", "default priority", func(ctx context.Context, act map[string]any) error {
			prg, err := d.cfg.Registry.Env().CachedInt(p.Run)
			if err != nil {
				return err
			}
			v, err := prg.EvalInt(ctx, act, -wire.MaxPriority, wire.MaxPriority)
			if err == nil {
				s.priority = PriorityKey(v)
			}
			return err
		})
	}
	for i, cc := range c.Concurrency {
		key, _ := d.evalKey(ctx, s, fmt.Sprintf("concurrency %d", i), cc.Key)
		id := "herald/concurrency/fn/" + s.fn.Key() + "/" + keyPart(key)
		if cc.Scope == wire.ScopeEnv {
			id = "herald/concurrency/env/" + keyPart(key)
		}
		s.req.Slots = append(s.req.Slots, wire.Slot{WorkflowID: id, TaskQueue: d.cfg.SystemTaskQueue, Limit: cc.Limit})
	}
	// One order for every run, so two runs never wait on each other's slot.
	sort.Slice(s.req.Slots, func(i, j int) bool { return s.req.Slots[i].WorkflowID < s.req.Slots[j].WorkflowID })
}

// PriorityKey maps a priority value (-600 to 600, higher first) to Temporal's
// priority keys (1 highest, 5 lowest, 3 the default).
func PriorityKey(v int64) int {
	switch {
	case v >= 300:
		return 1
	case v > 0:
		return 2
	case v == 0:
		return 3
	case v > -300:
		return 4
	default:
		return 5
	}
}

// entity is the debounce or batch workflow an event is handed to.
type entity struct {
	workflowType string
	id           string
	state        any
}

// signalEntity hands the events of seq, which share one debounce or batch
// workflow, to that workflow in one signal, starting the workflow if it is
// not running.
func (d *Dispatcher) signalEntity(ctx context.Context, seq []*start) error {
	s := seq[0]
	cctx, cancel := context.WithTimeout(ctx, d.cfg.StartTimeout)
	defer cancel()
	evs := make([]wire.PendingEvent, len(seq))
	for i, x := range seq {
		evs[i] = wire.PendingEvent{Event: x.req.Event, ReceivedMS: x.req.ReceivedMS}
	}
	err := d.cfg.Temporal.SignalWithStart(cctx, temporalx.SignalStart{
		WorkflowID:   s.entity.id,
		WorkflowType: s.entity.workflowType,
		TaskQueue:    d.cfg.SystemTaskQueue,
		Input:        s.entity.state,
		Signal:       wire.SignalEvent,
		SignalArg:    evs,
		App:          s.fn.AppID,
		Function:     s.fn.ID,
		Summary:      s.entity.workflowType + " of " + s.fn.Key(),
	})
	if err != nil {
		return fmt.Errorf("signal %s with %d events (first %s): %w", s.entity.id, len(seq), s.event.ID, err)
	}
	return nil
}

// StartRun starts and records the run a debounce or batch workflow fires: the
// run of the function for in.Events, with the first event as the run's
// event. It is the activity wire.ActivityStartRun, run by Herald's own
// worker; a retry computes the same run and workflow ids.
func (d *Dispatcher) StartRun(ctx context.Context, in wire.StartRun) error {
	if len(in.Events) == 0 {
		return nil
	}
	snap, err := d.cfg.Registry.Snapshot(ctx)
	if err != nil {
		return err
	}
	fn := snap.Functions[in.AppID+"/"+in.FunctionID]
	if fn == nil {
		d.cfg.Logger.Warn("a debounce or batch fired for a function that no longer exists; its events are dropped", "function", in.AppID+"/"+in.FunctionID, "events", len(in.Events))
		return nil
	}
	first := in.Events[0]
	e := &store.Event{ID: first.Event.ID, Name: first.Event.Name, Data: first.Event.Data, TS: first.Event.TS, V: first.Event.V, ReceivedAt: time.UnixMilli(first.ReceivedMS)}
	acts := newActivations([]store.Event{*e})
	s := d.plan(acts, 0, fn)
	s.cancels = nil // debounce and batch refuse cancelOn at sync
	if fn.Config.Batch != nil {
		s.req.Events = make([]wire.Event, len(in.Events))
		for i, pe := range in.Events {
			s.req.Events[i] = pe.Event
		}
	}
	d.runOptions(ctx, s)
	if err := d.startWorkflow(ctx, s); err != nil {
		return err
	}
	ids := make([]string, len(in.Events))
	for i, pe := range in.Events {
		ids[i] = pe.Event.ID
	}
	if err := d.cfg.Store.RecordRun(ctx, s.run, ids); err != nil {
		return fmt.Errorf("record run %s: %w", s.run.ID, err)
	}
	d.cfg.Metrics.started.Inc()
	return nil
}

// ClosedWorkflows reports, for each workflow id, whether it has no open
// execution. It is the activity wire.ActivityClosedWorkflows, with which a
// semaphore frees the slots of runs that ended without returning them.
func (d *Dispatcher) ClosedWorkflows(ctx context.Context, ids []string) ([]bool, error) {
	out := make([]bool, len(ids))
	for i, id := range ids {
		open, err := d.isOpen(ctx, id)
		if err != nil {
			return nil, err
		}
		out[i] = !open
	}
	return out, nil
}
