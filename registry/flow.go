package registry

import (
	"fmt"
	"time"

	"github.com/herald-run/herald/internal/wire"
)

// Bounds of the flow-control options.
const (
	MaxConcurrency      = 2
	MaxConcurrencyLimit = 100_000
	MaxBatchSize        = 1000
	maxRateLimitPeriod  = 24 * time.Hour
	maxPeriod           = 7 * 24 * time.Hour
	maxBatchTimeout     = time.Hour
	minPeriod           = time.Second
	maxWait             = time.Duration(wire.MaxWaitMS) * time.Millisecond
)

// validateFlow adds the problems of f's flow-control options.
func (r *Registry) validateFlow(where string, f wire.FunctionConfig, add func(string, ...any)) {
	key := func(what, expr string) {
		if expr == "" {
			return
		}
		if _, err := r.cfg.Env.CompileKey(expr); err != nil {
			add("%s: %s key: %v", where, what, err)
		}
	}
	period := func(what string, ms int64, lo, hi time.Duration) {
		if d := time.Duration(ms) * time.Millisecond; d < lo || d > hi {
			add("%s: %s must be between %s and %s", where, what, lo, hi)
		}
	}
	if len(f.Concurrency) > MaxConcurrency {
		add("%s: has %d concurrency limits; at most %d are allowed", where, len(f.Concurrency), MaxConcurrency)
	}
	for i, c := range f.Concurrency {
		cw := fmt.Sprintf("concurrency %d", i)
		if c.Limit < 1 || c.Limit > MaxConcurrencyLimit {
			add("%s: %s: limit must be between 1 and %d", where, cw, MaxConcurrencyLimit)
		}
		switch c.Scope {
		case "", wire.ScopeFunction:
		case wire.ScopeEnv:
			if c.Key == "" {
				add("%s: %s: scope %q needs a key: it is what functions share", where, cw, wire.ScopeEnv)
			}
		default:
			add("%s: %s: scope must be %q or %q, not %q", where, cw, wire.ScopeFunction, wire.ScopeEnv, c.Scope)
		}
		key(cw, c.Key)
	}
	if t := f.Throttle; t != nil {
		if t.Limit < 1 {
			add("%s: throttle: limit must be at least 1", where)
		}
		if t.Burst < 0 {
			add("%s: throttle: burst must not be negative", where)
		}
		period("throttle: period", t.PeriodMS, minPeriod, maxPeriod)
		key("throttle", t.Key)
	}
	if rl := f.RateLimit; rl != nil {
		if rl.Limit < 1 {
			add("%s: rate_limit: limit must be at least 1", where)
		}
		period("rate_limit: period", rl.PeriodMS, minPeriod, maxRateLimitPeriod)
		key("rate_limit", rl.Key)
	}
	if d := f.Debounce; d != nil {
		period("debounce: period", d.PeriodMS, minPeriod, maxPeriod)
		if d.TimeoutMS != 0 {
			period("debounce: timeout", d.TimeoutMS, minPeriod, maxPeriod)
		}
		key("debounce", d.Key)
	}
	if b := f.Batch; b != nil {
		if b.MaxSize < 1 || b.MaxSize > MaxBatchSize {
			add("%s: batch: max_size must be between 1 and %d", where, MaxBatchSize)
		}
		period("batch: timeout", b.TimeoutMS, minPeriod, maxBatchTimeout)
		key("batch", b.Key)
		if b.If != "" {
			if _, err := r.cfg.Env.Compile(b.If); err != nil {
				add("%s: batch: if: %v", where, err)
			}
		}
	}
	if p := f.Priority; p != nil {
		if _, err := r.cfg.Env.CompileInt(p.Run); err != nil {
			add("%s: priority: run: %v", where, err)
		}
	}
	if s := f.Singleton; s != nil {
		if s.Mode != "" && s.Mode != wire.SingletonSkip && s.Mode != wire.SingletonCancel {
			add("%s: singleton: mode must be %q or %q, not %q", where, wire.SingletonSkip, wire.SingletonCancel, s.Mode)
		}
		key("singleton", s.Key)
	}
	key("idempotency", f.Idempotency)
	if t := f.Timeouts; t != nil {
		if t.StartMS < 0 || t.StartMS > wire.MaxWaitMS {
			add("%s: timeouts: start must be between 0 and %s", where, maxWait)
		}
		if t.FinishMS < 0 || t.FinishMS > wire.MaxWaitMS {
			add("%s: timeouts: finish must be between 0 and %s", where, maxWait)
		}
	}

	// Debounce and batch hand events to a workflow that starts the run later,
	// outside the dispatch of any one event, so the options that decide per
	// event at dispatch cannot apply.
	for _, entity := range []struct {
		name string
		on   bool
	}{{"batch", f.Batch != nil}, {"debounce", f.Debounce != nil}} {
		if !entity.on {
			continue
		}
		conflicts := []struct {
			name string
			on   bool
		}{
			{"cancel_on", len(f.CancelOn) > 0},
			{"singleton", f.Singleton != nil},
			{"idempotency", f.Idempotency != ""},
			{"rate_limit", f.RateLimit != nil},
			{"throttle", f.Throttle != nil},
			{"timeouts.start", f.Timeouts != nil && f.Timeouts.StartMS > 0},
		}
		if entity.name == "batch" {
			conflicts = append(conflicts, struct {
				name string
				on   bool
			}{"debounce", f.Debounce != nil})
		}
		for _, c := range conflicts {
			if c.on {
				add("%s: %s cannot be combined with %s: %s decides per event when it is dispatched, while %s starts the run later for %s",
					where, entity.name, c.name, c.name, entity.name, map[string]string{"batch": "many events", "debounce": "the last event"}[entity.name])
			}
		}
	}
}
