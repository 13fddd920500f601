package ingest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-run/herald/ingest"
	"github.com/herald-run/herald/internal/wire"
	"github.com/herald-run/herald/store"
)

// Bulk cancellations run under a lease (store.Jobs): these tests play the
// replicas with Servers on one real store and stand in for Temporal with a
// canceller that records, and may hold, each cancellation.

// canceller records the workflows it is asked to cancel. While hold is set,
// a call waits until release (or its context ends).
type canceller struct {
	mu      sync.Mutex
	calls   []string
	hold    chan struct{} // nil: answer at once
	started chan string   // receives each workflow id as its call begins, if set
}

func (c *canceller) Cancel(ctx context.Context, workflowID string) error {
	c.mu.Lock()
	c.calls = append(c.calls, workflowID)
	hold, started := c.hold, c.started
	c.mu.Unlock()
	if started != nil {
		started <- workflowID
	}
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (c *canceller) called() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.calls...)
}

// activeRuns stores n Running runs of function a/f (r00, r01, ...), each with
// its event, and one run of another function.
func activeRuns(t *testing.T, st store.Driver, n int) []string {
	t.Helper()
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	var events []store.Event
	var runs []store.Run
	var ids []string
	for i := range n + 1 {
		eventID := fmt.Sprintf("e%02d", i)
		events = append(events, store.Event{ID: eventID, Name: "t/x", Data: json.RawMessage(`{"n":1}`), ReceivedAt: now})
		fn, runID := "f", fmt.Sprintf("r%02d", i)
		if i == n {
			fn, runID = "other", "other"
		} else {
			ids = append(ids, runID)
		}
		runs = append(runs, store.Run{ID: runID, AppID: "a", FunctionID: fn, EventID: eventID,
			WorkflowID: wire.WorkflowID("a", fn, eventID), Status: wire.RunRunning, StartedAt: now})
	}
	_, err := st.InsertEvents(ctx, events, now.Add(-time.Hour))
	require.NoError(t, err)
	_, err = st.ClaimEvents(ctx, 1000, func(context.Context, store.ClaimTx, []store.Event) (store.Claim, error) {
		return store.Claim{Runs: runs, Dispatched: func() []string {
			var out []string
			for _, e := range events {
				out = append(out, e.ID)
			}
			return out
		}()}, nil
	})
	require.NoError(t, err)
	return ids
}

// replica is a Server on st with canceller c, closed when the test ends.
func replica(t *testing.T, st store.Driver, c *canceller, lease ingest.JobLease) *ingest.Server {
	t.Helper()
	srv, err := ingest.New(ingest.Config{Store: st, EventKeys: []string{eventKey}, Temporal: c, Jobs: lease})
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	return srv
}

func waitJob(t *testing.T, st store.Driver, id string, cond func(store.Cancellation) bool) store.Cancellation {
	t.Helper()
	var job store.Cancellation
	require.Eventually(t, func() bool {
		var err error
		job, err = st.GetCancellation(context.Background(), id)
		require.NoError(t, err)
		return cond(job)
	}, 20*time.Second, 10*time.Millisecond, "job %s: last seen %+v", id, job)
	return job
}

func completed(c store.Cancellation) bool { return c.Status == store.JobCompleted }

// startJob creates a bulk cancellation of a/f through the API of b.
func startJob(t *testing.T, b *bundle) string {
	t.Helper()
	r := b.do(t, http.MethodPost, "/v1/cancellations", strings.NewReader(`{"function_id":"a/f"}`), nil)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	var created struct {
		Data ingest.CancellationJSON `json:"data"`
	}
	require.NoError(t, json.Unmarshal(r.body, &created))
	return created.Data.ID
}

// A job whose replica died is taken over by the next replica that looks,
// once its lease is stale, and resumed at its cursor: the run the dead
// replica was working on (it had cancelled it, and the run has ended
// Cancelled since) is counted, not cancelled again; the runs before it are
// not looked at again.
func TestCancellationTakenOver(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		st := openStore(t, driver)
		ctx := context.Background()
		runs := activeRuns(t, st, 30)
		// The dead replica cancelled r00 to r10 and saved its cursor at r10
		// with the counts of r00 to r09, then died.
		for _, id := range runs[:11] {
			r, err := st.GetRun(ctx, id)
			require.NoError(t, err)
			r.Status = wire.RunCancelled
			require.NoError(t, st.FinishRun(ctx, r, nil))
		}
		stale := time.Now().UTC().Add(-time.Minute).Truncate(time.Millisecond)
		require.NoError(t, st.SaveCancellation(ctx, store.Cancellation{ID: "job", AppID: "a", FunctionID: "f",
			Status: store.JobRunning, Matched: 10, Cancelled: 10, Cursor: runs[10],
			CreatedAt: stale, UpdatedAt: stale, Owner: "dead-replica", HeartbeatAt: stale}))
		// A live job of this replica's peer is not taken.
		now := time.Now().UTC()
		require.NoError(t, st.SaveCancellation(ctx, store.Cancellation{ID: "live", AppID: "a", FunctionID: "g",
			Status: store.JobRunning, CreatedAt: now, UpdatedAt: now, Owner: "live-replica", HeartbeatAt: now}))

		c := &canceller{}
		srv := replica(t, st, c, ingest.JobLease{StaleAfter: 30 * time.Second})
		n, err := srv.TakeOverCancellations(ctx)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		job := waitJob(t, st, "job", completed)
		require.Equal(t, int64(30), job.Matched)
		require.Equal(t, int64(30), job.Cancelled)
		require.Empty(t, job.Error)
		require.NotEqual(t, "dead-replica", job.Owner)
		var want []string
		for _, id := range runs[11:] {
			want = append(want, wire.WorkflowID("a", "f", "e"+strings.TrimPrefix(id, "r")))
		}
		require.Equal(t, want, c.called(), "only the runs after the cursor are cancelled")

		n, err = srv.TakeOverCancellations(ctx)
		require.NoError(t, err)
		require.Zero(t, n, "nothing is stale any more")
		live, err := st.GetCancellation(ctx, "live")
		require.NoError(t, err)
		require.Equal(t, "live-replica", live.Owner)
	})
}

