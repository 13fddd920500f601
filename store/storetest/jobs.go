package storetest

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-run/herald/store"
)

// The lease part of the suite: background jobs (bulk cancellations) are
// taken, renewed, stolen only when stale, and saved with a compare-and-set
// on their owner. Times are fixed (base) and whole milliseconds.

func takeStale(t *testing.T, s store.Driver, owner string, staleBefore, now time.Time) string {
	t.Helper()
	id, err := s.TakeStaleJob(ctx(t), store.JobCancellation, owner, staleBefore, now)
	if err != nil {
		require.ErrorIs(t, err, store.ErrNotFound)
		return ""
	}
	return id
}

func getCancellation(t *testing.T, s store.Driver, id string) store.Cancellation {
	t.Helper()
	c, err := s.GetCancellation(ctx(t), id)
	require.NoError(t, err)
	return c
}

func testJobLease(t *testing.T, s store.Driver) {
	t0 := base
	job := cancellationJob("job", store.JobRunning, t0)
	job.Owner, job.HeartbeatAt = "owner-a", t0
	require.NoError(t, s.SaveCancellation(ctx(t), job))
	got := getCancellation(t, s, "job")
	require.Equal(t, "owner-a", got.Owner)
	require.True(t, got.HeartbeatAt.Equal(t0))
	require.Equal(t, "", got.Cursor)

	// A fresh job is not taken; only a heartbeat strictly before the
	// threshold is stale.
	require.Empty(t, takeStale(t, s, "owner-b", t0, t0.Add(30*time.Second)))

	// The owner renews; a stranger cannot.
	require.NoError(t, s.RenewJob(ctx(t), store.JobCancellation, "job", "owner-a", t0.Add(10*time.Second)))
	require.ErrorIs(t, s.RenewJob(ctx(t), store.JobCancellation, "job", "owner-b", t0.Add(10*time.Second)), store.ErrLeaseLost)
	require.ErrorIs(t, s.RenewJob(ctx(t), store.JobCancellation, "nope", "owner-a", t0), store.ErrLeaseLost)
	require.True(t, getCancellation(t, s, "job").HeartbeatAt.Equal(t0.Add(10*time.Second)))
	require.Empty(t, takeStale(t, s, "owner-b", t0.Add(10*time.Second), t0.Add(40*time.Second)), "renewed at the threshold: not stale")

	// The owner saves progress with its lease.
	job.Matched, job.Cancelled, job.Cursor = 3, 2, "run-3"
	job.UpdatedAt, job.HeartbeatAt = t0.Add(11*time.Second), t0.Add(11*time.Second)
	require.NoError(t, s.UpdateCancellation(ctx(t), job))

	// Stale: the owner stopped renewing. One taker gets it, its heartbeat
	// becomes the taker's now, and it is no longer stale for the next one.
	taken := t0.Add(45 * time.Second)
	require.Equal(t, "job", takeStale(t, s, "owner-b", t0.Add(12*time.Second), taken))
	got = getCancellation(t, s, "job")
	require.Equal(t, "owner-b", got.Owner)
	require.True(t, got.HeartbeatAt.Equal(taken))
	require.Equal(t, "run-3", got.Cursor, "the taker resumes from the saved progress")
	require.Equal(t, int64(3), got.Matched)
	require.Equal(t, int64(2), got.Cancelled)
	require.Empty(t, takeStale(t, s, "owner-c", t0.Add(12*time.Second), taken))

	// The old owner finds out: its saves and renewals fail and change nothing.
	stale := job
	stale.Matched, stale.Cancelled, stale.Cursor, stale.Status = 99, 99, "run-99", store.JobCompleted
	require.ErrorIs(t, s.UpdateCancellation(ctx(t), stale), store.ErrLeaseLost)
	require.ErrorIs(t, s.RenewJob(ctx(t), store.JobCancellation, "job", "owner-a", taken), store.ErrLeaseLost)
	got = getCancellation(t, s, "job")
	require.Equal(t, store.JobRunning, got.Status)
	require.Equal(t, "run-3", got.Cursor)
	require.Equal(t, int64(3), got.Matched)
	require.Equal(t, "owner-b", got.Owner)

	// The new owner finishes the job; a finished job has no lease to renew,
	// save or take, however old its heartbeat.
	job = got
	job.Matched, job.Cancelled, job.Cursor, job.Status = 5, 4, "run-5", store.JobCompleted
	job.UpdatedAt, job.HeartbeatAt = taken.Add(time.Second), taken.Add(time.Second)
	require.NoError(t, s.UpdateCancellation(ctx(t), job))
	got = getCancellation(t, s, "job")
	require.Equal(t, store.JobCompleted, got.Status)
	require.Equal(t, int64(5), got.Matched)
	require.Equal(t, int64(4), got.Cancelled)
	require.True(t, got.UpdatedAt.Equal(taken.Add(time.Second)))
	require.ErrorIs(t, s.RenewJob(ctx(t), store.JobCancellation, "job", "owner-b", far), store.ErrLeaseLost)
	require.ErrorIs(t, s.UpdateCancellation(ctx(t), job), store.ErrLeaseLost)
	require.Empty(t, takeStale(t, s, "owner-c", far, far))

	// Unknown kinds are refused.
	_, err := s.TakeStaleJob(ctx(t), "replay-v0", "owner", far, far)
	require.ErrorIs(t, err, store.ErrJobKind)
	require.ErrorIs(t, s.RenewJob(ctx(t), "replay-v0", "job", "owner", far), store.ErrJobKind)
}

