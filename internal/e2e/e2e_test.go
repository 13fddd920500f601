package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/herald-run/herald"
	"github.com/herald-run/herald/ingest"
	"github.com/herald-run/herald/internal/server"
	"github.com/herald-run/herald/internal/temporaltest"
	"github.com/herald-run/herald/internal/testdb"
	"github.com/herald-run/herald/internal/testlog"
	"github.com/herald-run/herald/internal/wire"
	"github.com/herald-run/herald/router"
	"github.com/herald-run/herald/store"
	"github.com/herald-run/herald/store/postgres"
	"github.com/herald-run/herald/store/sqlite"
)

// devServer is the Temporal dev server shared by the package's tests.
var devServer *testsuite.DevServer

func TestMain(m *testing.M) {
	ds, err := temporaltest.Start(context.Background(), temporaltest.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: cannot start the Temporal dev server:", err)
		os.Exit(1)
	}
	devServer = ds
	code := m.Run()
	_ = ds.Stop()
	os.Exit(code)
}

// bundle is a running Herald (API and router) with a worker for one app.
type bundle struct {
	url      string
	app      string
	store    store.Driver
	temporal client.Client
	worker   *herald.Worker
}

type setupOpts struct {
	driver   string // "postgres" (default) or "sqlite"
	temporal client.Client
	// workerURL, when set, is the Herald URL the worker uses (a proxy).
	workerURL func(heraldURL string) string
	// tracing turns on Herald's spans (ingest and router).
	tracing bool
}

var appSeq atomic.Int64

func openDriver(t *testing.T, driver string) store.Driver {
	t.Helper()
	var (
		d   store.Driver
		err error
	)
	switch driver {
	case "", "postgres":
		d, err = postgres.Open(context.Background(), testdb.Schema(t))
	case "sqlite":
		d, err = sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "herald.db"))
	}
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close() })
	require.NoError(t, d.Migrate(context.Background()))
	return d
}

// startHerald runs Herald on st until the test ends and returns its URL.
func startHerald(t *testing.T, st store.Driver, tc client.Client, tracing ...bool) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	logs := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("herald log:\n%s", logs.String())
		}
	})
	go func() {
		done <- server.Run(ctx, server.Options{
			Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
			Addr:   "127.0.0.1:0", Store: st, Temporal: tc,
			Ingest: ingest.Config{AllowAnyEventKey: true, Tracing: len(tracing) > 0 && tracing[0]},
			// Each Herald has its own store, so its own system task queue.
			Router: router.Config{PollInterval: 100 * time.Millisecond, SystemTaskQueue: fmt.Sprintf("herald-system-e2e-%d-%d", os.Getpid(), appSeq.Add(1)),
				Tracing: len(tracing) > 0 && tracing[0]},
			Ready: func(_ context.Context, url string) { ready <- url },
		})
	}()
	var url string
	select {
	case url = <-ready:
	case err := <-done:
		t.Fatalf("herald did not start: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return url
}

func setup(t *testing.T, o setupOpts, fns ...*herald.Function) *bundle {
	t.Helper()
	tc := o.temporal
	if tc == nil {
		tc = devServer.Client()
	}
	st := openDriver(t, o.driver)
	url := startHerald(t, st, tc, o.tracing)
	app := fmt.Sprintf("e2e-%d-%d", os.Getpid(), appSeq.Add(1))
	workerURL := url
	if o.workerURL != nil {
		workerURL = o.workerURL(url)
	}
	w, err := herald.NewWorker(herald.WorkerOptions{App: app, HeraldURL: workerURL, Client: tc})
	require.NoError(t, err)
	require.NoError(t, w.Register(fns...))
	require.NoError(t, w.RegisterSteps(allSteps...))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, w.Start(ctx))
	t.Cleanup(w.Stop)
	return &bundle{url: url, app: app, store: st, temporal: tc, worker: w}
}

func (b *bundle) send(t *testing.T, events ...map[string]any) []string {
	t.Helper()
	body, err := json.Marshal(events)
	require.NoError(t, err)
	var out struct {
		IDs []string `json:"ids"`
	}
	b.do(t, http.MethodPost, "/e/test", body, http.StatusOK, &out)
	require.Len(t, out.IDs, len(events))
	return out.IDs
}

func (b *bundle) do(t *testing.T, method, path string, body []byte, wantStatus int, out any) {
	t.Helper()
	req, err := http.NewRequest(method, b.url+path, bytes.NewReader(body))
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	require.Equal(t, wantStatus, resp.StatusCode, "%s %s: %s", method, path, raw)
	if out != nil {
		require.NoError(t, json.Unmarshal(raw, out), string(raw))
	}
}

