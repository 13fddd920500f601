package herald_test

import (
	"context"
	"encoding/json"
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

// Signup is the data of a shop/user.signup event.
type Signup struct {
	UserID string `json:"userId"`
	Email  string `json:"email"`
	Plan   string `json:"plan"`
}

// WelcomeResult is the output of the welcome-email function.
type WelcomeResult struct {
	Emails int    `json:"emails"`
	Took   string `json:"took"`
}

// SendEmail is a step: a named function that Temporal runs as an activity on
// any worker of the app, retried when it fails.
func SendEmail(_ context.Context, to, subject string) (bool, error) {
	fmt.Printf("email to %s: %s\n", to, subject)
	return true, nil
}

// WelcomeEmail sends a welcome email, sleeps a day, then sends tips. The
// sleep is a durable timer: no worker is busy, and a worker restart in the
// middle of it changes nothing.
var WelcomeEmail = herald.NewFunction(herald.FunctionOpts{
	ID:       "welcome-email",
	Triggers: []herald.Trigger{herald.OnEvent("shop/user.signup")},
}, func(ctx workflow.Context, in herald.Input[Signup]) (WelcomeResult, error) {
	start := workflow.Now(ctx)
	if _, err := step.Run[bool](ctx, "send-welcome", SendEmail, in.Event.Data.Email, "Welcome!"); err != nil {
		return WelcomeResult{}, err
	}
	if err := step.Sleep(ctx, "wait-a-day", 24*time.Hour); err != nil {
		return WelcomeResult{}, err
	}
	if _, err := step.Run[bool](ctx, "send-tips", SendEmail, in.Event.Data.Email, "Three tips for your first week"); err != nil {
		return WelcomeResult{}, err
	}
	return WelcomeResult{Emails: 2, Took: workflow.Now(ctx).Sub(start).String()}, nil
})

// ExampleNewFunction declares a function with two steps and a one-day sleep,
// and runs it in Temporal's test environment, where timers fire as soon as
// the workflow waits on them: the day passes in milliseconds.
func ExampleNewFunction() {
	// The worker's own activities report each run's outcome to Herald's API.
	// In a unit test, a stand-in server plays Herald.
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var finish struct {
			Status string          `json:"status"`
			Output json.RawMessage `json:"output"`
		}
		_ = json.NewDecoder(r.Body).Decode(&finish)
		fmt.Println("Herald records the run:", finish.Status, string(finish.Output))
	}))
	defer api.Close()

	// A lazy client does not connect: the test environment never polls.
	temporalClient, err := client.NewLazyClient(client.Options{})
	if err != nil {
		panic(err)
	}
	defer temporalClient.Close()
	w, err := herald.NewWorker(herald.WorkerOptions{App: "shop", Client: temporalClient, HeraldURL: api.URL})
	if err != nil {
		panic(err)
	}
	if err := w.Register(WelcomeEmail); err != nil {
		panic(err)
	}
	if err := w.RegisterSteps(SendEmail); err != nil {
		panic(err)
	}

	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(log.NewStructuredLogger(slog.New(slog.DiscardHandler)))
	env := suite.NewTestWorkflowEnvironment()
	// As on a real worker, so herald.NonRetriable and herald.RetryAfter work.
	env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{herald.ErrorInterceptor()}})
	w.RegisterForTest(env)

	// A function's workflow type is its ID; its input carries the event.
	env.ExecuteWorkflow(WelcomeEmail.ID(), map[string]any{
		"event": herald.TypedEvent[Signup]{
			ID:   "evt-1",
			Name: "shop/user.signup",
			Data: Signup{UserID: "u_1", Email: "ada@example.com", Plan: "pro"},
		},
	})
	var out WelcomeResult
	if err := env.GetWorkflowResult(&out); err != nil {
		panic(err)
	}
	fmt.Printf("result: %+v\n", out)

	// Output:
	// email to ada@example.com: Welcome!
	// email to ada@example.com: Three tips for your first week
	// Herald records the run: Completed {"emails":2,"took":"24h0m0s"}
	// result: {Emails:2 Took:24h0m0s}
}
