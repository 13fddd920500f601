package main

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"sort"
	"strings"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/herald-run/herald"
	"github.com/herald-run/herald/internal/wire"
	"github.com/herald-run/herald/router"
	"github.com/herald-run/herald/step"
)

// Noop is the step whose cost the flow phase measures.
func Noop(context.Context) (bool, error) { return true, nil }

func noopFn(id, event string, opts herald.FunctionOpts) *herald.Function {
	opts.ID, opts.Triggers = id, []herald.Trigger{herald.OnEvent(event)}
	return herald.NewFunction(opts, func(ctx workflow.Context, in herald.Input[map[string]any]) (bool, error) {
		return step.Run[bool](ctx, "noop", Noop)
	})
}

// benchFlow measures what flow control costs:
//   - the duration of a one-step run without a concurrency limit and with one
//     (a limit high enough that no step waits: the cost is asking for and
//     returning the slot), one run at a time, as Temporal timed the run;
//   - how many events per second debounce and batch functions absorb (events
//     accepted in bulk until all are handed to their debounce or batch
//     workflows), with one key and with 100 keys (the router sends one
//     signal per key per claimed batch).
func benchFlow(ctx context.Context, b *bench, runs, absorb int) {
	tc, stopTemporal := startDevServer(ctx)
	defer stopTemporal()
	b.truncate(ctx)
	url, stop := b.runHerald(ctx, tc, router.Config{})
	defer stop()
	const app = "benchflow"
	w, err := herald.NewWorker(herald.WorkerOptions{App: app, HeraldURL: url, Client: tc})
	if err == nil {
		err = w.Register(
			noopFn("free", "bench/free", herald.FunctionOpts{}),
			noopFn("limited", "bench/limited", herald.FunctionOpts{Concurrency: []herald.Concurrency{{Limit: 1000}}}),
			noopFn("debounced", "bench/debounced", herald.FunctionOpts{Debounce: &herald.Debounce{Period: time.Second, Key: "event.data.k"}}),
			noopFn("batched", "bench/batched", herald.FunctionOpts{Batch: &herald.Batch{MaxSize: 100, Timeout: time.Second, Key: "event.data.k"}}),
		)
	}
	if err == nil {
		err = w.RegisterSteps(Noop)
	}
	if err == nil {
		err = w.Start(ctx)
	}
	if err != nil {
		log.Fatalf("bench: worker: %v", err)
	}
	defer w.Stop()

	post := func(body string) {
		resp, err := http.Post(url+"/e/bench", "application/json", strings.NewReader(body))
		if err != nil || resp.StatusCode != http.StatusOK {
			log.Fatalf("bench: send: %v %v", err, resp)
		}
		_ = resp.Body.Close()
	}

	// Step cost, one run at a time.
	median := func(fn, name string) time.Duration {
		var d []time.Duration
		for k := range runs + 5 {
			id := fmt.Sprintf("%s-%d", fn, k)
			post(fmt.Sprintf(`{"name":%q,"id":%q,"data":{}}`, name, id))
			wf := wire.WorkflowID(app, fn, id)
			var run workflow.Execution
			deadline := time.Now().Add(30 * time.Second)
			for { // until the router has started it
				desc, err := tc.DescribeWorkflowExecution(ctx, wf, "")
				if err == nil {
					run.ID, run.RunID = wf, desc.GetWorkflowExecutionInfo().GetExecution().GetRunId()
					break
				}
				if time.Now().After(deadline) {
					log.Fatalf("bench: %s not started: %v", wf, err)
				}
				time.Sleep(2 * time.Millisecond)
			}
			if err := tc.GetWorkflow(ctx, run.ID, run.RunID).Get(ctx, nil); err != nil {
				log.Fatalf("bench: %s: %v", wf, err)
			}
			desc, err := tc.DescribeWorkflowExecution(ctx, wf, run.RunID)
			if err != nil {
				log.Fatalf("bench: %v", err)
			}
			info := desc.GetWorkflowExecutionInfo()
			if k >= 5 { // warm-up
				d = append(d, info.GetCloseTime().AsTime().Sub(info.GetStartTime().AsTime()))
			}
		}
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d[len(d)/2]
	}
	free := median("free", "bench/free")
	limited := median("limited", "bench/limited")
	report("run_one_step_p50", ms(free), "ms")
	report("run_one_step_concurrency_limited_p50", ms(limited), "ms")
	report("concurrency_slot_cost_p50", ms(limited-free), "ms per step (acquire + grant + release)")

	// Absorption: events accepted in bulk, spread over keys, until all are
	// handed over.
	absorbRate := func(name string, keys int) float64 {
		b.truncate(ctx)
		start := time.Now()
		for i := 0; i < absorb; i += 100 {
			var sb strings.Builder
			sb.WriteByte('[')
			for j := i; j < min(i+100, absorb); j++ {
				if j > i {
					sb.WriteByte(',')
				}
				fmt.Fprintf(&sb, `{"name":%q,"data":{"k":%d}}`, name, j%keys)
			}
			sb.WriteByte(']')
			post(sb.String())
		}
		deadline := time.Now().Add(5 * time.Minute)
		for {
			n, err := b.driver.PendingEvents(ctx)
			if err != nil {
				log.Fatalf("bench: %v", err)
			}
			if n == 0 {
				break
			}
			if time.Now().After(deadline) {
				log.Fatalf("bench: %d %s events still pending", n, name)
			}
			time.Sleep(5 * time.Millisecond)
		}
		return float64(absorb) / time.Since(start).Seconds()
	}
	for _, keys := range []int{1, 100} {
		report(fmt.Sprintf("debounce_absorbed_%d_keys", keys), absorbRate("bench/debounced", keys), "events/s")
		report(fmt.Sprintf("batch_absorbed_%d_keys", keys), absorbRate("bench/batched", keys), "events/s")
	}
}
