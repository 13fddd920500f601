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
	"github.com/herald-run/herald/store"
)

var awaitFn = herald.NewFunction(herald.FunctionOpts{ID: "await", Triggers: []herald.Trigger{herald.OnEvent("bench/start")}},
	func(ctx workflow.Context, in herald.Input[map[string]any]) (bool, error) {
		_, ok, err := step.WaitForEvent[map[string]any](ctx, "resume", step.WaitOpts{Event: "bench/resume", Match: "data.k", Timeout: time.Hour})
		return ok, err
	})

// benchResume measures, one run at a time (not saturated), the time from a
// resuming event's acceptance to the signal that resumes the waiting
// workflow, as Temporal recorded it.
func benchResume(ctx context.Context, b *bench, runs int) {
	tc, stopTemporal := startDevServer(ctx)
	defer stopTemporal()
	b.truncate(ctx)
	url, stop := b.runHerald(ctx, tc, router.Config{})
	defer stop()
	w, err := herald.NewWorker(herald.WorkerOptions{App: "benchresume", HeraldURL: url, Client: tc})
	if err == nil {
		err = w.Register(awaitFn)
	}
	if err == nil {
		err = w.Start(ctx)
	}
	if err != nil {
		log.Fatalf("bench: worker: %v", err)
	}
	defer w.Stop()

	post := func(name string, k int) string {
		body := fmt.Sprintf(`{"name":%q,"id":"%s-%d","data":{"k":%d}}`, name, name, k, k)
		resp, err := http.Post(url+"/e/bench", "application/json", strings.NewReader(body))
		if err != nil || resp.StatusCode != http.StatusOK {
			log.Fatalf("bench: send: %v %v", err, resp)
		}
		_ = resp.Body.Close()
		return fmt.Sprintf("%s-%d", name, k)
	}
	var lat []time.Duration
	for k := range runs {
		start := post("bench/start", k)
		wf := wire.WorkflowID("benchresume", "await", start)
		deadline := time.Now().Add(30 * time.Second)
		for { // until the wait is registered, so the event resumes a waiting run
			if _, err := b.driver.GetWait(ctx, wf, store.WaitKindWait, "resume"); err == nil {
				break
			}
			if time.Now().After(deadline) {
				log.Fatalf("bench: wait of %s not registered", wf)
			}
			time.Sleep(5 * time.Millisecond)
		}
		id := post("bench/resume", k)
		var signaled time.Time
		for signaled.IsZero() {
			if time.Now().After(deadline) {
				log.Fatalf("bench: %s not resumed", wf)
			}
			time.Sleep(10 * time.Millisecond)
			hist := tc.GetWorkflowHistory(ctx, wf, "", false, 0)
			for hist.HasNext() {
				ev, err := hist.Next()
				if err != nil {
					break
				}
				if a := ev.GetWorkflowExecutionSignaledEventAttributes(); a != nil && a.GetSignalName() == wire.WaitSignal("resume") {
					signaled = ev.GetEventTime().AsTime()
				}
			}
		}
		e, err := b.driver.GetEvent(ctx, id)
		if err != nil {
			log.Fatalf("bench: %v", err)
		}
		lat = append(lat, signaled.Sub(e.ReceivedAt))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	report("event_to_wait_resumed_p50", ms(lat[len(lat)/2]), "ms (target <= 50)")
	report("event_to_wait_resumed_p99", ms(lat[len(lat)*99/100]), "ms")
}
