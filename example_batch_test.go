package herald_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/herald-run/herald"
	"github.com/herald-run/herald/step"
)

// Usage is the data of a shop/usage.recorded event.
type Usage struct {
	AccountID string `json:"accountId"`
	Units     int    `json:"units"`
}

// Invoice is the output of the invoice-usage function.
type Invoice struct {
	AccountID string `json:"accountId"`
	Events    int    `json:"events"`
	Units     int    `json:"units"`
}

// BillUsage is a step that bills an account for a number of units.
func BillUsage(_ context.Context, accountID string, units int) (Invoice, error) {
	return Invoice{AccountID: accountID, Units: units}, nil
}

// InvoiceUsage bills usage in batches: Herald collects the usage events of
// an account and runs the function once for up to 100 of them, or for what
// it has one minute after the first one arrived.
var InvoiceUsage = herald.NewFunction(herald.FunctionOpts{
	ID:       "invoice-usage",
	Triggers: []herald.Trigger{herald.OnEvent("shop/usage.recorded")},
	Batch: &herald.Batch{
		MaxSize: 100,
		Timeout: time.Minute,
		Key:     "event.data.accountId",
	},
}, func(ctx workflow.Context, in herald.Input[Usage]) (Invoice, error) {
	// in.Events holds every event of the batch, oldest first; in.Event is
	// the first of them.
	units := 0
	for _, e := range in.Events {
		units += e.Data.Units
	}
	inv, err := step.Run[Invoice](ctx, "bill", BillUsage, in.Event.Data.AccountID, units)
	if err != nil {
		return Invoice{}, err
	}
	inv.Events = len(in.Events)
	return inv, nil
})

// ExampleBatch declares a batched function and runs its handler in the test
// environment on a batch of three events. Herald does the batching (a batch
// workflow per key, on Herald's own task queue) and starts the run with
// every event of the batch; the test starts the run with the same input.
func ExampleBatch() {
	api := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
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
	if err := w.Register(InvoiceUsage); err != nil {
		panic(err)
	}
	if err := w.RegisterSteps(BillUsage); err != nil {
		panic(err)
	}

	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(log.NewStructuredLogger(slog.New(slog.DiscardHandler)))
	env := suite.NewTestWorkflowEnvironment()
	env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{herald.ErrorInterceptor()}})
	w.RegisterForTest(env)

	var batch []herald.TypedEvent[Usage]
	for i, units := range []int{5, 12, 25} {
		batch = append(batch, herald.TypedEvent[Usage]{
			ID:   fmt.Sprintf("evt-%d", i+1),
			Name: "shop/usage.recorded",
			Data: Usage{AccountID: "acct-7", Units: units},
		})
	}
	env.ExecuteWorkflow(InvoiceUsage.ID(), map[string]any{"event": batch[0], "events": batch})
	var out Invoice
	if err := env.GetWorkflowResult(&out); err != nil {
		panic(err)
	}
	fmt.Printf("%s: %d events, %d units billed\n", out.AccountID, out.Events, out.Units)

	// Output:
	// acct-7: 3 events, 42 units billed
}
