package herald

import (
	"time"

	"github.com/herald-run/herald/internal/wire"
)

// Flow control. Every Key below is a CEL expression over `event`, the
// triggering event, whose value (a string, number or bool) names the key, for
// example `event.data.userId`; an empty Key means one key for the whole
// function. Herald compiles them at sync and evaluates them when it
// dispatches an event, outside workflow code.

// Concurrency scopes.
const (
	// ScopeFunction (the default) counts only this function's steps.
	ScopeFunction = wire.ScopeFunction
	// ScopeEnv shares the limit with every function that uses the same Key
	// with ScopeEnv.
	ScopeEnv = wire.ScopeEnv
)

// Concurrency limits how many of the function's steps execute at once, across
// all workers. A run that sleeps or waits for an event holds no slot; steps
// waiting for a slot are admitted first come, first served per key.
type Concurrency struct {
	// Limit is the most steps executing at once per key (1 or more).
	Limit int
	Key   string
	// Scope is ScopeFunction (default) or ScopeEnv.
	Scope string
}

// Throttle limits how many runs start per period. Runs over the limit are
// queued and start later; none is dropped.
type Throttle struct {
	// Limit runs start per Period (evenly spaced: one every Period/Limit).
	Limit  int
	Period time.Duration
	// Burst lets that many more runs start at once before spacing applies.
	Burst int
	Key   string
}

// RateLimit limits how many runs happen per period. Runs over the limit are
// skipped: the event is stored and the run is recorded Skipped with the reason.
type RateLimit struct {
	// Limit runs per Period (at most 24 hours).
	Limit  int
	Period time.Duration
	Key    string
}

// Debounce delays a run until events for a key stop arriving: one run starts
// Period after the last event, with that event.
type Debounce struct {
	Period time.Duration
	Key    string
	// Timeout, when set, caps how long after the first event of a burst the
	// run can be pushed back.
	Timeout time.Duration
}

// Batch runs the function once for many events, which it receives in
// Input.Events (oldest first).
type Batch struct {
	// MaxSize events at most per run (2 to 1000).
	MaxSize int
	// Timeout after its first event, a batch runs even if not full.
	Timeout time.Duration
	Key     string
	// If, when set, is a condition over `event`; an event for which it is
	// false runs alone at once.
	If string
}

// Priority orders runs waiting for a worker.
type Priority struct {
	// Run is an integer expression over `event` between -600 and 600
	// (clamped); higher runs sooner. It maps to Temporal's task priority for
	// the run and its steps: 300 and up is priority 1, 1 to 299 is 2, 0 is 3
	// (Temporal's default), -299 to -1 is 4, -300 and below is 5.
	Run string
}

// Singleton modes.
const (
	// SingletonSkip skips a new run while one runs for the key.
	SingletonSkip = wire.SingletonSkip
	// SingletonCancel cancels the running one and starts the new one.
	SingletonCancel = wire.SingletonCancel
)

// Singleton allows one active run per key.
type Singleton struct {
	Key string
	// Mode is SingletonSkip (default) or SingletonCancel.
	Mode string
}

// Timeouts bound how long a run may wait to start and to finish.
type Timeouts struct {
	// Start: a run that would start later than this after its event was
	// received (queued by a throttle, or a backlog) is skipped.
	Start time.Duration
	// Finish: a run still running this long after it started is cancelled.
	Finish time.Duration
}

// flowConfig fills c with the function's flow-control options.
func (f *Function) flowConfig(c *wire.FunctionConfig) {
	o := f.opts
	for _, cc := range o.Concurrency {
		c.Concurrency = append(c.Concurrency, wire.ConcurrencyConfig{Limit: cc.Limit, Key: cc.Key, Scope: cc.Scope})
	}
	if t := o.Throttle; t != nil {
		c.Throttle = &wire.ThrottleConfig{Limit: t.Limit, PeriodMS: t.Period.Milliseconds(), Burst: t.Burst, Key: t.Key}
	}
	if r := o.RateLimit; r != nil {
		c.RateLimit = &wire.RateLimitConfig{Limit: r.Limit, PeriodMS: r.Period.Milliseconds(), Key: r.Key}
	}
	if d := o.Debounce; d != nil {
		c.Debounce = &wire.DebounceConfig{PeriodMS: d.Period.Milliseconds(), Key: d.Key, TimeoutMS: d.Timeout.Milliseconds()}
	}
	if b := o.Batch; b != nil {
		c.Batch = &wire.BatchConfig{MaxSize: b.MaxSize, TimeoutMS: b.Timeout.Milliseconds(), Key: b.Key, If: b.If}
	}
	if p := o.Priority; p != nil {
		c.Priority = &wire.PriorityConfig{Run: p.Run}
	}
	if s := o.Singleton; s != nil {
		c.Singleton = &wire.SingletonConfig{Key: s.Key, Mode: s.Mode}
	}
	c.Idempotency = o.Idempotency
	if t := o.Timeouts; t != nil {
		c.Timeouts = &wire.TimeoutsConfig{StartMS: t.Start.Milliseconds(), FinishMS: t.Finish.Milliseconds()}
	}
}