// A job that finds its lease gone (another replica took it) stops at once:
// its next save fails and it cancels nothing more.
func TestCancellationStopsWhenLeaseLost(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		c := &canceller{hold: make(chan struct{}), started: make(chan string, 100)}
		b := setup(t, driver, func(cfg *ingest.Config) { cfg.Temporal = c })
		runs := activeRuns(t, b.store, 20)
		id := startJob(t, b)
		<-c.started // the job is cancelling the first run

		ctx := context.Background()
		far := time.Now().Add(time.Hour)
		taken, err := b.store.TakeStaleJob(ctx, store.JobCancellation, "thief", far, far)
		require.NoError(t, err)
		require.Equal(t, id, taken)
		close(c.hold)

		// The job's save before the second run fails: it stops there.
		time.Sleep(200 * time.Millisecond)
		require.Len(t, c.called(), 1)
		job, err := b.store.GetCancellation(ctx, id)
		require.NoError(t, err)
		require.Equal(t, store.JobRunning, job.Status)
		require.Equal(t, "thief", job.Owner)
		require.Equal(t, runs[0], job.Cursor, "the cursor saved before the first run")
		require.Zero(t, job.Matched, "the first run's count was never saved")
	})
}

// A running job renews its lease while it waits on Temporal, so no replica
// takes it over however long one cancellation takes.
func TestCancellationRenewsWhileWaiting(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		lease := ingest.JobLease{StaleAfter: 600 * time.Millisecond, Heartbeat: 100 * time.Millisecond}
		c := &canceller{hold: make(chan struct{}), started: make(chan string, 100)}
		b := setup(t, driver, func(cfg *ingest.Config) { cfg.Temporal, cfg.Jobs = c, lease })
		activeRuns(t, b.store, 3)
		id := startJob(t, b)
		<-c.started

		other := replica(t, b.store, &canceller{}, lease)
		for deadline := time.Now().Add(3 * lease.StaleAfter); time.Now().Before(deadline); {
			n, err := other.TakeOverCancellations(context.Background())
			require.NoError(t, err)
			require.Zero(t, n, "a live job was taken over")
			time.Sleep(50 * time.Millisecond)
		}
		close(c.hold)
		job := waitJob(t, b.store, id, completed)
		require.Equal(t, int64(3), job.Cancelled)
		require.Len(t, c.called(), 3)
	})
}

// A replica that stops hands its jobs back: another replica takes them over
// at its next look, without waiting for the lease to go stale, and redoes the
// run that was interrupted.
func TestCancellationHandedOverOnClose(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		c := &canceller{hold: make(chan struct{}), started: make(chan string, 100)}
		b := setup(t, driver, func(cfg *ingest.Config) { cfg.Temporal = c })
		runs := activeRuns(t, b.store, 10)
		id := startJob(t, b)
		<-c.started
		b.srv.Close() // the held cancellation ends with the server's context

		ctx := context.Background()
		job, err := b.store.GetCancellation(ctx, id)
		require.NoError(t, err)
		require.Equal(t, store.JobRunning, job.Status)
		require.True(t, job.HeartbeatAt.Before(time.Now().Add(-time.Hour)), "lease handed back: %v", job.HeartbeatAt)
		require.Equal(t, runs[0], job.Cursor)

		c2 := &canceller{}
		other := replica(t, b.store, c2, ingest.JobLease{}) // default: stale after 30s
		n, err := other.TakeOverCancellations(ctx)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		job = waitJob(t, b.store, id, completed)
		require.Equal(t, int64(10), job.Matched)
		require.Equal(t, int64(10), job.Cancelled)
		require.Len(t, c2.called(), 10, "the interrupted run is cancelled again")
	})
}

func TestJobLeaseDefaults(t *testing.T) {
	t.Parallel()
	require.Equal(t, ingest.JobLease{StaleAfter: 30 * time.Second, Heartbeat: 5 * time.Second}, ingest.JobLease{}.WithDefaults())
	require.Equal(t, ingest.JobLease{StaleAfter: 6 * time.Second, Heartbeat: time.Second}, ingest.JobLease{StaleAfter: 6 * time.Second}.WithDefaults())
	require.Equal(t, ingest.JobLease{StaleAfter: 6 * time.Second, Heartbeat: 2 * time.Second},
		ingest.JobLease{StaleAfter: 6 * time.Second, Heartbeat: 2 * time.Second}.WithDefaults())
	require.Equal(t, ingest.JobLease{StaleAfter: 6 * time.Second, Heartbeat: time.Second},
		ingest.JobLease{StaleAfter: 6 * time.Second, Heartbeat: 4 * time.Second}.WithDefaults(), "a heartbeat over half the threshold is refused")
}
