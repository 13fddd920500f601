package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-run/herald/ingest"
	"github.com/herald-run/herald/registry"
	"github.com/herald-run/herald/router"
	"github.com/herald-run/herald/store"
	"github.com/herald-run/herald/triggers"
)

// recordingReplayer stands in for the router, which needs Temporal: it
// records each run a replay or a rerun starts, as Running, and starts nothing.
type recordingReplayer struct {
	st   store.Driver
	mu   sync.Mutex
	seen []router.Replay
}

func (r *recordingReplayer) StartReplay(ctx context.Context, rp router.Replay) (store.Run, error) {
	r.mu.Lock()
	r.seen = append(r.seen, rp)
	n := len(r.seen)
	r.mu.Unlock()
	run := store.Run{ID: fmt.Sprintf("replayed-%d", n), AppID: "demo", FunctionID: "flaky-charge", EventID: rp.Events[0].ID,
		WorkflowID: fmt.Sprintf("wf-replayed-%d", n), Status: "Running", StartedAt: time.Now().UTC(), ReplayOf: rp.ReplayOf, ReplayID: rp.ReplayID}
	return run, r.st.RecordRun(ctx, run, []string{rp.Events[0].ID})
}

// TestRecoveryCommandsAgainstIngest runs the runs, functions and replay
// commands against Herald's real REST API, on SQLite, with a synced app:
// a paused function, a failed run listed, rerun and replayed.
func TestRecoveryCommandsAgainstIngest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := openStore(ctx, "sqlite:"+filepath.Join(t.TempDir(), "h.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	require.NoError(t, st.Migrate(ctx))
	env, err := triggers.NewEnv()
	require.NoError(t, err)
	reg, err := registry.New(registry.Config{Store: st, Env: env})
	require.NoError(t, err)
	replayer := &recordingReplayer{st: st}
	srv, err := ingest.New(ingest.Config{Store: st, AllowAnyEventKey: true, SigningKey: stubSigningKey, Flushers: 1,
		Registry: reg, Replayer: replayer})
	require.NoError(t, err)
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { hs.Close(); srv.Close() })
	cli := func(args ...string) result {
		return runCLI(t, ctx, append(args, "--url", hs.URL, "--signing-key", stubSigningKey)...)
	}

	// The app syncs its function, as a worker does when it starts.
	req, err := http.NewRequest(http.MethodPost, hs.URL+"/v1/apps/demo/sync", bytes.NewBufferString(
		`{"task_queue":"demo","functions":[{"id":"flaky-charge","name":"Flaky charge","triggers":[{"event":"demo/payment.requested"}],"retries":0}]}`))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+stubSigningKey)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	r := cli("functions", "ls")
	require.Equal(t, 0, r.code, r.stderr)
	require.Regexp(t, `demo/flaky-charge\s+Flaky charge\s+1\s+demo/payment.requested\s+no`, r.stdout)

	r = cli("functions", "pause", "demo/flaky-charge")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "since ")
	r = cli("functions", "ls", "-o", "json")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, `"paused": true`)
	r = cli("functions", "pause", "demo/nope")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "herald functions pause: 404 Not Found: no function demo/nope")

	// A run of the event that failed before the pause.
	r = runCLI(t, ctx, "send", "demo/payment.requested", "--url", hs.URL, "--id", "ev-1", "--data", `{"orderId":"o-1"}`)
	require.Equal(t, 0, r.code, r.stderr)
	started := time.Now().Add(-time.Minute).UTC()
	failed := store.Run{ID: "run-1", AppID: "demo", FunctionID: "flaky-charge", EventID: "ev-1", WorkflowID: "wf-1",
		Status: "Running", StartedAt: started}
	require.NoError(t, st.RecordRun(ctx, failed, []string{"ev-1"}))
	ended := started.Add(time.Second)
	failed.Status, failed.Error, failed.EndedAt = "Failed", "card declined", &ended
	require.NoError(t, st.FinishRun(ctx, failed, nil))

	r = cli("runs", "ls", "--function", "demo/flaky-charge", "--status", "Failed")
	require.Equal(t, 0, r.code, r.stderr)
	require.Regexp(t, `run-1\s+demo/flaky-charge\s+Failed\s+.*ev-1\s+card declined`, r.stdout)
	r = cli("runs", "get", "run-1")
	require.Equal(t, 0, r.code, r.stderr)
	require.Regexp(t, `status\s+Failed`, r.stdout)
	r = cli("runs", "ls", "--status", "Bogus")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "400 Bad Request: status: must be one or more of")
	r = cli("runs", "cancel", "run-1")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "409 Conflict: run run-1 already ended with status Failed")

	r = cli("functions", "resume", "demo/flaky-charge")
	require.Equal(t, 0, r.code, r.stderr)
	require.Regexp(t, `demo/flaky-charge\s+Flaky charge\s+1\s+demo/payment.requested\s+no`, r.stdout)

	r = cli("runs", "rerun", "run-1")
	require.Equal(t, 0, r.code, r.stderr)
	require.Regexp(t, `replayed-1\s+demo/flaky-charge\s+Running`, r.stdout)
	r = cli("runs", "get", "replayed-1")
	require.Equal(t, 0, r.code, r.stderr)
	require.Regexp(t, `replay of\s+run-1`, r.stdout)

	// The replay selects the failed run (not the rerun, still Running) and
	// runs in the background; --wait follows it to the end.
	r = cli("replay", "create", "demo/flaky-charge", "--from", "1h", "--status", "Failed", "--wait")
	require.Equal(t, 0, r.code, r.stderr)
	require.Regexp(t, `demo/flaky-charge\s+Completed\s+1\s+1\s+0`, r.stdout)
	id := regexp.MustCompile(`(?m)^(\S+)\s+demo/flaky-charge`).FindStringSubmatch(r.stdout)
	require.Len(t, id, 2, r.stdout)
	r = cli("replay", "get", id[1])
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "Completed")
	replayer.mu.Lock()
	require.Len(t, replayer.seen, 2)
	require.Equal(t, "run-1", replayer.seen[1].ReplayOf)
	require.Equal(t, id[1], replayer.seen[1].ReplayID)
	replayer.mu.Unlock()

	r = cli("replay", "create", "demo/flaky-charge", "--from", "1h", "--status", "Running")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "400 Bad Request: statuses: each must be one of")
	r = cli("replay", "get", "nope")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, `404 Not Found: no replay with id "nope"`)
}
