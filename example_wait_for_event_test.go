package herald_test

import (
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

// Activated is the data of a shop/user.activated event.
type Activated struct {
	UserID string `json:"userId"`
	Via    string `json:"via"`
}

// OnboardingResult is the output of the onboarding function.
type OnboardingResult struct {
	Activated bool
	Via       string
	Waited    time.Duration
}

// Onboarding waits up to a week for the user who signed up to activate their
// account. Match ties the wait to this run: only an activation whose
// data.userId equals the signup's data.userId resolves it.
var Onboarding = herald.NewFunction(herald.FunctionOpts{
	ID:       "onboarding",
	Triggers: []herald.Trigger{herald.OnEvent("shop/user.signup", `event.data.plan == "pro"`)},
}, func(ctx workflow.Context, in herald.Input[Signup]) (OnboardingResult, error) {
	start := workflow.Now(ctx)
	ev, ok, err := step.WaitForEvent[Activated](ctx, "await-activation", step.WaitOpts{
		Event:   "shop/user.activated",
		Match:   "data.userId",
		Timeout: 7 * 24 * time.Hour,
	})
	if err != nil {
		return OnboardingResult{}, err
	}
	// A timeout is not an error: ok is false and ev is the zero value.
	return OnboardingResult{Activated: ok, Via: ev.Data.Via, Waited: workflow.Now(ctx).Sub(start)}, nil
})

// Example_waitForEvent runs a function that waits for an event, twice: once
// the awaited event arrives two hours later, once it never comes and the wait
// times out after a week. Both run in milliseconds in the test environment.
//
// In production, the step registers the wait with Herald (POST /v1/waits),
// and Herald's router delivers the first matching event to the run as the
// signal "herald.wait/<step id>". The test plays both parts: a stand-in
// server accepts the registration, and the test environment sends the
// signal.
func Example_waitForEvent() {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/waits" {
			var wait struct {
				StepID string `json:"step_id"`
				Event  string `json:"event"`
				Match  string `json:"match"`
			}
			_ = json.NewDecoder(r.Body).Decode(&wait)
			fmt.Printf("wait registered: step %s waits for %s matching %s\n", wait.StepID, wait.Event, wait.Match)
			_, _ = w.Write([]byte(`{"wait_id":"wait-1"}`))
		}
		// Anything else is the run's outcome report: accepted.
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
	if err := w.Register(Onboarding); err != nil {
		panic(err)
	}

	signup := map[string]any{"event": herald.TypedEvent[Signup]{
		ID: "evt-1", Name: "shop/user.signup", Data: Signup{UserID: "u_42", Email: "grace@example.com", Plan: "pro"},
	}}
	run := func(deliver *herald.TypedEvent[Activated]) {
		var suite testsuite.WorkflowTestSuite
		suite.SetLogger(log.NewStructuredLogger(slog.New(slog.DiscardHandler)))
		env := suite.NewTestWorkflowEnvironment()
		env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{herald.ErrorInterceptor()}})
		w.RegisterForTest(env)
		if deliver != nil {
			env.RegisterDelayedCallback(func() {
				env.SignalWorkflow("herald.wait/await-activation", deliver)
			}, 2*time.Hour)
		}
		env.ExecuteWorkflow(Onboarding.ID(), signup)
		var out OnboardingResult
		if err := env.GetWorkflowResult(&out); err != nil {
			panic(err)
		}
		fmt.Printf("activated: %v, via %q, after %s\n", out.Activated, out.Via, out.Waited)
	}

	run(&herald.TypedEvent[Activated]{ID: "evt-2", Name: "shop/user.activated", Data: Activated{UserID: "u_42", Via: "email-link"}})
	run(nil)

	// Output:
	// wait registered: step await-activation waits for shop/user.activated matching data.userId
	// activated: true, via "email-link", after 2h0m0s
	// wait registered: step await-activation waits for shop/user.activated matching data.userId
	// activated: false, via "", after 168h0m0s
}
