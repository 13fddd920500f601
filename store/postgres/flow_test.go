package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-run/herald/store"
	"github.com/herald-run/herald/store/postgres"
)

// contend runs two claims that call step on the same flow state. The first
// claim calls it and holds its transaction open; the second, on another
// event, calls it meanwhile and must wait until the first commits. It returns
// what step returned in the first and in the second claim.
func contend[T any](t *testing.T, d *postgres.Driver, step func(c context.Context, tx store.ClaimTx, claim int) (T, error)) (first, second T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	received := time.Now().Add(-time.Minute)
	for i, id := range []string{"e1", "e2"} {
		_, err := d.InsertEvents(ctx, []store.Event{{
			ID: id, Name: "flow/x", Data: json.RawMessage(`{}`), ReceivedAt: received.Add(time.Duration(i) * time.Millisecond),
		}}, received.Add(-time.Hour))
		require.NoError(t, err)
	}

	holding, release := make(chan struct{}), make(chan struct{})
	firstDone := make(chan error, 1)
	go func() {
		_, err := d.ClaimEvents(ctx, 1, func(c context.Context, tx store.ClaimTx, events []store.Event) (store.Claim, error) {
			var err error
			first, err = step(c, tx, 1)
			close(holding)
			if err != nil {
				return store.Claim{}, err
			}
			select {
			case <-release:
			case <-c.Done(): // the test failed; let go of the locks
				return store.Claim{}, c.Err()
			}
			return store.Claim{Dispatched: []string{events[0].ID}}, nil
		})
		firstDone <- err
	}()
	select {
	case <-holding:
	case err := <-firstDone:
		require.FailNow(t, "the first claim ended early", "%v", err)
	}

	secondStepped := make(chan struct{})
	secondDone := make(chan error, 1)
	go func() {
		_, err := d.ClaimEvents(ctx, 10, func(c context.Context, tx store.ClaimTx, events []store.Event) (store.Claim, error) {
			if len(events) != 1 || events[0].ID != "e2" {
				return store.Claim{}, fmt.Errorf("second claim: events %v; e1 is locked by the first claim", events)
			}
			var err error
			second, err = step(c, tx, 2)
			close(secondStepped)
			return store.Claim{Dispatched: []string{"e2"}}, err
		})
		secondDone <- err
	}()
	// Without the lock the second step would return at once; it must still
	// be waiting (this can only pass wrongly on a very slow machine, never
	// fail wrongly).
	select {
	case <-secondStepped:
		require.FailNow(t, "the second claim did not wait for the first")
	case err := <-secondDone:
		require.FailNow(t, "the second claim ended early", "%v", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	require.NoError(t, <-firstDone)
	require.NoError(t, <-secondDone)
	return first, second
}

// Two claims limiting one key at one instant: exactly one is admitted; the
// other waits for it and sees its TAT.
func TestConcurrentLimit(t *testing.T) {
	t.Parallel()
	d := open(t)
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	type result struct {
		startAt time.Time
		ok      bool
	}
	first, second := contend(t, d, func(c context.Context, tx store.ClaimTx, _ int) (result, error) {
		startAt, ok, err := tx.Limit(c, "rate", now, time.Hour, 0, now)
		return result{startAt.UTC(), ok}, err
	})
	require.Equal(t, result{now, true}, first)
	require.Equal(t, result{now.Add(time.Hour), false}, second)
}

// Two claims creating one limiter: the second one's insert waits for the
// first's, then it locks the row the first committed.
func TestConcurrentLimitNewKey(t *testing.T) {
	t.Parallel()
	d := open(t)
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	far := now.Add(100 * time.Hour)
	first, second := contend(t, d, func(c context.Context, tx store.ClaimTx, _ int) (time.Time, error) {
		startAt, ok, err := tx.Limit(c, "throttle", now, 2*time.Second, 0, far)
		if err == nil && !ok {
			err = fmt.Errorf("a throttle with a far latest start refused a request")
		}
		return startAt.UTC(), err
	})
	require.Equal(t, now, first)
	require.Equal(t, now.Add(2*time.Second), second)
}

// Two claims taking one idempotency key for different runs: exactly one
// takes it; the other waits and learns the holder.
func TestConcurrentTakeKey(t *testing.T) {
	t.Parallel()
	d := open(t)
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	type result struct {
		taken  bool
		holder string
	}
	first, second := contend(t, d, func(c context.Context, tx store.ClaimTx, claim int) (result, error) {
		taken, holder, err := tx.TakeKey(c, "idem", fmt.Sprintf("run-%d", claim), now, now.Add(time.Hour))
		return result{taken, holder}, err
	})
	require.Equal(t, result{true, "run-1"}, first)
	require.Equal(t, result{false, "run-1"}, second)
}

// Two claims on a singleton key no run holds: the second waits for the first
// (although there is no row to lock yet) and sees the holder it set.
func TestConcurrentSingleton(t *testing.T) {
	t.Parallel()
	d := open(t)
	type holder struct{ runID, workflowID string }
	first, second := contend(t, d, func(c context.Context, tx store.ClaimTx, claim int) (holder, error) {
		runID, workflowID, err := tx.SingletonHolder(c, "single")
		if err != nil || runID != "" {
			return holder{runID, workflowID}, err
		}
		return holder{}, tx.SetSingleton(c, "single", fmt.Sprintf("run-%d", claim), fmt.Sprintf("wf-%d", claim))
	})
	require.Equal(t, holder{}, first)
	require.Equal(t, holder{"run-1", "wf-1"}, second)
}
