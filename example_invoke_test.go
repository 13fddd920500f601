package herald_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/herald-run/herald"
	"github.com/herald-run/herald/step"
)

// Parcel is what quote-shipping is invoked with.
type Parcel struct {
	Grams int `json:"grams"`
}

// Quote is quote-shipping's output.
type Quote struct {
	Cents int    `json:"cents"`
	Event string `json:"event"`
}

// PriceParcel is a step that prices a parcel by weight.
func PriceParcel(_ context.Context, grams int) (int, error) { return 500 + grams/2, nil }

// QuoteShipping prices a parcel. Another function runs it with step.Invoke;
// its trigger lets events run it too.
var QuoteShipping = herald.NewFunction(herald.FunctionOpts{
	ID:       "quote-shipping",
	Triggers: []herald.Trigger{herald.OnEvent("shop/quote.requested")},
}, func(ctx workflow.Context, in herald.Input[Parcel]) (Quote, error) {
	cents, err := step.Run[int](ctx, "price", PriceParcel, in.Event.Data.Grams)
	return Quote{Cents: cents, Event: in.Event.Name}, err
})

// Checkout prices the shipping of a cart by invoking quote-shipping, and
// waits for its result.
var Checkout = herald.NewFunction(herald.FunctionOpts{
	ID:       "checkout",
	Triggers: []herald.Trigger{herald.OnEvent("shop/cart.checkout")},
}, func(ctx workflow.Context, in herald.Input[Parcel]) (Quote, error) {
	return step.Invoke[Quote](ctx, "quote", "quote-shipping", Parcel{Grams: in.Event.Data.Grams})
})

// Example_invoke runs a function that invokes another and uses its result.
// The invoked function runs as a child workflow on the same task queue,
// with a herald/function.invoked event carrying the data; both report their
// outcome to Herald.
func Example_invoke() {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var finish struct {
			FunctionID string `json:"function_id"`
			Status     string `json:"status"`
		}
		_ = json.NewDecoder(r.Body).Decode(&finish)
		fmt.Println("Herald records:", finish.FunctionID, finish.Status)
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
	if err := w.Register(Checkout, QuoteShipping); err != nil {
		panic(err)
	}
	if err := w.RegisterSteps(PriceParcel); err != nil {
		panic(err)
	}
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(log.NewStructuredLogger(slog.New(slog.DiscardHandler)))
	env := suite.NewTestWorkflowEnvironment()
	env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{herald.ErrorInterceptor()}})
	w.RegisterForTest(env)

	env.ExecuteWorkflow(Checkout.ID(), map[string]any{"event": herald.TypedEvent[Parcel]{
		ID: "evt-1", Name: "shop/cart.checkout", Data: Parcel{Grams: 1200},
	}})
	var q Quote
	if err := env.GetWorkflowResult(&q); err != nil {
		panic(err)
	}
	fmt.Printf("shipping: %d cents, quoted on %s\n", q.Cents, q.Event)

	// Output:
	// Herald records: quote-shipping Completed
	// Herald records: checkout Completed
	// shipping: 1100 cents, quoted on herald/function.invoked
}
