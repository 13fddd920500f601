package router

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/herald-run/herald/internal/wire"
	"github.com/herald-run/herald/registry"
	"github.com/herald-run/herald/store"
)

// ErrNoFunction is returned by StartReplay for a function that is not
// synced (any more).
var ErrNoFunction = errors.New("router: no such function")

// Replay is one run that a replay job or a rerun starts: a new run of a
// function for events that are already stored, with a run id and a workflow
// id of its own. The run it repeats is left as it was.
type Replay struct {
	// Function is "<app>/<function id>".
	Function string
	// Events are the run's events: its own event first, then the rest of
	// its batch. A function without batching runs with the first only.
	Events []store.Event
	// ReplayOf is the run repeated (empty when a replay runs an event that
	// had no run); ReplayID the replay job (empty for a rerun).
	ReplayOf, ReplayID string
	// Key and At make the run id: the same (Key, At) give the same run, so
	// a replay job taken over by another replica starts nothing twice.
	Key string
	At  time.Time
}

// StartReplay records and starts the run r describes. On error the run may
// be recorded but not started: call it again with the same r, or give the
// run up with FinishRun. Concurrency limits,
// throttles and priorities apply to it as to any run. Rate limits,
// idempotency keys, singletons, debounce and batching windows do not: each
// would skip or swallow the run that was explicitly asked for. A paused
// function's replay is refused (ErrPaused): resume it first.
func (d *Dispatcher) StartReplay(ctx context.Context, r Replay) (store.Run, error) {
	if len(r.Events) == 0 {
		return store.Run{}, errors.New("router: a replay needs an event")
	}
	snap, err := d.cfg.Registry.Snapshot(ctx)
	if err != nil {
		return store.Run{}, err
	}
	fn := snap.Functions[r.Function]
	if fn == nil {
		return store.Run{}, fmt.Errorf("%w: %s", ErrNoFunction, r.Function)
	}
	if fn.PausedAt != nil {
		return store.Run{}, fmt.Errorf("%w: %s", ErrPaused, r.Function)
	}
	acts := newActivations(r.Events[:1])
	s := d.plan(acts, 0, fn)
	e := s.event
	runID := wire.RunID(fn.AppID, fn.ID, r.Key, r.At)
	wfID := wire.WorkflowID(fn.AppID, fn.ID, e.ID) + "/replay/" + runID
	s.req.RunID = runID
	s.run.ID, s.run.WorkflowID, s.run.ReplayOf, s.run.ReplayID = runID, wfID, r.ReplayOf, r.ReplayID
	if fn.Config.Batch != nil {
		s.req.Events = make([]wire.Event, len(r.Events))
		for i, x := range r.Events {
			s.req.Events[i] = wire.Event{ID: x.ID, Name: x.Name, Data: x.Data, TS: x.TS, V: x.V}
		}
	}
	// cancelOn waits for the new run, matching only events from now on: an
	// old cancelling event must not cancel the replay.
	now := time.Now()
	s.cancels = cancelWaits(d.waits, fn, e, runID, wfID, func() map[string]any {
		a, _ := acts.get(0)
		return a
	})
	for i := range s.cancels {
		s.cancels[i].ID = wire.RunID(fn.AppID, fn.ID, runID+"/cancel/"+fmt.Sprint(i), r.At)
		s.cancels[i].Since = now
	}
	d.runOptions(ctx, s)
	ids := make([]string, len(r.Events))
	for i, x := range r.Events {
		ids[i] = x.ID
	}
	if fn.Config.Batch == nil {
		ids = ids[:1]
	}
	// The run is recorded before its workflow starts: a workflow that ends
	// at once then finds its row, and a failed start is retried (same ids)
	// over it.
	start := func(ctx context.Context) error {
		s.run.Status, s.run.StartedAt = wire.RunRunning, time.Now()
		if s.notBefore.After(s.run.StartedAt) {
			s.run.Status = wire.RunScheduled
		}
		if err := d.cfg.Store.RecordRun(ctx, s.run, ids); err != nil {
			return fmt.Errorf("record run %s: %w", runID, err)
		}
		for _, w := range s.cancels {
			if _, err := d.cfg.Store.RegisterWait(ctx, w); err != nil {
				return fmt.Errorf("register the cancelOn wait of run %s: %w", runID, err)
			}
		}
		return d.startWorkflow(ctx, s)
	}
	if th := fn.Config.Throttle; th != nil {
		err = d.cfg.Store.FlowTx(ctx, func(ctx context.Context, tx store.ClaimTx) error {
			if err := d.throttle(ctx, tx, s, th, now); err != nil {
				return err
			}
			return start(ctx) // a failed start rolls its admission back
		})
	} else {
		err = start(ctx)
	}
	if err != nil {
		d.cfg.Metrics.temporalErrors.Inc()
		return s.run, err
	}
	d.cfg.Metrics.started.Inc()
	d.cfg.Logger.Info("replayed run started", "function", fn.Key(), "run_id", runID, "replay_of", r.ReplayOf, "replay_id", r.ReplayID)
	return s.run, nil
}

// ErrPaused is returned by StartReplay for a paused function.
var ErrPaused = errors.New("router: the function is paused")

// throttle delays s by the function's throttle, in tx.
func (d *Dispatcher) throttle(ctx context.Context, tx store.ClaimTx, s *start, th *wire.ThrottleConfig, now time.Time) error {
	key, _ := d.evalKey(ctx, s, "throttle", th.Key)
	emission := time.Duration(th.PeriodMS) * time.Millisecond / time.Duration(th.Limit)
	startAt, _, err := tx.Limit(ctx, "throttle/"+s.fn.Key()+"/"+keyPart(key), now, emission, time.Duration(th.Burst)*emission, now.Add(100*365*24*time.Hour))
	if err != nil {
		return err
	}
	s.notBefore = startAt
	return nil
}

// Function returns the synced function with key "<app>/<id>", or nil.
func (d *Dispatcher) Function(ctx context.Context, key string) (*registry.Func, error) {
	snap, err := d.cfg.Registry.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	return snap.Functions[key], nil
}
