package triggers

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// Trigger is one event trigger of one function.
type Trigger struct {
	// FunctionKey identifies the function, such as "app/fn"; Matcher
	// treats it as opaque. Required.
	FunctionKey string
	// Pattern is an event name or wildcard accepted by [ValidatePattern].
	Pattern string
	// If is the trigger's condition; nil means always.
	If *Program
	// Index is the trigger's position in its function's trigger list,
	// reported back in errors.
	Index int
}

// Matcher finds the functions an event triggers. Lookups cost one map
// access for the exact name plus one per '/' or '.' in the name, however
// many triggers there are. A Matcher is immutable once built and safe for
// concurrent use; build a new one when functions change.
type Matcher struct {
	triggers []Trigger
	exact    map[string][]int // event name → indexes into triggers, ascending
	prefix   map[string][]int // wildcard prefix incl. separator → indexes, ascending
}

// NewMatcher indexes triggers. It copies the slice, so later changes to it
// do not affect the Matcher. It fails if a trigger has an empty FunctionKey
// or an invalid Pattern, naming the function and trigger.
func NewMatcher(triggers []Trigger) (*Matcher, error) {
	m := &Matcher{
		triggers: slices.Clone(triggers),
		exact:    make(map[string][]int),
		prefix:   make(map[string][]int),
	}
	var errs []error
	for i, t := range m.triggers {
		if t.FunctionKey == "" {
			errs = append(errs, fmt.Errorf("triggers: trigger %d (pattern %q): empty function key", t.Index, t.Pattern))
			continue
		}
		if err := ValidatePattern(t.Pattern); err != nil {
			errs = append(errs, fmt.Errorf("function %q trigger %d: %w", t.FunctionKey, t.Index, err))
			continue
		}
		if p, ok := wildcardPrefix(t.Pattern); ok {
			m.prefix[p] = append(m.prefix[p], i)
		} else {
			m.exact[t.Pattern] = append(m.exact[t.Pattern], i)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return m, nil
}

// Len returns the number of triggers in the Matcher.
func (m *Matcher) Len() int { return len(m.triggers) }

// Candidates returns the triggers whose Pattern matches name, by
// [MatchName], in the order they were given to NewMatcher. Their If
// conditions are not evaluated. The result is a new slice.
func (m *Matcher) Candidates(name string) []Trigger {
	idx := m.candidates(name)
	out := make([]Trigger, len(idx))
	for i, j := range idx {
		out[i] = m.triggers[j]
	}
	return out
}

func (m *Matcher) candidates(name string) []int {
	var idx []int
	lists := 0
	if l := m.exact[name]; len(l) > 0 {
		idx = append(idx, l...)
		lists++
	}
	if len(m.prefix) > 0 {
		// A wildcard must leave at least one character for '*', hence the
		// bound len(name)-1.
		for i := 0; i < len(name)-1; i++ {
			if !isSep(name[i]) {
				continue
			}
			if l := m.prefix[name[:i+1]]; len(l) > 0 {
				idx = append(idx, l...)
				lists++
			}
		}
	}
	if lists > 1 {
		slices.Sort(idx)
	}
	return idx
}

// EvalError is a trigger condition that failed to evaluate for an event.
// Matcher treats the trigger as not matching.
type EvalError struct {
	FunctionKey  string
	TriggerIndex int
	Pattern      string
	Err          error
}

// Error names the function, trigger and cause.
func (e *EvalError) Error() string {
	return fmt.Sprintf("triggers: function %q trigger %d (%s): %v", e.FunctionKey, e.TriggerIndex, e.Pattern, e.Err)
}

// Unwrap returns the evaluation error.
func (e *EvalError) Unwrap() error { return e.Err }

// Match returns the keys of the functions that event triggers, each once
// even when several of its triggers match, sorted ascending. event is the
// CEL activation from [EventActivation] and name the event's name. A
// trigger matches when its Pattern matches name and its If is nil or
// evaluates to true; once a function has matched, its remaining triggers
// are not evaluated. A condition that fails to evaluate counts as false
// and is reported in evalErrs as an *EvalError, for the caller to log and
// count; the other triggers are still tried. ctx bounds the evaluations.
func (m *Matcher) Match(ctx context.Context, event map[string]any, name string) (keys []string, evalErrs []error) {
	var seen map[string]bool // built only when many functions match; a short scan is cheaper
	for _, j := range m.candidates(name) {
		t := &m.triggers[j]
		if seen != nil {
			if seen[t.FunctionKey] {
				continue
			}
		} else if slices.Contains(keys, t.FunctionKey) {
			continue
		}
		if t.If != nil {
			ok, err := t.If.Eval(ctx, event)
			if err != nil {
				evalErrs = append(evalErrs, &EvalError{FunctionKey: t.FunctionKey, TriggerIndex: t.Index, Pattern: t.Pattern, Err: err})
				continue
			}
			if !ok {
				continue
			}
		}
		keys = append(keys, t.FunctionKey)
		if seen == nil && len(keys) > 16 {
			seen = make(map[string]bool, 2*len(keys))
			for _, k := range keys {
				seen[k] = true
			}
		} else if seen != nil {
			seen[t.FunctionKey] = true
		}
	}
	slices.Sort(keys)
	return keys, evalErrs
}