func (b *bundle) runs(t *testing.T, eventID string) []ingest.RunJSON {
	t.Helper()
	var out struct {
		Data []ingest.RunJSON `json:"data"`
	}
	b.do(t, http.MethodGet, "/v1/events/"+eventID+"/runs", nil, http.StatusOK, &out)
	return out.Data
}

// waitRuns waits until the event has n runs, all with a final status, and
// returns them.
func (b *bundle) waitRuns(t *testing.T, eventID string, n int) []ingest.RunJSON {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var runs []ingest.RunJSON
	for time.Now().Before(deadline) {
		runs = b.runs(t, eventID)
		if len(runs) == n && allFinal(runs) {
			return runs
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("event %s: want %d finished runs, have %+v", eventID, n, runs)
	return nil
}

// waitDispatched waits until the router is done with the event.
func (b *bundle) waitDispatched(t *testing.T, eventID string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		e, err := b.store.GetEvent(context.Background(), eventID)
		require.NoError(t, err)
		if e.Dispatched {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("event %s was not dispatched", eventID)
}

func allFinal(runs []ingest.RunJSON) bool {
	for _, r := range runs {
		if !wire.RunFinished(r.Status) {
			return false
		}
	}
	return true
}

func (b *bundle) eventsNamed(t *testing.T, name string) []ingest.EventJSON {
	t.Helper()
	var out struct {
		Data []ingest.EventJSON `json:"data"`
	}
	b.do(t, http.MethodGet, "/v1/events?name="+name, nil, http.StatusOK, &out)
	return out.Data
}

type syncBuffer = testlog.Buffer

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

func TestEventRunsFunction(t *testing.T) {
	t.Parallel()
	for _, driver := range []string{"postgres", "sqlite"} {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			b := setup(t, setupOpts{driver: driver}, greetFn("greeter", herald.OnEvent("test/user.signup")))
			ids := b.send(t, map[string]any{"name": "test/user.signup", "data": map[string]any{"name": "ada"}})
			runs := b.waitRuns(t, ids[0], 1)
			require.Equal(t, "Completed", runs[0].Status, runs[0].Error)
			require.JSONEq(t, `{"greeting":"hello ada","attempt":1}`, string(runs[0].Output))
			require.Equal(t, b.app, runs[0].AppID)
			require.Equal(t, "greeter", runs[0].FunctionID)
			require.Equal(t, b.app+"/greeter/"+ids[0], runs[0].WorkflowID)
			require.NotNil(t, runs[0].EndedAt)

			var one struct {
				Data ingest.RunJSON `json:"data"`
			}
			b.do(t, http.MethodGet, "/v1/runs/"+runs[0].RunID, nil, http.StatusOK, &one)
			require.Equal(t, runs[0].RunID, one.Data.RunID)

			// The run carries Herald's search attributes.
			desc, err := b.temporal.DescribeWorkflowExecution(context.Background(), runs[0].WorkflowID, "")
			require.NoError(t, err)
			sa := desc.GetWorkflowExecutionInfo().GetSearchAttributes().GetIndexedFields()
			for _, k := range []string{"HeraldApp", "HeraldFunction", "HeraldEventName", "HeraldEventID"} {
				require.Contains(t, sa, k)
			}

			// The outcome is an event too.
			finished := b.eventsNamed(t, "herald/function.finished")
			require.Len(t, finished, 1)
			require.Contains(t, string(finished[0].Data), runs[0].RunID)
		})
	}
}

func TestTriggerFilterWildcardAndFanOut(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{},
		greetFn("pro-only", herald.OnEvent("test/user.signup", `event.data.plan == "pro"`)),
		greetFn("all-user-events", herald.OnEvent("test/user.*")),
		greetFn("everything-test", herald.OnEvent("test/*")),
	)
	ids := b.send(t,
		map[string]any{"name": "test/user.signup", "data": map[string]any{"name": "p", "plan": "pro"}},
		map[string]any{"name": "test/user.signup", "data": map[string]any{"name": "f", "plan": "free"}},
		map[string]any{"name": "test/other", "data": map[string]any{"name": "o"}},
		map[string]any{"name": "elsewhere/user.signup", "data": map[string]any{"name": "x", "plan": "pro"}},
	)
	fnsOf := func(runs []ingest.RunJSON) []string {
		var out []string
		for _, r := range runs {
			require.Equal(t, "Completed", r.Status)
			out = append(out, r.FunctionID)
		}
		return out
	}
	require.ElementsMatch(t, []string{"pro-only", "all-user-events", "everything-test"}, fnsOf(b.waitRuns(t, ids[0], 3)))
	require.ElementsMatch(t, []string{"all-user-events", "everything-test"}, fnsOf(b.waitRuns(t, ids[1], 2)), "if false: no run of pro-only")
	require.ElementsMatch(t, []string{"everything-test"}, fnsOf(b.waitRuns(t, ids[2], 1)))
	b.waitDispatched(t, ids[3])
	require.Empty(t, b.runs(t, ids[3]), "no trigger matches elsewhere/*")
}

func TestSameEventIDRunsOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{}, greetFn("once", herald.OnEvent("test/once")))
	ev := map[string]any{"name": "test/once", "id": "order-42", "data": map[string]any{"name": "a"}}
	require.Equal(t, []string{"order-42"}, b.send(t, ev))
	b.waitRuns(t, "order-42", 1)
	require.Equal(t, []string{"order-42"}, b.send(t, ev))
	require.Equal(t, []string{"order-42", "order-42"}, b.send(t, ev, ev))
	time.Sleep(500 * time.Millisecond) // give a wrong second dispatch the chance to show
	require.Len(t, b.waitRuns(t, "order-42", 1), 1)
}

func TestFutureTimestampDelaysStart(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{}, greetFn("later", herald.OnEvent("test/later")))
	at := time.Now().Add(3 * time.Second)
	ids := b.send(t, map[string]any{"name": "test/later", "ts": at.UnixMilli(), "data": map[string]any{"name": "l"}})
	b.waitDispatched(t, ids[0])
	runs := b.runs(t, ids[0])
	require.Len(t, runs, 1)
	require.Equal(t, "Scheduled", runs[0].Status, "a run for a future event waits")
	runs = b.waitRuns(t, ids[0], 1)
	require.Equal(t, "Completed", runs[0].Status)
	require.False(t, runs[0].EndedAt.Before(at.Truncate(time.Millisecond)), "ended %v before the event time %v", runs[0].EndedAt, at)
}

func TestRetriesNonRetriableAndOnFailure(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{}, flakyFn(), declineFn())
	ids := b.send(t, map[string]any{"name": "test/flaky"}, map[string]any{"name": "test/decline"})

	flaky := b.waitRuns(t, ids[0], 1)[0]
	require.Equal(t, "Completed", flaky.Status, flaky.Error)
	require.JSONEq(t, `{"attempts":3}`, string(flaky.Output))

	declined := b.waitRuns(t, ids[1], 1)[0]
	require.Equal(t, "Failed", declined.Status)
	require.Contains(t, declined.Error, "card declined")
	// One attempt only.
	hist := b.temporal.GetWorkflowHistory(context.Background(), declined.WorkflowID, "", false, 0)
	attempts := 0
	for hist.HasNext() {
		ev, err := hist.Next()
		require.NoError(t, err)
		if a := ev.GetActivityTaskStartedEventAttributes(); a != nil && ev.GetActivityTaskStartedEventAttributes().GetAttempt() > 0 {
			attempts = max(attempts, int(a.GetAttempt()))
		}
	}
	require.Equal(t, 1, attempts)
	// OnFailure ran: it sent test/declined.
	var reported []ingest.EventJSON
	require.Eventually(t, func() bool { reported = b.eventsNamed(t, "test/declined"); return len(reported) == 1 }, 20*time.Second, 100*time.Millisecond)
	require.Contains(t, string(reported[0].Data), declined.RunID)
	failed := b.eventsNamed(t, "herald/function.failed")
	require.Len(t, failed, 1)
}

// flakyProxy forwards to Herald but answers 502 to the first POST /v1/events
// after forwarding it, as if the reply were lost: the SendEvent activity is
// retried after Herald already stored the events.
func flakyProxy(t *testing.T, target string) string {
	var dropped atomic.Bool
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req, _ := http.NewRequest(r.Method, target+r.URL.RequestURI(), bytes.NewReader(body))
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if r.URL.Path == "/v1/events" && dropped.CompareAndSwap(false, true) {
			http.Error(w, "reply lost", http.StatusBadGateway)
			return
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(raw)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

func TestSendEventFromRetriedStepRunsOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{workerURL: func(u string) string { return flakyProxy(t, u) }},
		senderFn(), greetFn("receiver", herald.OnEvent("test/sent")))
	ids := b.send(t, map[string]any{"name": "test/send"})
	sender := b.waitRuns(t, ids[0], 1)[0]
	require.Equal(t, "Completed", sender.Status, sender.Error)
	var sentIDs []string
	require.NoError(t, json.Unmarshal(sender.Output, &sentIDs))
	require.Len(t, sentIDs, 1)
	require.Len(t, b.eventsNamed(t, "test/sent"), 1, "the retried activity stored the event once")
	runs := b.waitRuns(t, sentIDs[0], 1)
	require.Equal(t, "receiver", runs[0].FunctionID)
}

