package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/workflow"

	"github.com/herald-run/herald"
	"github.com/herald-run/herald/router"
	"github.com/herald-run/herald/step"
)

// gauges instruments the tracked step: how many run at once per test key,
// and the most seen.
var gauges = struct {
	sync.Mutex
	now, max map[string]int
	at       map[string][]time.Time
}{now: map[string]int{}, max: map[string]int{}, at: map[string][]time.Time{}}

// tracked counts itself as executing for hold, under key.
func tracked(ctx context.Context, key string, holdMS int) (int, error) {
	gauges.Lock()
	gauges.now[key]++
	if gauges.now[key] > gauges.max[key] {
		gauges.max[key] = gauges.now[key]
	}
	gauges.Unlock()
	defer func() {
		gauges.Lock()
		gauges.now[key]--
		gauges.Unlock()
	}()
	select {
	case <-time.After(time.Duration(holdMS) * time.Millisecond):
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	return 1, nil
}

// stamp records when it ran, under key.
func stamp(_ context.Context, key string) (int64, error) {
	now := time.Now()
	gauges.Lock()
	gauges.at[key] = append(gauges.at[key], now)
	gauges.Unlock()
	return now.UnixMilli(), nil
}

// batchIDs returns the ids it is given (a step, so the batch passes through
// Temporal like real work).
func batchIDs(_ context.Context, ids []string) ([]string, error) { return ids, nil }

type flowIn struct {
	Key   string `json:"key"`
	User  string `json:"user"`
	Doc   string `json:"doc"`
	Seq   int    `json:"seq"`
	Hold  int    `json:"hold"`
	Order string `json:"order"`
	Solo  bool   `json:"solo"`
	P     int    `json:"p"`
}

type flowOut struct {
	Seq int      `json:"seq"`
	IDs []string `json:"ids"`
}

// flowFn is a function with the given options whose body runs the tracked
// step (hold from the event, under its key), then reports the event's seq
// and the ids of the events it ran for.
func flowFn(opts herald.FunctionOpts) *herald.Function {
	return herald.NewFunction(opts, func(ctx workflow.Context, in herald.Input[flowIn]) (flowOut, error) {
		if in.Event.Data.Hold > 0 {
			if _, err := step.Run[int](ctx, "work", tracked, in.Event.Data.Key, in.Event.Data.Hold); err != nil {
				return flowOut{}, err
			}
		}
		ids := make([]string, len(in.Events))
		for i, e := range in.Events {
			ids[i] = e.ID
		}
		ids, err := step.Run[[]string](ctx, "ids", batchIDs, ids)
		return flowOut{Seq: in.Event.Data.Seq, IDs: ids}, err
	})
}

func ev(name string, data map[string]any) map[string]any {
	return map[string]any{"name": name, "data": data}
}

func TestConcurrencyLimit(t *testing.T) {
	t.Parallel()
	key := testKey(t, "conc-")
	b := setup(t, setupOpts{}, flowFn(herald.FunctionOpts{
		ID: "limited", Triggers: []herald.Trigger{herald.OnEvent("test/limited")},
		Concurrency: []herald.Concurrency{{Limit: 2}},
	}))
	var events []map[string]any
	for range 8 {
		events = append(events, ev("test/limited", map[string]any{"key": key, "hold": 400}))
	}
	sent := time.Now()
	ids := b.send(t, events...)
	for _, id := range ids {
		runs := b.waitRuns(t, id, 1)
		require.Equal(t, "Completed", runs[0].Status, runs[0].Error)
	}
	t.Logf("8 runs of a 400ms step, 2 at a time: %s", time.Since(sent))
	gauges.Lock()
	peak := gauges.max[key]
	gauges.Unlock()
	require.LessOrEqual(t, peak, 2, "steps executing at once")
	require.Equal(t, 2, peak, "eight runs at once should fill both slots")
}

func TestThrottleSpacesStarts(t *testing.T) {
	t.Parallel()
	key := testKey(t, "throttle-")
	b := setup(t, setupOpts{}, herald.NewFunction(herald.FunctionOpts{
		ID: "throttled", Triggers: []herald.Trigger{herald.OnEvent("test/throttled")},
		Throttle: &herald.Throttle{Limit: 1, Period: time.Second},
	}, func(ctx workflow.Context, in herald.Input[flowIn]) (int64, error) {
		return step.Run[int64](ctx, "stamp", stamp, in.Event.Data.Key)
	}))
	var events []map[string]any
	for range 4 {
		events = append(events, ev("test/throttled", map[string]any{"key": key}))
	}
	ids := b.send(t, events...)
	var starts []time.Time
	for _, id := range ids {
		runs := b.waitRuns(t, id, 1)
		require.Equal(t, "Completed", runs[0].Status, runs[0].Error)
		desc, err := b.temporal.DescribeWorkflowExecution(context.Background(), runs[0].WorkflowID, "")
		require.NoError(t, err)
		// When Temporal let the run start: its start time plus the delay the
		// throttle gave it.
		starts = append(starts, desc.GetWorkflowExecutionInfo().GetExecutionTime().AsTime())
	}
	sort.Slice(starts, func(i, j int) bool { return starts[i].Before(starts[j]) })
	for i := 1; i < len(starts); i++ {
		// The router computes the schedule exactly, but Temporal dates each
		// run from when its start call arrives. The calls go out concurrently,
		// and on a loaded 2-core CI machine one arrived 57ms after another
		// sent with it, so allow 150ms of arrival skew. Without the throttle
		// the four starts come within milliseconds of each other.
		require.GreaterOrEqual(t, starts[i].Sub(starts[i-1]), 850*time.Millisecond, "start %d came %s after the previous one", i, starts[i].Sub(starts[i-1]))
	}
	gauges.Lock()
	at := append([]time.Time(nil), gauges.at[key]...)
	gauges.Unlock()
	require.Len(t, at, 4)
	sort.Slice(at, func(i, j int) bool { return at[i].Before(at[j]) })
	for i := range at {
		require.False(t, at[i].Before(starts[i]), "step %d ran at %s, before its run's start %s", i, at[i], starts[i])
	}
}

func TestRateLimitSkips(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{}, flowFn(herald.FunctionOpts{
		ID: "limited-rate", Triggers: []herald.Trigger{herald.OnEvent("test/rate")},
		RateLimit: &herald.RateLimit{Limit: 2, Period: time.Hour, Key: "event.data.user"},
	}))
	var events []map[string]any
	for range 5 {
		events = append(events, ev("test/rate", map[string]any{"user": "a"}))
	}
	for range 3 {
		events = append(events, ev("test/rate", map[string]any{"user": "b"}))
	}
	ids := b.send(t, events...)
	count := map[string]map[string]int{"a": {}, "b": {}}
	for i, id := range ids {
		runs := b.waitRuns(t, id, 1)
		user := "a"
		if i >= 5 {
			user = "b"
		}
		count[user][runs[0].Status]++
		if runs[0].Status == "Skipped" {
			require.Contains(t, runs[0].Error, router.SkipRateLimit)
		}
	}
	require.Equal(t, map[string]map[string]int{"a": {"Completed": 2, "Skipped": 3}, "b": {"Completed": 2, "Skipped": 1}}, count)
}

