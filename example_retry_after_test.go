package herald_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/herald-run/herald"
	"github.com/herald-run/herald/step"
)

// ErrRateLimited is what an API says when it wants fewer calls.
var ErrRateLimited = errors.New("429 too many requests")

// SyncCRM is a step. The CRM refuses its first call and asks to come back in
// ten minutes, so the step asks for its next attempt then with
// herald.RetryAfter instead of the default backoff of one second.
func SyncCRM(ctx context.Context, userID string) (string, error) {
	attempt := activity.GetInfo(ctx).Attempt
	if attempt == 1 {
		fmt.Println("attempt 1: rate limited")
		return "", herald.RetryAfter(fmt.Errorf("sync %s: %w", userID, ErrRateLimited), 10*time.Minute)
	}
	fmt.Printf("attempt %d: synced\n", attempt)
	return "crm-" + userID, nil
}

// CRMSync copies a new user to the CRM.
var CRMSync = herald.NewFunction(herald.FunctionOpts{
	ID:       "crm-sync",
	Triggers: []herald.Trigger{herald.OnEvent("shop/user.signup")},
}, func(ctx workflow.Context, in herald.Input[Signup]) (string, error) {
	start := workflow.Now(ctx)
	id, err := step.Run[string](ctx, "sync-crm", SyncCRM, in.Event.Data.UserID)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s after %s", id, workflow.Now(ctx).Sub(start)), nil
})

// ExampleRetryAfter sets the delay before a step's next attempt. The error
// keeps its cause for errors.Is, and errors.As finds the delay; a delay
// under one second is raised to one second.
func ExampleRetryAfter() {
	err := herald.RetryAfter(ErrRateLimited, 10*time.Minute)
	var ra *herald.RetryAfterError
	if errors.As(err, &ra) {
		fmt.Println(errors.Is(err, ErrRateLimited), ra.Delay)
	}
	fmt.Println(herald.RetryAfter(ErrRateLimited, 0))

	// In the test environment the ten minutes pass at once, on the
	// workflow's clock.
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
	if err := w.Register(CRMSync); err != nil {
		panic(err)
	}
	if err := w.RegisterSteps(SyncCRM); err != nil {
		panic(err)
	}
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(log.NewStructuredLogger(slog.New(slog.DiscardHandler)))
	env := suite.NewTestWorkflowEnvironment()
	env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{herald.ErrorInterceptor()}})
	w.RegisterForTest(env)

	env.ExecuteWorkflow(CRMSync.ID(), map[string]any{"event": herald.TypedEvent[Signup]{
		ID: "evt-1", Name: "shop/user.signup", Data: Signup{UserID: "u_1", Email: "ada@example.com"},
	}})
	var out string
	if err := env.GetWorkflowResult(&out); err != nil {
		panic(err)
	}
	fmt.Println(out)

	// Output:
	// true 10m0s
	// 429 too many requests (retry after 1s)
	// attempt 1: rate limited
	// attempt 2: synced
	// crm-u_1 after 10m0s
}