// Takers pick the stalest job first.
func testJobTakeOrder(t *testing.T, s store.Driver) {
	for i, at := range []time.Duration{3 * time.Second, time.Second, 2 * time.Second} {
		job := cancellationJob(fmt.Sprintf("j%d", i), store.JobRunning, base)
		job.Owner, job.HeartbeatAt = "dead", base.Add(at)
		require.NoError(t, s.SaveCancellation(ctx(t), job))
	}
	var order []string
	for {
		id := takeStale(t, s, "taker", base.Add(time.Minute), base.Add(time.Minute))
		if id == "" {
			break
		}
		order = append(order, id)
	}
	require.Equal(t, []string{"j1", "j2", "j0"}, order)
}

// Replicas taking over at once: each stale job is taken exactly once.
func testJobConcurrentTakeOver(t *testing.T, s store.Driver) {
	const jobs, takers = 6, 8
	for i := range jobs {
		job := cancellationJob(fmt.Sprintf("j%d", i), store.JobRunning, base)
		job.Owner, job.HeartbeatAt = "dead", base.Add(time.Duration(i)*time.Millisecond)
		require.NoError(t, s.SaveCancellation(ctx(t), job))
	}
	live := cancellationJob("live", store.JobRunning, base)
	live.Owner, live.HeartbeatAt = "alive", base.Add(time.Hour)
	require.NoError(t, s.SaveCancellation(ctx(t), live))

	var (
		mu    sync.Mutex
		takes = map[string][]string{} // job -> takers
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  = make(chan error, takers)
	)
	for i := range takers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			owner := fmt.Sprintf("taker-%d", i)
			<-start
			for {
				id, err := s.TakeStaleJob(ctx(t), store.JobCancellation, owner, base.Add(time.Minute), base.Add(time.Minute))
				if err != nil {
					if !errors.Is(err, store.ErrNotFound) {
						errs <- err
					}
					return
				}
				mu.Lock()
				takes[id] = append(takes[id], owner)
				mu.Unlock()
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	var taken []string
	for id, by := range takes {
		require.Len(t, by, 1, "job %s taken by %v", id, by)
		taken = append(taken, id)
		require.Equal(t, by[0], getCancellation(t, s, id).Owner)
	}
	sort.Strings(taken)
	require.Equal(t, []string{"j0", "j1", "j2", "j3", "j4", "j5"}, taken)
	require.Equal(t, "alive", getCancellation(t, s, "live").Owner, "a live job is never taken")
}