func TestDebounceRunsOnceWithLastEvent(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{}, flowFn(herald.FunctionOpts{
		ID: "reindex", Triggers: []herald.Trigger{herald.OnEvent("test/doc.updated")},
		Debounce: &herald.Debounce{Period: 2 * time.Second, Key: "event.data.doc"},
	}))
	var ids []string
	for seq := 1; seq <= 5; seq++ {
		ids = append(ids, b.send(t, ev("test/doc.updated", map[string]any{"doc": "d1", "seq": seq}))...)
		time.Sleep(150 * time.Millisecond)
	}
	other := b.send(t, ev("test/doc.updated", map[string]any{"doc": "d2", "seq": 9}))[0]

	last := b.waitRuns(t, ids[4], 1)[0]
	require.Equal(t, "Completed", last.Status, last.Error)
	var out flowOut
	require.NoError(t, json.Unmarshal(last.Output, &out))
	require.Equal(t, 5, out.Seq)
	o := b.waitRuns(t, other, 1)[0]
	require.NoError(t, json.Unmarshal(o.Output, &out))
	require.Equal(t, 9, out.Seq, "another key is debounced on its own")
	// The run of the last event has started and ended; a run for an earlier
	// one would have started at the same time or sooner.
	for _, id := range ids[:4] {
		require.Empty(t, b.runs(t, id), "event %s was debounced away", id)
	}
}