func TestInvokeAndChild(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{}, parentFn(), greetFn("child", herald.OnEvent("test/never")))
	ids := b.send(t, map[string]any{"name": "test/parent"})
	parent := b.waitRuns(t, ids[0], 1)[0]
	require.Equal(t, "Completed", parent.Status, parent.Error)
	require.JSONEq(t, `{"child":{"greeting":"hello from parent","attempt":1}}`, string(parent.Output))

	// POST /v1/invoke starts one function directly.
	var inv struct {
		IDs   []string `json:"ids"`
		RunID string   `json:"run_id"`
	}
	b.do(t, http.MethodPost, "/v1/invoke/"+b.app+"/child", []byte(`{"data":{"name":"api"}}`), http.StatusOK, &inv)
	runs := b.waitRuns(t, inv.IDs[0], 1)
	require.Equal(t, inv.RunID, runs[0].RunID)
	require.JSONEq(t, `{"greeting":"hello api","attempt":1}`, string(runs[0].Output))
	b.do(t, http.MethodPost, "/v1/invoke/"+b.app+"/missing", nil, http.StatusNotFound, nil)

	// The invoked data follows the rules of any event's.
	deep := strings.Repeat(`{"a":`, 70) + "1" + strings.Repeat("}", 70)
	var bad struct {
		Error string `json:"error"`
	}
	b.do(t, http.MethodPost, "/v1/invoke/"+b.app+"/child", []byte(`{"data":`+deep+`}`), http.StatusBadRequest, &bad)
	require.Contains(t, bad.Error, "data: must not nest")
	b.do(t, http.MethodPost, "/v1/invoke/"+b.app+"/child", []byte(`{"data":{},"id":"`+strings.Repeat("x", 300)+`"}`), http.StatusBadRequest, &bad)
	require.Contains(t, bad.Error, "id: must be at most 256 characters")
}

func TestCancelRun(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{}, sleeperFn())
	ids := b.send(t, map[string]any{"name": "test/sleep"})
	b.waitDispatched(t, ids[0])
	run := b.runs(t, ids[0])[0]
	b.do(t, http.MethodDelete, "/v1/runs/"+run.RunID, nil, http.StatusOK, nil)
	runs := b.waitRuns(t, ids[0], 1)
	require.Equal(t, "Cancelled", runs[0].Status)
	require.Len(t, b.eventsNamed(t, "herald/function.cancelled"), 1)
	b.do(t, http.MethodDelete, "/v1/runs/"+run.RunID, nil, http.StatusConflict, nil)
	b.do(t, http.MethodDelete, "/v1/runs/nope", nil, http.StatusNotFound, nil)
}

func TestSyncValidationAndFunctions(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{}, greetFn("listed", herald.OnEvent("test/x")))
	var fns struct {
		Data []ingest.FunctionJSON `json:"data"`
	}
	b.do(t, http.MethodGet, "/v1/functions", nil, http.StatusOK, &fns)
	require.Len(t, fns.Data, 1)
	require.Equal(t, b.app+"/listed", fns.Data[0].ID)
	require.Equal(t, 1, fns.Data[0].Version)

	bad := herald.NewFunction(herald.FunctionOpts{ID: "Bad ID", Triggers: []herald.Trigger{
		herald.OnEvent("test/us*"), herald.OnEvent("test/x", "event.data.n >"), herald.OnCron("TZ=Mars/Base 0 3 * * *"),
	}}, func(ctx workflow.Context, in herald.Input[map[string]any]) (int, error) { return 0, nil })
	w, err := herald.NewWorker(herald.WorkerOptions{App: b.app, HeraldURL: b.url, Client: b.temporal})
	require.NoError(t, err)
	require.NoError(t, w.Register(bad))
	err = w.Sync(context.Background())
	require.Error(t, err)
	for _, want := range []string{"Bad ID", "test/us*", "event.data.n >", "Mars/Base"} {
		require.Contains(t, err.Error(), want)
	}
	// The failed sync changed nothing.
	b.do(t, http.MethodGet, "/v1/functions", nil, http.StatusOK, &fns)
	require.Len(t, fns.Data, 1)
	require.True(t, strings.HasSuffix(fns.Data[0].ID, "/listed"))
}

func TestRemovedFunctionStopsTriggering(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{}, greetFn("going", herald.OnEvent("test/removed")), greetFn("staying", herald.OnEvent("test/removed")))
	first := b.send(t, map[string]any{"name": "test/removed"})
	require.Len(t, b.waitRuns(t, first[0], 2), 2)

	w, err := herald.NewWorker(herald.WorkerOptions{App: b.app, HeraldURL: b.url, Client: b.temporal})
	require.NoError(t, err)
	require.NoError(t, w.Register(greetFn("staying", herald.OnEvent("test/removed"))))
	require.NoError(t, w.Sync(context.Background()))

	second := b.send(t, map[string]any{"name": "test/removed"})
	runs := b.waitRuns(t, second[0], 1)
	require.Equal(t, "staying", runs[0].FunctionID)
}
