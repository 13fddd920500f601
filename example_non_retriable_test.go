package herald_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/herald-run/herald"
	"github.com/herald-run/herald/step"
)

// ErrCardDeclined is what the payment provider says about a card it refuses.
var ErrCardDeclined = errors.New("card declined")

// Charge is the data of a shop/charge.requested event.
type Charge struct {
	OrderID string `json:"orderId"`
	Cents   int    `json:"cents"`
}

// ChargeOutcome is the output of the charge-order function.
type ChargeOutcome struct {
	Charged bool
	Reason  string
}

// ChargeCard is a step. A declined card will not be accepted on the next
// attempt either, so it says so with herald.NonRetriable: the step fails at
// once instead of being retried.
func ChargeCard(ctx context.Context, c Charge) (bool, error) {
	fmt.Println("charge attempt", activity.GetInfo(ctx).Attempt)
	if c.Cents > 10_000 {
		return false, herald.NonRetriable(fmt.Errorf("charge %d cents: %w", c.Cents, ErrCardDeclined))
	}
	return true, nil
}

// ChargeOrder charges an order and turns a declined card into a result
// rather than a failed run.
var ChargeOrder = herald.NewFunction(herald.FunctionOpts{
	ID:       "charge-order",
	Triggers: []herald.Trigger{herald.OnEvent("shop/charge.requested")},
}, func(ctx workflow.Context, in herald.Input[Charge]) (ChargeOutcome, error) {
	charged, err := step.Run[bool](ctx, "charge", ChargeCard, in.Event.Data)
	// In the workflow the step's error is a Temporal error: the step
	// function's error value stayed in the activity, its message and
	// retryability travelled.
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) && appErr.NonRetryable() {
		return ChargeOutcome{Reason: appErr.Message()}, nil
	}
	if err != nil {
		return ChargeOutcome{}, err
	}
	return ChargeOutcome{Charged: charged}, nil
})

// ExampleNonRetriable marks an error so the step that returns it is not
// retried. The marked error still matches its cause and ErrNonRetriable with
// errors.Is, and NonRetriableError with errors.As, wherever it is wrapped.
func ExampleNonRetriable() {
	err := fmt.Errorf("order o-1: %w", herald.NonRetriable(ErrCardDeclined))
	fmt.Println(errors.Is(err, herald.ErrNonRetriable), errors.Is(err, ErrCardDeclined))
	var nr *herald.NonRetriableError
	if errors.As(err, &nr) {
		fmt.Println("non-retriable:", nr.Err)
	}

	// The step fails on its first attempt, although the function allows
	// four retries by default.
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
	if err := w.Register(ChargeOrder); err != nil {
		panic(err)
	}
	if err := w.RegisterSteps(ChargeCard); err != nil {
		panic(err)
	}
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(log.NewStructuredLogger(slog.New(slog.DiscardHandler)))
	env := suite.NewTestWorkflowEnvironment()
	// The interceptor is what turns herald.NonRetriable into a Temporal
	// non-retryable error; NewWorker installs it on real workers.
	env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{herald.ErrorInterceptor()}})
	w.RegisterForTest(env)

	env.ExecuteWorkflow(ChargeOrder.ID(), map[string]any{"event": herald.TypedEvent[Charge]{
		ID: "evt-1", Name: "shop/charge.requested", Data: Charge{OrderID: "o-1", Cents: 25_000},
	}})
	var out ChargeOutcome
	if err := env.GetWorkflowResult(&out); err != nil {
		panic(err)
	}
	fmt.Printf("charged: %v, reason: %s\n", out.Charged, out.Reason)

	// Output:
	// true true
	// non-retriable: card declined
	// charge attempt 1
	// charged: false, reason: charge 25000 cents: card declined
}
