package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/workflow"

	"github.com/herald-run/herald"
	"github.com/herald-run/herald/ingest"
	"github.com/herald-run/herald/step"
	"github.com/herald-run/herald/store"
)

func signup(user string, extra map[string]any) map[string]any {
	data := map[string]any{"userId": user}
	for k, v := range extra {
		data[k] = v
	}
	return map[string]any{"name": "test/signup", "data": data}
}

func activated(user, by string) map[string]any {
	return map[string]any{"name": "test/activated", "data": map[string]any{"userId": user, "by": by}}
}

func outputOf(t *testing.T, r ingest.RunJSON) activation {
	t.Helper()
	var a activation
	require.NoError(t, json.Unmarshal(r.Output, &a), string(r.Output))
	return a
}

func TestWaitForEvent(t *testing.T) {
	t.Parallel()
	for _, driver := range []string{"postgres", "sqlite"} {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			b := setup(t, setupOpts{driver: driver}, waiterFn("waiter", ""))

			// Activation arrives later.
			later := b.send(t, signup("u-later", nil))
			b.waitDispatched(t, later[0])
			time.Sleep(300 * time.Millisecond)
			b.send(t, activated("u-other", "wrong user"), activated("u-later", "later"))
			r := b.waitRuns(t, later[0], 1)[0]
			require.Equal(t, "Completed", r.Status, r.Error)
			require.Equal(t, activation{Activated: true, By: "later"}, outputOf(t, r))

			// Sent right after the trigger, before the run can have registered its wait.
			quick := b.send(t, signup("u-quick", nil))
			b.send(t, activated("u-quick", "quick"))
			r = b.waitRuns(t, quick[0], 1)[0]
			require.Equal(t, activation{Activated: true, By: "quick"}, outputOf(t, r))

			// In the same request as the trigger.
			same := b.send(t, signup("u-same", nil), activated("u-same", "same request"))
			r = b.waitRuns(t, same[0], 1)[0]
			require.Equal(t, activation{Activated: true, By: "same request"}, outputOf(t, r))

			// Timeout: not activated, and not a failure.
			timeout := b.send(t, signup("u-timeout", map[string]any{"timeout_s": 1}))
			r = b.waitRuns(t, timeout[0], 1)[0]
			require.Equal(t, "Completed", r.Status, r.Error)
			require.Equal(t, activation{Activated: false}, outputOf(t, r))
		})
	}
}

func TestWaitConditionWithInAndOr(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{}, waiterFn("picky", `async.data.by in ["admin", "owner"] || async.data.level > event.data.level`))
	ids := b.send(t, signup("u-1", map[string]any{"level": 3}), signup("u-2", map[string]any{"level": 3}))
	b.waitDispatched(t, ids[0])
	b.waitDispatched(t, ids[1])
	b.send(t,
		activated("u-1", "guest"), // neither clause holds
		map[string]any{"name": "test/activated", "data": map[string]any{"userId": "u-2", "by": "guest", "level": 5}}, // level > 3
	)
	time.Sleep(500 * time.Millisecond)
	b.send(t, activated("u-1", "owner"))
	r1 := b.waitRuns(t, ids[0], 1)[0]
	require.Equal(t, activation{Activated: true, By: "owner"}, outputOf(t, r1))
	r2 := b.waitRuns(t, ids[1], 1)[0]
	require.Equal(t, activation{Activated: true, By: "guest"}, outputOf(t, r2))
}

func TestCancelOn(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{}, waiterFn("cancellable", "", herald.CancelOn{Event: "test/deleted", Match: "data.userId"}))
	ids := b.send(t, signup("u-keep", nil), signup("u-gone", nil))
	b.waitDispatched(t, ids[0])
	b.send(t, map[string]any{"name": "test/deleted", "data": map[string]any{"userId": "u-gone"}})
	gone := b.waitRuns(t, ids[1], 1)[0]
	require.Equal(t, "Cancelled", gone.Status)
	cancelled := b.eventsNamed(t, "herald/function.cancelled")
	require.Len(t, cancelled, 1)
	require.Contains(t, string(cancelled[0].Data), gone.RunID)
	require.Empty(t, b.eventsNamed(t, "herald/function.failed"))

	// The other run is untouched and still waits.
	require.Equal(t, "Running", b.runs(t, ids[0])[0].Status)
	b.send(t, activated("u-keep", "still here"))
	keep := b.waitRuns(t, ids[0], 1)[0]
	require.Equal(t, activation{Activated: true, By: "still here"}, outputOf(t, keep))
}