func TestBatchOfTwentyFive(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{}, flowFn(herald.FunctionOpts{
		ID: "import", Triggers: []herald.Trigger{herald.OnEvent("test/row")},
		Batch: &herald.Batch{MaxSize: 10, Timeout: 2 * time.Second, If: "!has(event.data.solo) || !event.data.solo"},
	}))
	var events []map[string]any
	for i := range 25 {
		events = append(events, ev("test/row", map[string]any{"seq": i}))
	}
	sent := time.Now()
	ids := b.send(t, events...)
	solo := b.send(t, ev("test/row", map[string]any{"solo": true, "seq": 99}))[0]

	byRun := map[string][]string{}
	for _, id := range ids {
		runs := b.waitRuns(t, id, 1)
		require.Equal(t, "Completed", runs[0].Status, runs[0].Error)
		var out flowOut
		require.NoError(t, json.Unmarshal(runs[0].Output, &out))
		require.Contains(t, out.IDs, id, "the run listed under an event ran with it")
		byRun[runs[0].RunID] = out.IDs
	}
	var sizes []int
	var union []string
	for _, got := range byRun {
		sizes = append(sizes, len(got))
		union = append(union, got...)
		require.True(t, sort.StringsAreSorted(got), "a batch lists its events oldest first: %v", got)
	}
	sort.Ints(sizes)
	require.Equal(t, []int{5, 10, 10}, sizes)
	sort.Strings(union)
	want := append([]string(nil), ids...)
	sort.Strings(want)
	require.Equal(t, want, union, "every event in exactly one batch")
	require.GreaterOrEqual(t, time.Since(sent), 2*time.Second, "the partial batch waits for its timeout")

	s := b.waitRuns(t, solo, 1)[0]
	var out flowOut
	require.NoError(t, json.Unmarshal(s.Output, &out))
	require.Equal(t, []string{solo}, out.IDs, "an event outside the batch condition runs alone")
}

func TestSingletonSkipAndCancel(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{herald.SingletonSkip, herald.SingletonCancel} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			b := setup(t, setupOpts{}, flowFn(herald.FunctionOpts{
				ID: "single", Triggers: []herald.Trigger{herald.OnEvent("test/single")},
				Singleton: &herald.Singleton{Key: "event.data.user", Mode: mode},
			}))
			key := testKey(t, "single-")
			first := b.send(t, ev("test/single", map[string]any{"user": "u1", "hold": 4000, "key": key, "seq": 1}))[0]
			require.Eventually(t, func() bool {
				gauges.Lock()
				defer gauges.Unlock()
				return gauges.now[key] == 1
			}, 30*time.Second, 20*time.Millisecond, "the first run is executing")
			second := b.send(t, ev("test/single", map[string]any{"user": "u1", "seq": 2}))[0]
			other := b.send(t, ev("test/single", map[string]any{"user": "u2", "seq": 3}))[0]

			r1, r2 := b.waitRuns(t, first, 1)[0], b.waitRuns(t, second, 1)[0]
			require.Equal(t, "Completed", b.waitRuns(t, other, 1)[0].Status, "another key runs")
			if mode == herald.SingletonSkip {
				require.Equal(t, "Completed", r1.Status, r1.Error)
				require.Equal(t, "Skipped", r2.Status)
				require.Contains(t, r2.Error, r1.RunID)
			} else {
				require.Equal(t, "Cancelled", r1.Status)
				require.Equal(t, "Completed", r2.Status, r2.Error)
			}
			// Once the holder is done the key is free again.
			third := b.send(t, ev("test/single", map[string]any{"user": "u1", "seq": 4}))[0]
			require.Equal(t, "Completed", b.waitRuns(t, third, 1)[0].Status)
		})
	}
}

func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{}, flowFn(herald.FunctionOpts{
		ID: "charge-once", Triggers: []herald.Trigger{herald.OnEvent("test/order")},
		Idempotency: "event.data.order",
	}))
	ids := b.send(t,
		ev("test/order", map[string]any{"order": "o1", "seq": 1}),
		ev("test/order", map[string]any{"order": "o1", "seq": 2}),
		ev("test/order", map[string]any{"order": "o2", "seq": 3}),
	)
	later := b.send(t, ev("test/order", map[string]any{"order": "o1", "seq": 4}))[0]
	// Claims run concurrently, so which o1 event wins is not fixed; exactly
	// one does, and the others name it.
	var winner string
	var skips []string
	for _, id := range []string{ids[0], ids[1], later} {
		r := b.waitRuns(t, id, 1)[0]
		switch r.Status {
		case "Completed":
			require.Empty(t, winner, "a second o1 run completed")
			winner = r.RunID
		case "Skipped":
			require.Contains(t, r.Error, router.SkipIdempotency)
			skips = append(skips, r.Error)
		default:
			t.Fatalf("run %s: status %s", r.RunID, r.Status)
		}
	}
	require.NotEmpty(t, winner)
	require.Len(t, skips, 2)
	for _, e := range skips {
		require.Contains(t, e, winner, "the skip names the run that holds the key")
	}
	require.Equal(t, "Completed", b.waitRuns(t, ids[2], 1)[0].Status, "another key runs")
}

