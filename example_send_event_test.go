package herald_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/herald-run/herald"
	"github.com/herald-run/herald/step"
)

// Shipment is the data of a shop/order.packed event.
type Shipment struct {
	OrderID string `json:"orderId"`
	Email   string `json:"email"`
}

// ShipOrder announces a packed order as two events, which can trigger other
// functions.
var ShipOrder = herald.NewFunction(herald.FunctionOpts{
	ID:       "ship-order",
	Triggers: []herald.Trigger{herald.OnEvent("shop/order.packed")},
}, func(ctx workflow.Context, in herald.Input[Shipment]) ([]string, error) {
	return step.SendEvent(ctx, "announce",
		herald.Event{Name: "shop/order.shipped", Data: map[string]string{"orderId": in.Event.Data.OrderID}},
		herald.Event{Name: "shop/email.requested", Data: map[string]string{"to": in.Event.Data.Email, "template": "shipped"}},
	)
})

// Example_sendEvent sends events from a function. The events have no ID, so
// step.SendEvent derives each one's from the run and the step: when Herald
// cannot be reached and the step is retried, the retry sends the same ids,
// and Herald stores each event once. Here the stand-in Herald fails the
// first attempt.
func Example_sendEvent() {
	var attempts [][]string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/events" {
			return // the run's outcome report
		}
		var events []struct {
			ID   string          `json:"id"`
			Name string          `json:"name"`
			Data json.RawMessage `json:"data"`
		}
		_ = json.NewDecoder(r.Body).Decode(&events)
		ids := make([]string, len(events))
		for i, e := range events {
			ids[i] = e.ID
			fmt.Printf("attempt %d: %s %s\n", len(attempts)+1, e.Name, e.Data)
		}
		attempts = append(attempts, ids)
		if len(attempts) == 1 {
			http.Error(w, "restarting", http.StatusServiceUnavailable)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string][]string{"ids": ids})
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
	if err := w.Register(ShipOrder); err != nil {
		panic(err)
	}
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(log.NewStructuredLogger(slog.New(slog.DiscardHandler)))
	env := suite.NewTestWorkflowEnvironment()
	env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{herald.ErrorInterceptor()}})
	w.RegisterForTest(env)

	env.ExecuteWorkflow(ShipOrder.ID(), map[string]any{
		"run_id": "run-1",
		"event": herald.TypedEvent[Shipment]{
			ID: "evt-1", Name: "shop/order.packed", Data: Shipment{OrderID: "o-1", Email: "ada@example.com"},
		},
	})
	var ids []string
	if err := env.GetWorkflowResult(&ids); err != nil {
		panic(err)
	}
	fmt.Println("events sent:", len(ids))
	fmt.Println("same ids on both attempts:", slices.Equal(attempts[0], attempts[1]) && slices.Equal(ids, attempts[0]))
	fmt.Println("distinct ids:", ids[0] != ids[1])

	// Output:
	// attempt 1: shop/order.shipped {"orderId":"o-1"}
	// attempt 1: shop/email.requested {"template":"shipped","to":"ada@example.com"}
	// attempt 2: shop/order.shipped {"orderId":"o-1"}
	// attempt 2: shop/email.requested {"template":"shipped","to":"ada@example.com"}
	// events sent: 2
	// same ids on both attempts: true
	// distinct ids: true
}