// TestManyWaits has 2,000 runs waiting at once, resolved by 2,000 events:
// none missed, none resolved twice.
func TestManyWaits(t *testing.T) {
	t.Parallel()
	const n = 2000
	b := setup(t, setupOpts{}, waiterFn("crowd", ""))
	var ids []string
	for i := 0; i < n; i += 500 {
		batch := make([]map[string]any, 0, 500)
		for j := i; j < i+500; j++ {
			batch = append(batch, signup(fmt.Sprintf("crowd-%d", j), map[string]any{"timeout_s": 600}))
		}
		ids = append(ids, b.send(t, batch...)...)
	}
	for i := 0; i < n; i += 500 {
		batch := make([]map[string]any, 0, 500)
		for j := i; j < i+500; j++ {
			batch = append(batch, activated(fmt.Sprintf("crowd-%d", j), fmt.Sprintf("by-%d", j)))
		}
		b.send(t, batch...)
	}
	// One poller, run after run: thousands of pollers would load the machine
	// more than the runs do.
	deadline := time.Now().Add(6 * time.Minute)
	errs := make(chan error, n)
	for i, id := range ids {
		for {
			var out struct {
				Data []ingest.RunJSON `json:"data"`
			}
			resp, err := http.Get(b.url + "/v1/events/" + id + "/runs")
			if err == nil {
				err = json.NewDecoder(resp.Body).Decode(&out)
				resp.Body.Close()
			}
			if err == nil && len(out.Data) == 1 && out.Data[0].Status == "Completed" {
				var a activation
				_ = json.Unmarshal(out.Data[0].Output, &a)
				if a != (activation{Activated: true, By: fmt.Sprintf("by-%d", i)}) {
					errs <- fmt.Errorf("run %d resolved with %+v", i, a)
				}
				break
			}
			if time.Now().After(deadline) {
				errs <- fmt.Errorf("run %d (event %s) did not complete", i, id)
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

func TestBulkCancellation(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{}, waiterFn("bulk", ""))
	ids := b.send(t, signup("b-1", map[string]any{"n": 1}), signup("b-2", map[string]any{"n": 1}), signup("b-3", map[string]any{"n": 2}))
	for _, id := range ids {
		b.waitDispatched(t, id)
	}
	var created struct {
		Data ingest.CancellationJSON `json:"data"`
	}
	body := fmt.Sprintf(`{"function_id":%q,"started_after":%q,"if":"event.data.n == 1"}`, b.app+"/bulk", time.Now().Add(-time.Hour).Format(time.RFC3339))
	b.do(t, http.MethodPost, "/v1/cancellations", []byte(body), http.StatusOK, &created)
	require.Equal(t, "Running", created.Data.Status)

	var job ingest.CancellationJSON
	require.Eventually(t, func() bool {
		var got struct {
			Data ingest.CancellationJSON `json:"data"`
		}
		b.do(t, http.MethodGet, "/v1/cancellations/"+created.Data.ID, nil, http.StatusOK, &got)
		job = got.Data
		return job.Status == "Completed"
	}, 30*time.Second, 100*time.Millisecond)
	require.Equal(t, int64(2), job.Matched)
	require.Equal(t, int64(2), job.Cancelled)
	require.Equal(t, "Cancelled", b.waitRuns(t, ids[0], 1)[0].Status)
	require.Equal(t, "Cancelled", b.waitRuns(t, ids[1], 1)[0].Status)
	require.Equal(t, "Running", b.runs(t, ids[2])[0].Status, "n == 2 does not match")

	resp, err := http.Get(b.url + "/metrics")
	require.NoError(t, err)
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{"herald_waits_pending", "herald_waits_unindexed", "herald_waits_resolved_total", "herald_outbox_pending"} {
		require.Contains(t, string(raw), m)
	}

	b.do(t, http.MethodGet, "/v1/cancellations/nope", nil, http.StatusNotFound, nil)
	b.do(t, http.MethodPost, "/v1/cancellations", []byte(`{"function_id":"nope"}`), http.StatusBadRequest, nil)
	b.do(t, http.MethodPost, "/v1/cancellations", []byte(`{"function_id":"a/b","if":"event.data. =="}`), http.StatusBadRequest, nil)
}

// An equality between async and event in If is indexed like Match.
func TestWaitKeyFromCondition(t *testing.T) {
	t.Parallel()
	fn := herald.NewFunction(herald.FunctionOpts{ID: "keyed-if", Triggers: []herald.Trigger{herald.OnEvent("test/signup")}},
		func(ctx workflow.Context, in herald.Input[map[string]any]) (activation, error) {
			ev, ok, err := step.WaitForEvent[map[string]any](ctx, "await", step.WaitOpts{
				Event: "test/activated", If: `async.data.ok == true && async.data.userId == event.data.userId`, Timeout: time.Minute,
			})
			if err != nil || !ok {
				return activation{}, err
			}
			by, _ := ev.Data["by"].(string)
			return activation{Activated: true, By: by}, nil
		})
	b := setup(t, setupOpts{}, fn)
	ids := b.send(t, signup("k-1", nil))
	b.waitDispatched(t, ids[0])
	wf := b.app + "/keyed-if/" + ids[0]
	var w store.Wait
	require.Eventually(t, func() bool {
		var err error
		w, err = b.store.GetWait(context.Background(), wf, store.WaitKindWait, "await")
		return err == nil
	}, 20*time.Second, 50*time.Millisecond)
	require.Equal(t, "data.userId", w.MatchPath)
	require.Equal(t, `"k-1"`, w.MatchValue)

	b.send(t,
		map[string]any{"name": "test/activated", "data": map[string]any{"userId": "k-1", "ok": false, "by": "not ok"}},
		map[string]any{"name": "test/activated", "data": map[string]any{"userId": "k-2", "ok": true, "by": "other user"}},
		map[string]any{"name": "test/activated", "data": map[string]any{"userId": "k-1", "ok": true, "by": "right"}},
	)
	r := b.waitRuns(t, ids[0], 1)[0]
	require.Equal(t, activation{Activated: true, By: "right"}, outputOf(t, r))
}
