package registry

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herald-run/herald/internal/wire"
	"github.com/herald-run/herald/triggers"
)

// validateOne validates a one-function app and returns its problems.
func validateOne(t *testing.T, f wire.FunctionConfig) []string {
	t.Helper()
	env, err := triggers.NewEnv()
	require.NoError(t, err)
	r := &Registry{cfg: Config{Env: env}}
	r.waitEnv, err = triggers.NewWaitEnv()
	require.NoError(t, err)
	if f.ID == "" {
		f.ID = "fn"
	}
	if f.Triggers == nil {
		f.Triggers = []wire.TriggerConfig{{Event: "a/b"}}
	}
	err = r.Validate("app", wire.SyncRequest{TaskQueue: "q", Functions: []wire.FunctionConfig{f}})
	if err == nil {
		return nil
	}
	var ice *InvalidConfigError
	require.True(t, errors.As(err, &ice), err)
	return ice.Problems
}

func TestValidateFlowAcceptsEveryOption(t *testing.T) {
	require.Empty(t, validateOne(t, wire.FunctionConfig{
		Concurrency: []wire.ConcurrencyConfig{{Limit: 2}, {Limit: 5, Key: "event.data.user", Scope: wire.ScopeEnv}},
		Throttle:    &wire.ThrottleConfig{Limit: 10, PeriodMS: 60_000, Burst: 2, Key: `"t-" + event.data.user`},
		RateLimit:   &wire.RateLimitConfig{Limit: 1, PeriodMS: 10_000, Key: "event.data.user"},
		Priority:    &wire.PriorityConfig{Run: `event.data.plan == "pro" ? 300 : 0`},
		Singleton:   &wire.SingletonConfig{Key: "event.data.user", Mode: wire.SingletonCancel},
		Idempotency: "event.data.orderId",
		Timeouts:    &wire.TimeoutsConfig{StartMS: 5000, FinishMS: 60_000},
	}))
	require.Empty(t, validateOne(t, wire.FunctionConfig{Debounce: &wire.DebounceConfig{PeriodMS: 2000, Key: "event.data.docId", TimeoutMS: 10_000}}))
	require.Empty(t, validateOne(t, wire.FunctionConfig{Batch: &wire.BatchConfig{MaxSize: 10, TimeoutMS: 2000, If: "event.data.size < 100"},
		Concurrency: []wire.ConcurrencyConfig{{Limit: 1}}, Timeouts: &wire.TimeoutsConfig{FinishMS: 1000}}))
}

func TestValidateFlowProblems(t *testing.T) {
	for name, tc := range map[string]struct {
		f    wire.FunctionConfig
		want []string
	}{
		"too many concurrency limits": {wire.FunctionConfig{Concurrency: []wire.ConcurrencyConfig{{Limit: 1}, {Limit: 1}, {Limit: 1}}},
			[]string{"has 3 concurrency limits; at most 2"}},
		"concurrency limit and scope": {wire.FunctionConfig{Concurrency: []wire.ConcurrencyConfig{{Limit: 0}, {Limit: 1, Scope: "account"}}},
			[]string{"concurrency 0: limit must be between 1", `concurrency 1: scope must be "fn" or "env", not "account"`}},
		"env scope needs a key": {wire.FunctionConfig{Concurrency: []wire.ConcurrencyConfig{{Limit: 1, Scope: wire.ScopeEnv}}},
			[]string{`scope "env" needs a key`}},
		"bad key expression": {wire.FunctionConfig{Idempotency: "event.data.("},
			[]string{"idempotency key: triggers: expression"}},
		"key of the wrong type": {wire.FunctionConfig{Singleton: &wire.SingletonConfig{Key: "[1]"}},
			[]string{`singleton key: triggers: expression "[1]": must evaluate to a string, number or bool`}},
		"priority not a number": {wire.FunctionConfig{Priority: &wire.PriorityConfig{Run: `"high"`}},
			[]string{`priority: run: triggers: expression "\"high\"": must evaluate to a number`}},
		"rate limit bounds": {wire.FunctionConfig{RateLimit: &wire.RateLimitConfig{Limit: 0, PeriodMS: 25 * 3600 * 1000}},
			[]string{"rate_limit: limit must be at least 1", "rate_limit: period must be between 1s and 24h0m0s"}},
		"throttle bounds": {wire.FunctionConfig{Throttle: &wire.ThrottleConfig{Limit: 1, PeriodMS: 10, Burst: -1}},
			[]string{"throttle: burst must not be negative", "throttle: period must be between 1s"}},
		"singleton mode": {wire.FunctionConfig{Singleton: &wire.SingletonConfig{Mode: "queue"}},
			[]string{`singleton: mode must be "skip" or "cancel", not "queue"`}},
		"batch bounds": {wire.FunctionConfig{Batch: &wire.BatchConfig{MaxSize: 0, TimeoutMS: 0, If: "1"}},
			[]string{"batch: max_size must be between 1 and 1000", "batch: timeout must be between", "batch: if:"}},
		"batch with cancel_on, debounce and singleton": {wire.FunctionConfig{
			Batch:     &wire.BatchConfig{MaxSize: 5, TimeoutMS: 1000},
			CancelOn:  []wire.CancelOnConfig{{Event: "a/c"}},
			Debounce:  &wire.DebounceConfig{PeriodMS: 1000},
			Singleton: &wire.SingletonConfig{},
		}, []string{"batch cannot be combined with cancel_on", "batch cannot be combined with debounce", "batch cannot be combined with singleton",
			"debounce cannot be combined with cancel_on", "debounce cannot be combined with singleton"}},
		"debounce with idempotency and rate limit": {wire.FunctionConfig{
			Debounce:    &wire.DebounceConfig{PeriodMS: 1000},
			Idempotency: "event.id",
			RateLimit:   &wire.RateLimitConfig{Limit: 1, PeriodMS: 1000},
		}, []string{"debounce cannot be combined with idempotency", "debounce cannot be combined with rate_limit"}},
		"timeouts bounds": {wire.FunctionConfig{Timeouts: &wire.TimeoutsConfig{StartMS: -1, FinishMS: wire.MaxWaitMS + 1}},
			[]string{"timeouts: start must be between", "timeouts: finish must be between"}},
	} {
		t.Run(name, func(t *testing.T) {
			problems := validateOne(t, tc.f)
			all := strings.Join(problems, "\n")
			for _, w := range tc.want {
				require.Contains(t, all, w)
			}
			require.Len(t, problems, len(tc.want), all)
		})
	}
}
