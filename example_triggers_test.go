package herald_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/workflow"

	"github.com/herald-run/herald"
	"github.com/herald-run/herald/step"
)

// Order is the data of shop/order.* events.
type Order struct {
	OrderID string  `json:"orderId"`
	Total   float64 `json:"total"`
}

// ThankBigSpender sends a thank-you note for an order. A day later, unless
// the order was cancelled in between (CancelOn), it asks for a review.
var ThankBigSpender = herald.NewFunction(herald.FunctionOpts{
	ID: "thank-big-spender",
	Triggers: []herald.Trigger{
		// A CEL condition over the event: only large orders run it.
		herald.OnEvent("shop/order.placed", `event.data.total >= 100.0`),
	},
	CancelOn: []herald.CancelOn{
		// A cancellation of the same order cancels the run.
		{Event: "shop/order.cancelled", Match: "data.orderId", Timeout: 48 * time.Hour},
	},
}, func(ctx workflow.Context, in herald.Input[Order]) (string, error) {
	if err := step.Sleep(ctx, "wait-a-day", 24*time.Hour); err != nil {
		return "", err
	}
	return "review requested for " + in.Event.Data.OrderID, nil
})

// DailyReport runs on weekdays at 09:00, Paris time. Each run receives a
// herald/scheduled.timer event.
var DailyReport = herald.NewFunction(herald.FunctionOpts{
	ID:       "daily-report",
	Triggers: []herald.Trigger{herald.OnCron("TZ=Europe/Paris 0 9 * * 1-5")},
}, func(ctx workflow.Context, in herald.Input[map[string]any]) (string, error) {
	return "report for " + workflow.Now(ctx).Format(time.DateOnly), nil
})

// AuditLog records every shop event, with no retries: a wildcard matches
// every event name under "shop/".
var AuditLog = herald.NewFunction(herald.FunctionOpts{
	ID:       "audit-log",
	Retries:  -1,
	Triggers: []herald.Trigger{herald.OnEvent("shop/*")},
}, func(ctx workflow.Context, in herald.Input[json.RawMessage]) (string, error) {
	return in.Event.Name, nil
})

// ExampleWorker_Sync shows the configuration a worker sends to Herald when it
// syncs its app: the triggers with their CEL conditions, cron schedules and
// cancellations. Herald compiles and checks all of it at sync, before any
// event is matched, and refuses the sync listing every problem. Here a
// stand-in server prints what it receives.
func ExampleWorker_Sync() {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var sync struct {
			TaskQueue string `json:"task_queue"`
			Functions []struct {
				ID       string `json:"id"`
				Retries  int    `json:"retries"`
				Triggers []struct {
					Event string `json:"event"`
					If    string `json:"if"`
					Cron  string `json:"cron"`
				} `json:"triggers"`
				CancelOn []struct {
					Event     string `json:"event"`
					Match     string `json:"match"`
					TimeoutMS int64  `json:"timeout_ms"`
				} `json:"cancel_on"`
			} `json:"functions"`
		}
		if err := json.NewDecoder(r.Body).Decode(&sync); err != nil {
			panic(err)
		}
		fmt.Printf("%s %s, task queue %s\n", r.Method, r.URL.Path, sync.TaskQueue)
		for _, f := range sync.Functions {
			fmt.Printf("%s (retries %d)\n", f.ID, f.Retries)
			for _, t := range f.Triggers {
				switch {
				case t.Cron != "":
					fmt.Printf("  cron %q\n", t.Cron)
				case t.If != "":
					fmt.Printf("  on %s if %s\n", t.Event, t.If)
				default:
					fmt.Printf("  on %s\n", t.Event)
				}
			}
			for _, c := range f.CancelOn {
				fmt.Printf("  cancelled by %s matching %s within %s\n", c.Event, c.Match, time.Duration(c.TimeoutMS)*time.Millisecond)
			}
		}
		_, _ = w.Write([]byte(`{"app":"shop","functions":3}`))
	}))
	defer api.Close()

	temporalClient, err := client.NewLazyClient(client.Options{})
	if err != nil {
		panic(err)
	}
	defer temporalClient.Close()
	w, err := herald.NewWorker(herald.WorkerOptions{App: "shop", Client: temporalClient, HeraldURL: api.URL})
	if err != nil {
		panic(err)
	}
	if err := w.Register(ThankBigSpender, DailyReport, AuditLog); err != nil {
		panic(err)
	}
	fmt.Println("sync:", w.Sync(context.Background()))

	// Output:
	// POST /v1/apps/shop/sync, task queue herald-shop
	// thank-big-spender (retries 4)
	//   on shop/order.placed if event.data.total >= 100.0
	//   cancelled by shop/order.cancelled matching data.orderId within 48h0m0s
	// daily-report (retries 4)
	//   cron "TZ=Europe/Paris 0 9 * * 1-5"
	// audit-log (retries 0)
	//   on shop/*
	// sync: <nil>
}
