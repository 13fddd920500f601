package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oklog/ulid/v2"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/herald-run/herald/internal/temporalx"
	"github.com/herald-run/herald/internal/wire"
	"github.com/herald-run/herald/router"
	"github.com/herald-run/herald/store"
)

// benchDispatch measures, on one Temporal dev server: raw ExecuteWorkflow
// throughput, Herald's event-to-run throughput for the same number of
// starts, and the latency from an event's acceptance to its workflow's start.
// Raw and Herald rounds alternate, so drift in the machine's speed hits both.
func benchDispatch(ctx context.Context, b *bench, n, conns int) {
	tc, stopTemporal := startDevServer(ctx)
	defer stopTemporal()
	b.truncate(ctx)

	runHerald := func(ctx context.Context) (string, func()) {
		return b.runHerald(ctx, tc, router.Config{Concurrency: conns})
	}
	url, stop := runHerald(ctx)
	syncBody := `{"task_queue":"bench-herald","functions":[{"id":"noop","triggers":[{"event":"bench/dispatch"}],"retries":4}]}`
	resp, err := http.Post(url+"/v1/apps/bench/sync", "application/json", strings.NewReader(syncBody))
	if err != nil || resp.StatusCode != http.StatusOK {
		log.Fatalf("bench: sync: %v %v", err, resp)
	}
	_ = resp.Body.Close()
	stop()

	const rounds = 3
	per := n / rounds
	var rawTime, heraldTime time.Duration
	var started atomic.Int64
	for range rounds {
		// Raw: per starts from conns goroutines. No worker polls: only the start is measured.
		var next atomic.Int64
		t0 := time.Now()
		var wg sync.WaitGroup
		for range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= int64(per) {
					// The same start Herald makes: its search attributes and a
					// request of the same shape, so the server does the same work.
					id := fmt.Sprintf("raw-%d", started.Add(1))
					opts := client.StartWorkflowOptions{ID: id, TaskQueue: "bench-raw",
						TypedSearchAttributes: temporal.NewSearchAttributes(
							temporalx.AttrApp.ValueSet("bench"), temporalx.AttrFunction.ValueSet("noop"),
							temporalx.AttrEventName.ValueSet("bench/dispatch"), temporalx.AttrEventID.ValueSet(id))}
					req := wire.RunRequest{AppID: "bench", FunctionID: "noop", RunID: id,
						Event: wire.Event{ID: id, Name: "bench/dispatch", Data: json.RawMessage(`{"n":1}`), TS: time.Now().UnixMilli()}}
					if _, err := tc.ExecuteWorkflow(ctx, opts, "noop", req); err != nil {
						log.Fatalf("bench: raw start: %v", err)
					}
				}
			}()
		}
		wg.Wait()
		rawTime += time.Since(t0)

		// Herald: the events are in the outbox before the router starts.
		events := make([]store.Event, per)
		now := time.Now().UTC()
		for i := range events {
			events[i] = store.Event{ID: ulid.Make().String(), Fresh: true, Name: "bench/dispatch", Data: json.RawMessage(`{"n":1}`), TS: now.UnixMilli(), ReceivedAt: now}
		}
		for i := 0; i < per; i += 5000 {
			if _, err := b.driver.InsertEvents(ctx, events[i:min(i+5000, per)], now.Add(-time.Hour)); err != nil {
				log.Fatalf("bench: preload: %v", err)
			}
		}
		t0 = time.Now()
		_, stop = runHerald(ctx)
		for {
			pending, err := b.driver.PendingEvents(ctx)
			if err != nil {
				log.Fatalf("bench: pending: %v", err)
			}
			if pending == 0 {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		heraldTime += time.Since(t0)
		stop()
	}
	raw := float64(per*rounds) / rawTime.Seconds()
	herald := float64(per*rounds) / heraldTime.Seconds()
	report("temporal_raw_start", raw, "workflows/s")
	report("herald_event_to_run", herald, "runs/s")
	report("herald_event_to_run_vs_raw", herald/raw, "ratio (target >= 0.9)")

	url, stop = runHerald(ctx)
	defer stop()
	// Latency when not saturated: 200 single events, 20 ms apart.
	var lat []time.Duration
	for i := range 200 {
		id := fmt.Sprintf("lat-%d", i)
		body := fmt.Sprintf(`{"name":"bench/dispatch","id":%q}`, id)
		resp, err := http.Post(url+"/e/bench", "application/json", strings.NewReader(body))
		if err != nil || resp.StatusCode != http.StatusOK {
			log.Fatalf("bench: send: %v %v", err, resp)
		}
		_ = resp.Body.Close()
		time.Sleep(20 * time.Millisecond)
	}
	for i := range 200 {
		id := fmt.Sprintf("lat-%d", i)
		var e store.Event
		deadline := time.Now().Add(30 * time.Second)
		for {
			if e, err = b.driver.GetEvent(ctx, id); err == nil && e.Dispatched {
				break
			}
			if time.Now().After(deadline) {
				log.Fatalf("bench: event %s not dispatched", id)
			}
			time.Sleep(10 * time.Millisecond)
		}
		desc, err := tc.DescribeWorkflowExecution(ctx, wire.WorkflowID("bench", "noop", id), "")
		if err != nil {
			log.Fatalf("bench: describe: %v", err)
		}
		lat = append(lat, desc.GetWorkflowExecutionInfo().GetStartTime().AsTime().Sub(e.ReceivedAt))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	report("event_to_workflow_start_p50", ms(lat[len(lat)/2]), "ms (component, in-process, no load; under load: serve_*_single_event_to_start_p50)")
	report("event_to_workflow_start_p99", ms(lat[len(lat)*99/100]), "ms")
}
