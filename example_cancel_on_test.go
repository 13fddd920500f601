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
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/herald-run/herald"
	"github.com/herald-run/herald/step"
)

// Trial is the data of shop/trial.* events.
type Trial struct {
	AccountID string `json:"accountId"`
}

// Notify is a step that sends a message to an account.
func Notify(_ context.Context, accountID, message string) (bool, error) {
	fmt.Printf("to %s: %s\n", accountID, message)
	return true, nil
}

// TrialNudge welcomes a trial account, then reminds it three days later to
// upgrade, unless the account upgrades first: a shop/trial.upgraded event for
// the same account cancels the run.
var TrialNudge = herald.NewFunction(herald.FunctionOpts{
	ID:       "trial-nudge",
	Triggers: []herald.Trigger{herald.OnEvent("shop/trial.started")},
	CancelOn: []herald.CancelOn{{Event: "shop/trial.upgraded", Match: "data.accountId"}},
}, func(ctx workflow.Context, in herald.Input[Trial]) (bool, error) {
	if _, err := step.Run[bool](ctx, "welcome", Notify, in.Event.Data.AccountID, "welcome to your trial"); err != nil {
		return false, err
	}
	if err := step.Sleep(ctx, "three-days", 72*time.Hour); err != nil {
		return false, err
	}
	return step.Run[bool](ctx, "reminder", Notify, in.Event.Data.AccountID, "your trial ends soon")
})

// ExampleCancelOn runs a function that CancelOn cancels while it sleeps.
// When a matching event arrives, Herald cancels the run's workflow: the step
// in flight finishes, no further step starts, and the run ends Cancelled.
// Here the test environment cancels the workflow a day into the sleep, as
// Herald would on shop/trial.upgraded.
func ExampleCancelOn() {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var finish struct {
			Status string `json:"status"`
			Error  string `json:"error"`
		}
		_ = json.NewDecoder(r.Body).Decode(&finish)
		fmt.Printf("Herald records the run: %s (%s)\n", finish.Status, finish.Error)
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
	if err := w.Register(TrialNudge); err != nil {
		panic(err)
	}
	if err := w.RegisterSteps(Notify); err != nil {
		panic(err)
	}
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(log.NewStructuredLogger(slog.New(slog.DiscardHandler)))
	env := suite.NewTestWorkflowEnvironment()
	env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{herald.ErrorInterceptor()}})
	w.RegisterForTest(env)

	env.RegisterDelayedCallback(env.CancelWorkflow, 24*time.Hour)
	env.ExecuteWorkflow(TrialNudge.ID(), map[string]any{"event": herald.TypedEvent[Trial]{
		ID: "evt-1", Name: "shop/trial.started", Data: Trial{AccountID: "acct-9"},
	}})
	fmt.Println("cancelled:", temporal.IsCanceledError(env.GetWorkflowError()))

	// Output:
	// to acct-9: welcome to your trial
	// Herald records the run: Cancelled (run cancelled)
	// cancelled: true
}
