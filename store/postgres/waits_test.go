package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-run/herald/internal/testdb"
	"github.com/herald-run/herald/store"
	"github.com/herald-run/herald/store/postgres"
)

func open(t *testing.T) *postgres.Driver {
	t.Helper()
	d, err := postgres.Open(context.Background(), testdb.Schema(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close() })
	require.NoError(t, d.Migrate(context.Background()))
	return d
}

// Two claimers whose events both match one wait: the second claim's
// CandidateWaits waits for the first claim, then no longer sees the wait it
// resolved; the wait is resolved once, by the first.
func TestClaimsWaitForLockedWaits(t *testing.T) {
	t.Parallel()
	d := open(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	w, err := d.RegisterWait(ctx, store.Wait{
		ID: "w1", Kind: store.WaitKindWait, WorkflowID: "app/f/e0", StepID: "paid",
		EventName: "shop/paid", MatchPath: "data.orderId", MatchValue: `"o1"`,
		Since: time.Now().Add(-time.Hour), ExpiresAt: time.Now().Add(time.Hour),
	})
	require.NoError(t, err)
	received := time.Now().Add(-time.Minute)
	for i, id := range []string{"e1", "e2"} {
		_, err := d.InsertEvents(ctx, []store.Event{{
			ID: id, Name: "shop/paid", Data: json.RawMessage(`{"orderId":"o1"}`),
			ReceivedAt: received.Add(time.Duration(i) * time.Millisecond),
		}}, received.Add(-time.Hour))
		require.NoError(t, err)
	}
	key := []store.WaitKey{{EventName: "shop/paid", MatchPath: "data.orderId", MatchValue: `"o1"`}}

	holding, release := make(chan struct{}), make(chan struct{})
	firstDone := make(chan error, 1)
	go func() {
		_, err := d.ClaimEvents(ctx, 1, func(c context.Context, tx store.ClaimTx, events []store.Event) (store.Claim, error) {
			got, err := tx.CandidateWaits(c, []string{"shop/paid"}, key)
			close(holding)
			if err != nil {
				return store.Claim{}, err
			}
			if len(events) != 1 || events[0].ID != "e1" || len(got) != 1 || got[0].ID != w.ID {
				return store.Claim{}, fmt.Errorf("first claim: events %v, candidates %v", events, got)
			}
			select {
			case <-release:
			case <-c.Done(): // the test failed; let go of the locks
				return store.Claim{}, c.Err()
			}
			return store.Claim{
				Dispatched: []string{"e1"},
				Resolved:   []store.WaitResolution{{WaitID: w.ID, EventID: "e1"}},
			}, nil
		})
		firstDone <- err
	}()
	select {
	case <-holding:
	case err := <-firstDone:
		require.FailNow(t, "the first claim ended early", "%v", err)
	}

	second := make(chan error, 1)
	go func() {
		_, err := d.ClaimEvents(ctx, 10, func(c context.Context, tx store.ClaimTx, events []store.Event) (store.Claim, error) {
			if len(events) != 1 || events[0].ID != "e2" {
				return store.Claim{}, fmt.Errorf("second claim: events %v; e1 is locked by the first claim", events)
			}
			got, err := tx.CandidateWaits(c, []string{"shop/paid"}, key)
			if err != nil {
				return store.Claim{}, err
			}
			if len(got) != 0 {
				return store.Claim{}, fmt.Errorf("second claim: the wait the first claim resolved is still a candidate: %v", got)
			}
			// Naming it anyway changes nothing: it is not this claim's candidate.
			return store.Claim{Dispatched: []string{"e2"}, Resolved: []store.WaitResolution{{WaitID: w.ID, EventID: "e2"}}}, nil
		})
		second <- err
	}()
	time.Sleep(200 * time.Millisecond) // let the second claim reach the locked wait

	// A registration's ResolveWait waits for the first claim, then loses.
	outside := make(chan error, 1)
	go func() {
		ok, err := d.ResolveWait(ctx, w.ID, "outside")
		if err == nil && ok {
			err = errors.New("ResolveWait resolved a wait a claim resolved")
		}
		outside <- err
	}()

	close(release)
	require.NoError(t, <-firstDone)
	require.NoError(t, <-second)
	require.NoError(t, <-outside)
	got, err := d.GetWait(ctx, w.WorkflowID, w.Kind, w.StepID)
	require.NoError(t, err)
	require.Equal(t, "e1", got.ResolvedBy)
	require.NotNil(t, got.ResolvedAt)
	pending, err := d.PendingEvents(ctx)
	require.NoError(t, err)
	require.Zero(t, pending)
}

// The candidate lookup uses the partial key index, whatever the table holds.
func TestCandidateWaitsUsesIndex(t *testing.T) {
	t.Parallel()
	d := open(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, postgres.LoadWaitsForBench(ctx, d.Pool(), 20000, "bench/event"))
	keys := make([]store.WaitKey, 100)
	for i := range keys {
		keys[i] = postgres.BenchWaitKey("bench/event", i*97)
	}
	// Custom plans (the first executions of a prepared statement) and the
	// generic plan (later ones) alike.
	for _, generic := range []bool{false, true} {
		plan, err := postgres.ExplainCandidateWaits(ctx, d.Pool(), generic, []string{"bench/event"}, keys)
		require.NoError(t, err)
		require.Contains(t, plan, "Index Scan using waits_pending_key_idx", plan)
		require.NotContains(t, plan, "Seq Scan on waits", plan)
	}
}
