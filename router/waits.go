package router

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/herald-run/herald/internal/temporalx"
	"github.com/herald-run/herald/internal/wire"
	"github.com/herald-run/herald/registry"
	"github.com/herald-run/herald/store"
	"github.com/herald-run/herald/triggers"
	"github.com/herald-run/herald/waits"
)

// resolution is one wait resolved by one event of the batch.
type resolution struct {
	wait  store.Wait
	event *store.Event
	err   error
}

// resolveWaits finds the waits this batch resolves, signals or cancels their
// runs, and returns the resolutions to record plus the events that must stay
// pending because Temporal refused a call.
func (d *Dispatcher) resolveWaits(ctx context.Context, tx store.ClaimTx, events []store.Event, acts *activations) ([]store.WaitResolution, map[string]error, error) {
	failed := map[string]error{}
	found, err := d.matchWaits(ctx, tx, events, acts)
	if err != nil || len(found) == 0 {
		return nil, failed, err
	}
	var wg sync.WaitGroup
	for _, r := range found {
		d.sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-d.sem; wg.Done() }()
			r.err = d.deliver(ctx, r)
		}()
	}
	wg.Wait()
	var out []store.WaitResolution
	for _, r := range found {
		if r.err != nil {
			failed[r.event.ID] = r.err
			continue
		}
		out = append(out, store.WaitResolution{WaitID: r.wait.ID, EventID: r.event.ID})
		d.cfg.Metrics.waitsResolved.Inc()
	}
	return out, failed, nil
}

// matchWaits looks up the candidate waits of a batch (one index probe per
// key) and picks, for each, the first event of the batch that resolves it.
func (d *Dispatcher) matchWaits(ctx context.Context, tx store.ClaimTx, events []store.Event, acts *activations) ([]*resolution, error) {
	names := make([]string, 0, 4)
	seen := map[string]bool{}
	for i := range events {
		if !seen[events[i].Name] {
			seen[events[i].Name] = true
			names = append(names, events[i].Name)
		}
	}
	paths, err := tx.WaitPaths(ctx, names)
	if err != nil {
		return nil, err
	}
	activation := func(i int) map[string]any {
		act, err := acts.get(i)
		if err != nil {
			// Data that does not decode can still match a wait on its name.
			return map[string]any{"name": events[i].Name, "id": events[i].ID}
		}
		return act
	}
	var keys []store.WaitKey
	byKey := map[store.WaitKey][]int{} // events of the batch by key, in batch order
	byName := map[string][]int{}
	for i := range events {
		byName[events[i].Name] = append(byName[events[i].Name], i)
		for _, p := range paths[events[i].Name] {
			if p == "" {
				continue
			}
			if v, ok := triggers.PathValue(activation(i), p); ok {
				k := store.WaitKey{EventName: events[i].Name, MatchPath: p, MatchValue: v}
				if len(byKey[k]) == 0 {
					keys = append(keys, k)
				}
				byKey[k] = append(byKey[k], i)
			}
		}
	}
	waits, err := tx.CandidateWaits(ctx, names, keys)
	if err != nil || len(waits) == 0 {
		return nil, err
	}
	var found []*resolution
	for _, w := range waits {
		candidates := byName[w.EventName] // a non-indexable wait sees every event of its name
		if w.MatchPath != "" {
			candidates = byKey[store.WaitKey{EventName: w.EventName, MatchPath: w.MatchPath, MatchValue: w.MatchValue}]
		}
		for _, i := range candidates {
			ok, err := d.waits.Matches(ctx, w, &events[i], activation(i))
			if err != nil {
				d.cfg.Metrics.evalErrors.Inc()
				d.cfg.Logger.Debug("wait condition failed on an event; counted as no match", "wait", w.ID, "event_id", events[i].ID, "err", err)
				continue
			}
			if ok {
				found = append(found, &resolution{wait: w, event: &events[i]})
				break // the first matching event wins
			}
		}
	}
	return found, nil
}

// deliver signals the waiting run with the event, or cancels the run for a
// cancelOn. A run that no longer exists needs nothing.
func (d *Dispatcher) deliver(ctx context.Context, r *resolution) error {
	cctx, cancel := context.WithTimeout(ctx, d.cfg.StartTimeout)
	defer cancel()
	var err error
	switch r.wait.Kind {
	case store.WaitKindCancel:
		err = d.cfg.Temporal.Cancel(cctx, r.wait.WorkflowID)
	default:
		e := r.event
		err = d.cfg.Temporal.Signal(cctx, r.wait.WorkflowID, wire.WaitSignal(r.wait.StepID),
			wire.Event{ID: e.ID, Name: e.Name, Data: e.Data, TS: e.TS, V: e.V})
	}
	if errors.Is(err, temporalx.ErrNotFound) {
		return nil
	}
	if err != nil {
		d.cfg.Metrics.temporalErrors.Inc()
		return fmt.Errorf("deliver event %s to %s: %w", r.event.ID, r.wait.WorkflowID, err)
	}
	return nil
}

// cancelWaits returns the cancelOn waits of a run fn starts for e.
func cancelWaits(m *waits.Matcher, fn *registry.Func, e *store.Event, runID, workflowID string, act func() map[string]any) []store.Wait {
	if len(fn.Config.CancelOn) == 0 {
		return nil
	}
	trig, _ := json.Marshal(wire.Event{ID: e.ID, Name: e.Name, Data: e.Data, TS: e.TS, V: e.V})
	now := time.Now()
	out := make([]store.Wait, 0, len(fn.Config.CancelOn))
	for i, c := range fn.Config.CancelOn {
		timeout := time.Duration(c.TimeoutMS) * time.Millisecond
		if timeout <= 0 || c.TimeoutMS > wire.MaxWaitMS {
			timeout = time.Duration(wire.MaxWaitMS) * time.Millisecond
		}
		w := store.Wait{
			ID: wire.RunID(fn.AppID, fn.ID, e.ID+"/cancel/"+fmt.Sprint(i), e.ReceivedAt), Kind: store.WaitKindCancel,
			AppID: fn.AppID, FunctionID: fn.ID, RunID: runID, WorkflowID: workflowID,
			StepID: fmt.Sprintf("cancel-%d", i), EventName: c.Event, Expr: c.If,
			TriggerEvent: trig, Since: e.ReceivedAt, ExpiresAt: now.Add(timeout), CreatedAt: now,
		}
		k, ok := m.BindKey(c.Match, c.If, act())
		if !ok {
			continue // the trigger has no value at Match: nothing can match it
		}
		w.MatchPath, w.MatchValue = k.Path, k.Value
		out = append(out, w)
	}
	return out
}

// activations decodes each event of a batch for CEL once, on first use: wait
// matching, trigger matching and cancelOn keys share the result.
type activations struct {
	events []store.Event
	acts   []map[string]any
	errs   []error
	done   []bool
}

func newActivations(events []store.Event) *activations {
	n := len(events)
	return &activations{events: events, acts: make([]map[string]any, n), errs: make([]error, n), done: make([]bool, n)}
}

func (a *activations) get(i int) (map[string]any, error) {
	if !a.done[i] {
		e := &a.events[i]
		a.acts[i], a.errs[i] = triggers.EventActivation(e.Name, e.Data, e.ID, e.TS, e.V)
		a.done[i] = true
	}
	return a.acts[i], a.errs[i]
}
