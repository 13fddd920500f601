package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/stretchr/testify/require"

	"github.com/herald-run/herald"
	"github.com/herald-run/herald/ingest"
	"github.com/herald-run/herald/internal/server"
	"github.com/herald-run/herald/router"
	"github.com/herald-run/herald/store"
)

// boomTrigger is the trigger a security probe used to kill Herald: it
// compiles and passes the cost estimate, but each replace() multiplies the
// string tenfold, so one evaluation on "aaaaaaaaaa" asks for about 10 GB.
func boomTrigger() string {
	x := "event.data.s" + strings.Repeat(`.replace("a","aaaaaaaaaa")`, 4)
	return x + `.replace("a", ` + x + `) == ""`
}

// runHerald runs Herald on st at addr until the returned stop is called.
func runHerald(t *testing.T, st store.Driver, addr, queue string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- server.Run(ctx, server.Options{
			Logger: slog.New(slog.DiscardHandler),
			Addr:   addr, Store: st, Temporal: devServer.Client(),
			Ingest: ingest.Config{AllowAnyEventKey: true},
			Router: router.Config{PollInterval: 100 * time.Millisecond, SystemTaskQueue: queue},
			Ready:  func(_ context.Context, url string) { ready <- url },
		})
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("herald did not start: %v", err)
	}
	var stopped bool
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			require.NoError(t, <-done)
		}
	}
	t.Cleanup(stop)
	return stop
}

// A poison expression neither crashes Herald nor blocks its outbox: the
// event is dispatched and runs its other function. And a Herald restarted
// with such an event pending (before, the process died on every restart)
// dispatches it too.
func TestPoisonExpressionNeitherCrashesNorBlocks(t *testing.T) {
	t.Parallel()
	st := openDriver(t, "postgres")
	addr := freeAddr(t)
	queue := fmt.Sprintf("herald-system-e2e-%d-%d", os.Getpid(), appSeq.Add(1))
	stop := runHerald(t, st, addr, queue)
	url := "http://" + addr
	b := &bundle{url: url, app: fmt.Sprintf("e2e-%d-%d", os.Getpid(), appSeq.Add(1)), store: st, temporal: devServer.Client()}
	w, err := herald.NewWorker(herald.WorkerOptions{App: b.app, HeraldURL: url, Client: b.temporal})
	require.NoError(t, err)
	require.NoError(t, w.Register(
		greetFn("boom", herald.OnEvent("poison/x", boomTrigger())),
		greetFn("plain", herald.OnEvent("poison/x"))))
	require.NoError(t, w.RegisterSteps(allSteps...))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, w.Start(ctx))
	t.Cleanup(w.Stop)

	data := map[string]any{"name": "ada", "s": "aaaaaaaaaa"}
	first := b.send(t, ev("poison/x", data))[0]
	runs := b.waitRuns(t, first, 1)
	require.Equal(t, "plain", runs[0].FunctionID)
	require.Equal(t, "Completed", runs[0].Status, runs[0].Error)

	// Stop Herald, leave a poison event pending, start it again.
	stop()
	now := time.Now().UTC().Truncate(time.Millisecond)
	pendingID := ulid.Make().String()
	_, err = st.InsertEvents(context.Background(), []store.Event{{ID: pendingID, Name: "poison/x",
		Data: []byte(`{"name":"bo","s":"aaaaaaaaaa"}`), TS: now.UnixMilli(), ReceivedAt: now, Fresh: true}}, now.Add(-time.Hour))
	require.NoError(t, err)
	runHerald(t, st, addr, queue)

	runs = b.waitRuns(t, pendingID, 1)
	require.Equal(t, "plain", runs[0].FunctionID)
	require.Equal(t, "Completed", runs[0].Status, runs[0].Error)
	b.waitDispatched(t, pendingID)
	resp, err := http.Get(url + "/healthz")
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
}
