// Package waits owns the rule by which an event resolves a wait (a
// step.WaitForEvent or a cancelOn) and the binding of a wait's indexed key
// from the run's triggering event. The router applies the rule to the events
// it claims, and the registration endpoint to the events that arrived before
// the wait was stored; both use this package, so both decide alike. It does
// no I/O of its own: CatchUp reads through the store it is given.
package waits

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/herald-run/herald/internal/wire"
	"github.com/herald-run/herald/store"
	"github.com/herald-run/herald/triggers"
)

// DefaultEvalTimeout bounds one evaluation of a wait condition when
// NewMatcher is given none.
const DefaultEvalTimeout = 100 * time.Millisecond

// Matcher decides whether an event resolves a wait. It is safe for
// concurrent use.
type Matcher struct {
	env         *triggers.Env
	evalTimeout time.Duration
}

// NewMatcher returns a matcher over the wait CEL environment (`event` is the
// run's triggering event, `async` the candidate). evalTimeout bounds one
// condition's evaluation; 0 means DefaultEvalTimeout.
func NewMatcher(evalTimeout time.Duration) (*Matcher, error) {
	env, err := triggers.NewWaitEnv()
	if err != nil {
		return nil, err
	}
	if evalTimeout <= 0 {
		evalTimeout = DefaultEvalTimeout
	}
	return &Matcher{env: env, evalTimeout: evalTimeout}, nil
}

// Env returns the wait CEL environment.
func (m *Matcher) Env() *triggers.Env { return m.env }

// Matches reports whether the event e (with activation act) resolves w. The
// key was already compared by the caller when w came from an index lookup;
// it is compared again here so the function stands alone. The event that
// started the run never resolves its own wait.
func (m *Matcher) Matches(ctx context.Context, w store.Wait, e *store.Event, act map[string]any) (bool, error) {
	if e.Name != w.EventName || e.ReceivedAt.Before(w.Since) {
		return false, nil
	}
	if w.MatchPath != "" {
		if v, ok := triggers.PathValue(act, w.MatchPath); !ok || v != w.MatchValue {
			return false, nil
		}
	}
	var trig wire.Event
	if err := json.Unmarshal(w.TriggerEvent, &trig); err != nil {
		return false, fmt.Errorf("wait %s: trigger event: %w", w.ID, err)
	}
	if e.ID == trig.ID {
		return false, nil
	}
	if w.Expr == "" {
		return true, nil
	}
	prg, err := m.env.Cached(w.Expr)
	if err != nil {
		return false, err
	}
	tact, err := triggers.EventActivation(trig.Name, trig.Data, trig.ID, trig.TS, trig.V)
	if err != nil {
		return false, err
	}
	ectx, cancel := context.WithTimeout(ctx, m.evalTimeout)
	defer cancel()
	return prg.EvalWait(ectx, tact, act)
}

// Key is the indexed key of a wait: the candidate event's value at Path must
// equal Value.
type Key struct {
	Path  string
	Value string
}

// BindKey returns the indexed key of a wait with the given match path and
// condition, bound to the run's triggering event (its activation trigger).
//
// With a match path, the key is that path and the trigger's value there;
// bound is false when the trigger has no value there, so no event can match.
// Without one, an `async.x == event.y` conjunct of cond is indexed the same
// way (path x, the trigger's value at y); when cond has none, or the trigger
// has no value at y, the wait has no key (Key{}, true) and every event of its
// name is a candidate.
func (m *Matcher) BindKey(match, cond string, trigger map[string]any) (k Key, bound bool) {
	if match != "" {
		v, ok := triggers.PathValue(trigger, match)
		if !ok {
			return Key{}, false
		}
		return Key{Path: match, Value: v}, true
	}
	if cond == "" {
		return Key{}, true
	}
	if asyncPath, eventPath, ok := m.env.EqualityKey(cond); ok {
		if v, ok := triggers.PathValue(trigger, eventPath); ok {
			return Key{Path: asyncPath, Value: v}, true
		}
	}
	return Key{}, true
}

// Events is what CatchUp reads and writes through: the store's events by
// name and key, and the wait's resolution.
type Events interface {
	EventsSince(ctx context.Context, name string, since time.Time, match store.WaitKey, limit int) ([]store.Event, error)
	ResolveWait(ctx context.Context, waitID, eventID string) (bool, error)
}

// catchUpPage is how many events CatchUp reads at a time.
const catchUpPage = 1000

// CatchUp looks for an event already stored that resolves w: one accepted
// since w began (w.Since, the run's trigger) that the router could not match
// against w because w was not stored yet when the event was dispatched. It
// pages through the events of w's name from w.Since (pre-filtered by w's key
// in the store), and resolves w with the first that matches. It returns that
// event's id, empty when none matches, and won, false when w was resolved by
// someone else first (the router, whose own delivery then stands).
func (m *Matcher) CatchUp(ctx context.Context, st Events, w store.Wait) (eventID string, won bool, err error) {
	since, seen := w.Since, map[string]bool{}
	for {
		events, err := st.EventsSince(ctx, w.EventName, since, store.WaitKey{MatchPath: w.MatchPath, MatchValue: w.MatchValue}, catchUpPage)
		if err != nil {
			return "", false, err
		}
		for i := range events {
			e := &events[i]
			if seen[e.ID] {
				continue
			}
			seen[e.ID] = true
			act, err := triggers.EventActivation(e.Name, e.Data, e.ID, e.TS, e.V)
			if err != nil {
				continue
			}
			if ok, err := m.Matches(ctx, w, e, act); err != nil || !ok {
				continue
			}
			won, err := st.ResolveWait(ctx, w.ID, e.ID)
			if err != nil {
				return "", false, err
			}
			return e.ID, won, nil
		}
		if len(events) < catchUpPage {
			return "", false, nil
		}
		next := events[len(events)-1].ReceivedAt
		if !next.After(since) {
			next = since.Add(time.Millisecond) // a page within one millisecond: move on
		}
		since = next
	}
}
