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

// DocEdited is the data of a docs/doc.edited event.
type DocEdited struct {
	DocID    string `json:"docId"`
	Revision int    `json:"revision"`
}

// Reindex is a step that reindexes one revision of a document.
func Reindex(_ context.Context, docID string, revision int) (string, error) {
	return fmt.Sprintf("%s@%d", docID, revision), nil
}

// ReindexDoc reindexes a document once its edits settle: Herald starts one
// run 30 seconds after the last edit of a document, with that edit. Timeout
// bounds the delay: a document edited without pause is reindexed at most 10
// minutes after the first edit of the burst.
var ReindexDoc = herald.NewFunction(herald.FunctionOpts{
	ID:       "reindex-doc",
	Triggers: []herald.Trigger{herald.OnEvent("docs/doc.edited")},
	Debounce: &herald.Debounce{
		Period:  30 * time.Second,
		Key:     "event.data.docId",
		Timeout: 10 * time.Minute,
	},
}, func(ctx workflow.Context, in herald.Input[DocEdited]) (string, error) {
	// A debounced run receives one event, the last of the burst.
	if len(in.Events) != 1 {
		return "", fmt.Errorf("a debounced run got %d events", len(in.Events))
	}
	return step.Run[string](ctx, "reindex", Reindex, in.Event.Data.DocID, in.Event.Data.Revision)
})

// ExampleDebounce declares a debounced function and runs its handler in the
// test environment. The debouncing itself happens in Herald (a debounce
// workflow per key, on Herald's own task queue): after a burst of edits to
// doc-1 ending with revision 7, Herald starts one run with that last edit,
// which is the input the test starts the run with.
func ExampleDebounce() {
	api := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer api.Close()
	temporalClient, err := client.NewLazyClient(client.Options{})
	if err != nil {
		panic(err)
	}
	defer temporalClient.Close()
	w, err := herald.NewWorker(herald.WorkerOptions{App: "docs", Client: temporalClient, HeraldURL: api.URL})
	if err != nil {
		panic(err)
	}
	if err := w.Register(ReindexDoc); err != nil {
		panic(err)
	}
	if err := w.RegisterSteps(Reindex); err != nil {
		panic(err)
	}

	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(log.NewStructuredLogger(slog.New(slog.DiscardHandler)))
	env := suite.NewTestWorkflowEnvironment()
	env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{herald.ErrorInterceptor()}})
	w.RegisterForTest(env)

	env.ExecuteWorkflow(ReindexDoc.ID(), map[string]any{"event": herald.TypedEvent[DocEdited]{
		ID: "evt-7", Name: "docs/doc.edited", Data: DocEdited{DocID: "doc-1", Revision: 7},
	}})
	var indexed string
	if err := env.GetWorkflowResult(&indexed); err != nil {
		panic(err)
	}
	fmt.Println("indexed", indexed)

	// Output:
	// indexed doc-1@7
}