func TestTimeouts(t *testing.T) {
	t.Parallel()
	t.Run("finish", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{}, flowFn(herald.FunctionOpts{
			ID: "slow", Triggers: []herald.Trigger{herald.OnEvent("test/slow")},
			Timeouts: &herald.Timeouts{Finish: time.Second},
		}))
		id := b.send(t, ev("test/slow", map[string]any{"hold": 20000, "key": testKey(t, "slow-")}))[0]
		r := b.waitRuns(t, id, 1)[0]
		require.Equal(t, "Cancelled", r.Status)
		require.Contains(t, r.Error, "timeouts.finish")
	})
	t.Run("start", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{}, flowFn(herald.FunctionOpts{
			ID: "queued", Triggers: []herald.Trigger{herald.OnEvent("test/queued")},
			Throttle: &herald.Throttle{Limit: 1, Period: 10 * time.Second},
			Timeouts: &herald.Timeouts{Start: 2 * time.Second},
		}))
		ids := b.send(t, ev("test/queued", map[string]any{"seq": 1}), ev("test/queued", map[string]any{"seq": 2}), ev("test/queued", map[string]any{"seq": 3}))
		var got []string
		for _, id := range ids {
			r := b.waitRuns(t, id, 1)[0]
			got = append(got, r.Status)
			if r.Status == "Skipped" {
				require.Contains(t, r.Error, router.SkipStartTimeout)
			}
		}
		sort.Strings(got)
		require.Equal(t, []string{"Completed", "Skipped", "Skipped"}, got, "only the first can start within 2s; the throttle would start the others 10s and 20s later")
	})
}

func TestPriorityReachesTemporal(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{}, flowFn(herald.FunctionOpts{
		ID: "prio", Triggers: []herald.Trigger{herald.OnEvent("test/prio")},
		Priority: &herald.Priority{Run: "event.data.p"},
	}))
	for p, want := range map[int]int32{400: 1, 10: 2, 0: 3, -10: 4, -1000: 5} {
		id := b.send(t, ev("test/prio", map[string]any{"p": p}))[0]
		r := b.waitRuns(t, id, 1)[0]
		require.Equal(t, "Completed", r.Status, r.Error)
		desc, err := b.temporal.DescribeWorkflowExecution(context.Background(), r.WorkflowID, "")
		require.NoError(t, err)
		require.Equal(t, want, desc.GetWorkflowExecutionInfo().GetPriority().GetPriorityKey(), "priority %d", p)
	}
}

func TestFlowControlSyncValidation(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	cfg := `{"task_queue":"q","functions":[{"id":"bad","triggers":[{"event":"a/b"}],"retries":0,
	  "batch":{"max_size":10,"timeout_ms":1000},"cancel_on":[{"event":"a/c"}],
	  "rate_limit":{"limit":0,"period_ms":172800000},"concurrency":[{"limit":1,"key":"event.data.x +"}]}]}`
	var out struct {
		Error    string   `json:"error"`
		Problems []string `json:"problems"`
	}
	b.do(t, http.MethodPost, "/v1/apps/"+b.app+"/sync", []byte(cfg), http.StatusBadRequest, &out)
	all := strings.Join(out.Problems, "\n")
	for _, want := range []string{"batch cannot be combined with cancel_on", "batch cannot be combined with rate_limit",
		"rate_limit: limit must be at least 1", "rate_limit: period must be between", "concurrency 0 key"} {
		require.Contains(t, all, want)
	}
	require.Len(t, out.Problems, 5, fmt.Sprint(out.Problems))
}

// A trigger expression that would run for minutes is stopped by the cost
// limit: the event still runs its other functions and the failure is counted.
func TestHostileExpressionDoesNotStallRouter(t *testing.T) {
	t.Parallel()
	hostile := "event.data.items.all(x, event.data.items.all(y, event.data.items.all(z, x + y + z >= 0)))"
	b := setup(t, setupOpts{},
		greetFn("hostile", herald.OnEvent("test/hostile", hostile)),
		greetFn("plain", herald.OnEvent("test/hostile")))
	items := make([]int, 300)
	id := b.send(t, ev("test/hostile", map[string]any{"name": "ada", "items": items}))[0]
	runs := b.waitRuns(t, id, 1)
	require.Equal(t, "plain", runs[0].FunctionID)
	require.Equal(t, "Completed", runs[0].Status, runs[0].Error)
	resp, err := http.Get(b.url + "/metrics")
	require.NoError(t, err)
	raw, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	require.Regexp(t, `(?m)^herald_trigger_eval_errors_total [1-9]`, string(raw))
}
