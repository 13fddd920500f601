package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-run/herald/internal/wire"
	"github.com/herald-run/herald/store"
)

// The waits part of the suite: registration, candidate lookup inside a
// claim, resolution, and clean-up.

// soon is an expiry in the future, at the millisecond precision every driver
// keeps. Expiry is checked against the backend's clock, so it cannot be base.
func soon() time.Time { return time.Now().Add(time.Hour).Truncate(time.Millisecond) }

// waitFor returns a pending wait of workflow wf for its step, awaiting name
// with the indexed equality path == value (both empty: not indexable).
func waitFor(id, wf, step, name, path, value string) store.Wait {
	return store.Wait{
		ID: id, Kind: store.WaitKindWait, AppID: "app", FunctionID: "f", RunID: "run-" + wf, WorkflowID: wf,
		StepID: step, EventName: name, MatchPath: path, MatchValue: value,
		Since: base, ExpiresAt: soon(),
	}
}

func register(t *testing.T, s store.Driver, w store.Wait) store.Wait {
	t.Helper()
	got, err := s.RegisterWait(ctx(t), w)
	require.NoError(t, err)
	return got
}

func getWait(t *testing.T, s store.Driver, w store.Wait) store.Wait {
	t.Helper()
	got, err := s.GetWait(ctx(t), w.WorkflowID, w.Kind, w.StepID)
	require.NoError(t, err)
	return got
}

func requireNoWait(t *testing.T, s store.Driver, w store.Wait) {
	t.Helper()
	_, err := s.GetWait(ctx(t), w.WorkflowID, w.Kind, w.StepID)
	require.ErrorIs(t, err, store.ErrNotFound, "wait %s", w.ID)
}

// requireSameWait compares waits as stored: JSON by value, times by instant.
func requireSameWait(t *testing.T, want, got store.Wait) {
	t.Helper()
	if len(want.TriggerEvent) > 0 || len(got.TriggerEvent) > 0 {
		require.JSONEq(t, string(want.TriggerEvent), string(got.TriggerEvent))
	}
	norm := func(w store.Wait) store.Wait {
		w.TriggerEvent = nil
		w.Since, w.ExpiresAt, w.CreatedAt = w.Since.UTC(), w.ExpiresAt.UTC(), w.CreatedAt.UTC()
		if w.ResolvedAt != nil {
			at := w.ResolvedAt.UTC()
			w.ResolvedAt = &at
		}
		return w
	}
	require.Equal(t, norm(want), norm(got))
}

func waitIDs(waits []store.Wait) []string {
	out := []string{}
	for _, w := range waits {
		out = append(out, w.ID)
	}
	return out
}

// inClaim inserts a pending event named name and claims every pending event,
// calling fn inside the claim. It returns the claim's error.
func inClaim(t *testing.T, s store.Driver, eventID, name string,
	fn func(c context.Context, tx store.ClaimTx, events []store.Event) (store.Claim, error),
) error {
	t.Helper()
	insert(t, s, base.Add(-time.Hour), ev(eventID, name, base))
	n, err := s.ClaimEvents(ctx(t), 100, fn)
	if err == nil {
		require.Positive(t, n)
	}
	return err
}

// candidates runs CandidateWaits in a claim of a new event and returns the
// candidates' ids.
func candidates(t *testing.T, s store.Driver, eventID string, names []string, keys ...store.WaitKey) []string {
	t.Helper()
	var got []store.Wait
	require.NoError(t, inClaim(t, s, eventID, "any/event", func(c context.Context, tx store.ClaimTx, events []store.Event) (store.Claim, error) {
		var err error
		got, err = tx.CandidateWaits(c, names, keys)
		return store.Claim{Dispatched: eventIDs(events)}, err
	}))
	return waitIDs(got)
}

func waitPaths(t *testing.T, s store.Driver, eventID string, names ...string) map[string][]string {
	t.Helper()
	return waitPathsClaiming(t, s, eventID, "any/event", names...)
}

// waitPathsClaiming is waitPaths in the claim of an event named claimed: a
// driver may have read the paths of the claimed names with the claim.
func waitPathsClaiming(t *testing.T, s store.Driver, eventID, claimed string, names ...string) map[string][]string {
	t.Helper()
	var got map[string][]string
	require.NoError(t, inClaim(t, s, eventID, claimed, func(c context.Context, tx store.ClaimTx, events []store.Event) (store.Claim, error) {
		var err error
		got, err = tx.WaitPaths(c, names)
		return store.Claim{Dispatched: eventIDs(events)}, err
	}))
	return got
}

func testRegisterWait(t *testing.T, s store.Driver) {
	w := waitFor("w1", "app/f/e1", "approval", "shop/approved", "data.orderId", `"o_1"`)
	w.Expr = `async.data.total > event.data.total`
	w.TriggerEvent = []byte(`{"id":"e1","name":"shop/order","data":{"orderId":"o_1","total":10},"ts":1,"v":""}`)
	w.Since = base.Add(1500 * time.Millisecond)

	before := time.Now().Add(-time.Second)
	got := register(t, s, w)
	require.False(t, got.CreatedAt.IsZero(), "CreatedAt is filled in")
	require.True(t, got.CreatedAt.After(before), "CreatedAt is now")
	want := w
	want.CreatedAt = got.CreatedAt
	requireSameWait(t, want, got)
	requireSameWait(t, got, getWait(t, s, w))

	// A retried registration returns the stored wait unchanged.
	retry := w
	retry.ID, retry.Expr, retry.ExpiresAt = "w1-retry", "true", soon().Add(time.Hour)
	requireSameWait(t, got, register(t, s, retry))
	requireSameWait(t, got, getWait(t, s, w))

	// The same step of the same run under another kind is another wait.
	cancel := w
	cancel.ID, cancel.Kind, cancel.CreatedAt = "c1", store.WaitKindCancel, base
	requireSameWait(t, cancel, register(t, s, cancel))
	requireSameWait(t, got, getWait(t, s, w))

	// A non-indexable wait without trigger event or expression.
	plain := waitFor("w2", "app/f/e2", "s", "shop/any", "", "")
	plainGot := register(t, s, plain)
	require.Nil(t, plainGot.TriggerEvent)
	require.Empty(t, plainGot.MatchPath)

	// An id already used by another wait is an error, not a retry.
	clash := waitFor("w1", "app/f/other", "s", "shop/any", "", "")
	_, err := s.RegisterWait(ctx(t), clash)
	require.Error(t, err)
	requireNoWait(t, s, clash)

	// Invalid waits are refused and store nothing.
	bad := map[string]func(*store.Wait){
		"no id":            func(w *store.Wait) { w.ID = "" },
		"no kind":          func(w *store.Wait) { w.Kind = "" },
		"unknown kind":     func(w *store.Wait) { w.Kind = "sleep" },
		"no workflow":      func(w *store.Wait) { w.WorkflowID = "" },
		"no step":          func(w *store.Wait) { w.StepID = "" },
		"no event name":    func(w *store.Wait) { w.EventName = "" },
		"no expiry":        func(w *store.Wait) { w.ExpiresAt = time.Time{} },
		"path no value":    func(w *store.Wait) { w.MatchValue = "" },
		"value no path":    func(w *store.Wait) { w.MatchPath = "" },
		"trigger not JSON": func(w *store.Wait) { w.TriggerEvent = []byte(`{"x":`) },
	}
	for name, mutate := range bad {
		b := waitFor("bad-"+name, "app/f/bad", "step "+name, "shop/x", "data.id", `1`)
		mutate(&b)
		_, err := s.RegisterWait(ctx(t), b)
		require.Error(t, err, name)
		if b.WorkflowID != "" && b.StepID != "" {
			_, err := s.GetWait(ctx(t), b.WorkflowID, b.Kind, b.StepID)
			require.ErrorIs(t, err, store.ErrNotFound, name)
		}
	}

	_, err = s.GetWait(ctx(t), "app/f/e1", store.WaitKindWait, "missing")
	require.ErrorIs(t, err, store.ErrNotFound)

	// Concurrent registrations of one step (retried activities racing) all
	// get the one wait that won.
	const racers = 8
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		ids  = map[string]int{}
		errs = make(chan error, racers)
	)
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := s.RegisterWait(context.Background(), waitFor(fmt.Sprintf("race-%d", i), "app/f/race", "s", "shop/x", "data.id", `1`))
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			ids[got.ID]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Len(t, ids, 1, "every racer gets the same wait: %v", ids)
}

func testCandidateWaits(t *testing.T, s store.Driver) {
	const (
		a, b  = "shop/paid", "shop/refunded"
		user  = "data.userId"
		order = "data.orderId"
	)
	w := func(id, name, path, value string) store.Wait { return waitFor(id, "wf-"+id, "s", name, path, value) }
	for _, x := range []store.Wait{
		w("a-u1", a, user, `"u1"`),
		w("a-u1-other-run", a, user, `"u1"`),
		w("a-u2", a, user, `"u2"`),
		w("a-u1-number", a, user, `1`),
		w("a-o1", a, order, `"u1"`),
		w("a-any", a, "", ""),
		w("b-u1", b, user, `"u1"`),
		w("b-any", b, "", ""),
	} {
		register(t, s, x)
	}
	resolved := register(t, s, w("a-u1-resolved", a, user, `"u1"`))
	ok, err := s.ResolveWait(ctx(t), resolved.ID, "earlier")
	require.NoError(t, err)
	require.True(t, ok)
	expired := w("a-u1-expired", a, user, `"u1"`)
	expired.ExpiresAt = time.Now().Add(-time.Minute)
	register(t, s, expired)
	expiredAny := w("a-any-expired", a, "", "")
	expiredAny.ExpiresAt = time.Now().Add(-time.Minute)
	register(t, s, expiredAny)

	// Exact keys only, plus the non-indexable waits of the names given,
	// ordered by id; never resolved or expired ones.
	require.Equal(t, []string{"a-any", "a-u1", "a-u1-other-run"},
		candidates(t, s, "e1", []string{a}, store.WaitKey{EventName: a, MatchPath: user, MatchValue: `"u1"`}))
	require.Equal(t, []string{"a-u1", "a-u1-other-run", "a-u2"},
		candidates(t, s, "e2", nil,
			store.WaitKey{EventName: a, MatchPath: user, MatchValue: `"u1"`},
			store.WaitKey{EventName: a, MatchPath: user, MatchValue: `"u2"`},
			store.WaitKey{EventName: a, MatchPath: user, MatchValue: `"u1"`}, // twice: returned once
			store.WaitKey{EventName: a, MatchPath: user, MatchValue: `"u3"`}))
	require.Equal(t, []string{"a-o1", "b-any", "b-u1"},
		candidates(t, s, "e3", []string{b, "shop/none"},
			store.WaitKey{EventName: b, MatchPath: user, MatchValue: `"u1"`},
			store.WaitKey{EventName: a, MatchPath: order, MatchValue: `"u1"`}))
	require.Equal(t, []string{"a-u1-number"},
		candidates(t, s, "e4", nil, store.WaitKey{EventName: a, MatchPath: user, MatchValue: `1`}))
	require.Empty(t, candidates(t, s, "e5", nil))
	require.Empty(t, candidates(t, s, "e6", []string{"shop/none"}, store.WaitKey{EventName: "shop/none", MatchPath: user, MatchValue: `"u1"`}))

	require.Equal(t, map[string][]string{a: {order, user}, b: {user}}, waitPaths(t, s, "p1", a, b, "shop/none"))
	require.Empty(t, waitPaths(t, s, "p2"))
	// The same answers when the claimed events carry the names asked for.
	require.Equal(t, map[string][]string{a: {order, user}, b: {user}}, waitPathsClaiming(t, s, "p3", a, a, b, "shop/none"))
	require.Equal(t, map[string][]string{b: {user}}, waitPathsClaiming(t, s, "p4", "shop/none", "shop/none", b))
	require.Empty(t, waitPathsClaiming(t, s, "p5", "shop/none", "shop/none"))
}

func testClaimRecordsWaits(t *testing.T, s store.Driver) {
	paid := register(t, s, waitFor("w-paid", "app/f/o1", "payment", "shop/paid", "data.orderId", `"o1"`))
	other := register(t, s, waitFor("w-other", "app/f/o2", "payment", "shop/paid", "data.orderId", `"o2"`))
	cancel := waitFor("c-new", "app/g/e1", "cancel-0", "shop/cancelled", "data.userId", `"u1"`)
	cancel.Kind = store.WaitKindCancel
	retried := waitFor("w-paid-again", paid.WorkflowID, paid.StepID, paid.EventName, paid.MatchPath, paid.MatchValue)

	claim := func(c context.Context, tx store.ClaimTx, events []store.Event) (store.Claim, error) {
		got, err := tx.CandidateWaits(c, nil, []store.WaitKey{{EventName: "shop/paid", MatchPath: "data.orderId", MatchValue: `"o1"`}})
		if err != nil {
			return store.Claim{}, err
		}
		require.Equal(t, []string{paid.ID}, waitIDs(got))
		return store.Claim{
			Runs:       []store.Run{runFor("run-e1", "g", "e1", base)},
			Dispatched: eventIDs(events),
			Waits:      []store.Wait{cancel, retried},
			Resolved: []store.WaitResolution{
				{WaitID: paid.ID, EventID: "e1"},
				{WaitID: paid.ID, EventID: "e1-later"}, // the first resolution of a wait counts
				{WaitID: other.ID, EventID: "e1"},      // not a candidate of this claim: ignored
			},
		}, nil
	}

	// fn fails: nothing of its claim is recorded.
	boom := errors.New("temporal is down")
	err := inClaim(t, s, "e1", "shop/paid", func(c context.Context, tx store.ClaimTx, events []store.Event) (store.Claim, error) {
		cl, err := claim(c, tx, events)
		require.NoError(t, err)
		return cl, boom
	})
	require.ErrorIs(t, err, boom)
	requireNoWait(t, s, cancel)
	require.Nil(t, getWait(t, s, paid).ResolvedAt)
	require.EqualValues(t, 1, pending(t, s))

	// An invalid wait fails the claim; nothing is recorded.
	_, err = s.ClaimEvents(ctx(t), 100, func(c context.Context, tx store.ClaimTx, events []store.Event) (store.Claim, error) {
		cl, err := claim(c, tx, events)
		bad := cancel
		bad.ID, bad.StepID, bad.Kind = "c-bad", "cancel-1", "nope"
		cl.Waits = append(cl.Waits, bad)
		return cl, err
	})
	require.Error(t, err)
	requireNoWait(t, s, cancel)
	require.Nil(t, getWait(t, s, paid).ResolvedAt)
	require.EqualValues(t, 1, pending(t, s))
	_, err = s.GetRun(ctx(t), "run-e1")
	require.ErrorIs(t, err, store.ErrNotFound)

	// fn succeeds: runs, dispatched events, waits and resolutions together.
	before := time.Now().Add(-time.Second)
	n, err := s.ClaimEvents(ctx(t), 100, claim)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Zero(t, pending(t, s))
	_, err = s.GetRun(ctx(t), "run-e1")
	require.NoError(t, err)

	stored := getWait(t, s, cancel)
	want := cancel
	want.CreatedAt = stored.CreatedAt
	requireSameWait(t, want, stored)
	require.True(t, stored.CreatedAt.After(before))

	got := getWait(t, s, paid)
	require.Equal(t, paid.ID, got.ID, "a wait whose step exists is not registered again")
	require.Equal(t, "e1", got.ResolvedBy)
	require.NotNil(t, got.ResolvedAt)
	require.True(t, got.ResolvedAt.After(before))
	require.Nil(t, getWait(t, s, other).ResolvedAt, "only candidates of the claim are resolved")

	require.Equal(t, map[string][]string{"shop/cancelled": {"data.userId"}, "shop/paid": {"data.orderId"}},
		waitPaths(t, s, "e2", "shop/cancelled", "shop/paid"))
}

// A wait is resolved once: by ResolveWait or by a claim, whichever is first.
func testWaitResolvedOnce(t *testing.T, s store.Driver) {
	w := register(t, s, waitFor("w1", "app/f/e1", "s", "shop/paid", "data.id", `1`))
	ok, err := s.ResolveWait(ctx(t), w.ID, "first")
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = s.ResolveWait(ctx(t), w.ID, "second")
	require.NoError(t, err)
	require.False(t, ok)
	got := getWait(t, s, w)
	require.Equal(t, "first", got.ResolvedBy)
	require.NotNil(t, got.ResolvedAt)

	ok, err = s.ResolveWait(ctx(t), "missing", "first")
	require.NoError(t, err)
	require.False(t, ok)

	expired := waitFor("w-expired", "app/f/e2", "s", "shop/paid", "data.id", `1`)
	expired.ExpiresAt = time.Now().Add(-time.Second)
	register(t, s, expired)
	ok, err = s.ResolveWait(ctx(t), expired.ID, "late")
	require.NoError(t, err)
	require.False(t, ok, "an expired wait is not resolved")
	require.Nil(t, getWait(t, s, expired).ResolvedAt)

	// A claim naming the resolved wait changes nothing: it is no candidate,
	// and a resolved wait keeps its first resolution anyway.
	err = inClaim(t, s, "e9", "shop/paid", func(c context.Context, tx store.ClaimTx, events []store.Event) (store.Claim, error) {
		got, err := tx.CandidateWaits(c, []string{"shop/paid"}, []store.WaitKey{{EventName: "shop/paid", MatchPath: "data.id", MatchValue: `1`}})
		require.Empty(t, got)
		return store.Claim{Dispatched: eventIDs(events), Resolved: []store.WaitResolution{{WaitID: w.ID, EventID: "e9"}}}, err
	})
	require.NoError(t, err)
	got2 := getWait(t, s, w)
	require.Equal(t, "first", got2.ResolvedBy)
	require.True(t, got.ResolvedAt.Equal(*got2.ResolvedAt))

	// Resolved by a claim, then ResolveWait: the claim's stays.
	v := register(t, s, waitFor("v1", "app/f/e3", "s", "shop/paid", "data.id", `2`))
	err = inClaim(t, s, "e10", "shop/paid", func(c context.Context, tx store.ClaimTx, events []store.Event) (store.Claim, error) {
		got, err := tx.CandidateWaits(c, nil, []store.WaitKey{{EventName: "shop/paid", MatchPath: "data.id", MatchValue: `2`}})
		require.Equal(t, []string{v.ID}, waitIDs(got))
		return store.Claim{Dispatched: eventIDs(events), Resolved: []store.WaitResolution{{WaitID: v.ID, EventID: "e10"}}}, err
	})
	require.NoError(t, err)
	ok, err = s.ResolveWait(ctx(t), v.ID, "other")
	require.NoError(t, err)
	require.False(t, ok)
	require.Equal(t, "e10", getWait(t, s, v).ResolvedBy)

	// ResolveWait racing a claim that holds the wait as a candidate: exactly
	// one of them resolves it. (On Postgres ResolveWait waits for the claim's
	// lock and then finds the wait resolved; on SQLite it goes first and the
	// claim's resolution finds the wait resolved.)
	x := register(t, s, waitFor("x1", "app/f/e5", "s", "shop/paid", "data.id", `4`))
	outside := make(chan error, 1)
	var outsideWon bool
	err = inClaim(t, s, "e12", "shop/paid", func(c context.Context, tx store.ClaimTx, events []store.Event) (store.Claim, error) {
		got, err := tx.CandidateWaits(c, nil, []store.WaitKey{{EventName: "shop/paid", MatchPath: "data.id", MatchValue: `4`}})
		require.Equal(t, []string{x.ID}, waitIDs(got))
		go func() {
			ok, err := s.ResolveWait(context.Background(), x.ID, "outside")
			outsideWon = ok
			outside <- err
		}()
		select {
		case err := <-outside:
			outside <- err // ResolveWait did not block: it ran first
		case <-time.After(200 * time.Millisecond): // it waits for this claim
		}
		return store.Claim{Dispatched: eventIDs(events), Resolved: []store.WaitResolution{{WaitID: x.ID, EventID: "e12"}}}, err
	})
	require.NoError(t, err)
	require.NoError(t, <-outside)
	if outsideWon {
		require.Equal(t, "outside", getWait(t, s, x).ResolvedBy)
	} else {
		require.Equal(t, "e12", getWait(t, s, x).ResolvedBy)
	}

	// A resolution without an event fails the claim.
	u := register(t, s, waitFor("u1", "app/f/e4", "s", "shop/paid", "data.id", `3`))
	err = inClaim(t, s, "e11", "shop/paid", func(c context.Context, tx store.ClaimTx, events []store.Event) (store.Claim, error) {
		_, err := tx.CandidateWaits(c, nil, []store.WaitKey{{EventName: "shop/paid", MatchPath: "data.id", MatchValue: `3`}})
		return store.Claim{Dispatched: eventIDs(events), Resolved: []store.WaitResolution{{WaitID: u.ID}}}, err
	})
	require.Error(t, err)
	require.Nil(t, getWait(t, s, u).ResolvedAt)
}

func testEventsSince(t *testing.T, s store.Driver) {
	for i, name := range []string{"s/x", "s/x", "s/other", "s/x", "s/x"} {
		insert(t, s, base.Add(-time.Hour), ev(fmt.Sprintf("s%d", i), name, base.Add(time.Duration(i)*time.Second)))
	}
	since := func(from time.Duration, limit int) []string {
		t.Helper()
		events, err := s.EventsSince(ctx(t), "s/x", base.Add(from), store.WaitKey{}, limit)
		require.NoError(t, err)
		return eventIDs(events)
	}
	require.Equal(t, []string{"s1", "s3", "s4"}, since(time.Second, 10), "at or after since, oldest first, that name only")
	require.Equal(t, []string{"s0", "s1"}, since(-time.Hour, 2))
	require.Equal(t, []string{"s4"}, since(3500*time.Millisecond, 10))
	require.Empty(t, since(5*time.Second, 10))

	e, err := s.EventsSince(ctx(t), "s/x", base, store.WaitKey{}, 1)
	require.NoError(t, err)
	require.Len(t, e, 1)
	require.JSONEq(t, `{"id":"s0","n":1}`, string(e[0].Data))
	require.True(t, base.Equal(e[0].ReceivedAt))

	_, err = s.EventsSince(ctx(t), "s/x", base, store.WaitKey{}, 0)
	require.Error(t, err)
}

func testDeleteRunWaits(t *testing.T, s store.Driver) {
	w1 := register(t, s, waitFor("w1", "wf1", "a", "x/y", "data.id", `1`))
	c1 := waitFor("c1", "wf1", "cancel-0", "x/cancel", "", "")
	c1.Kind = store.WaitKindCancel
	register(t, s, c1)
	w2 := register(t, s, waitFor("w2", "wf2", "a", "x/y", "data.id", `1`))

	require.NoError(t, s.DeleteRunWaits(ctx(t), "wf1"))
	requireNoWait(t, s, w1)
	requireNoWait(t, s, c1)
	getWait(t, s, w2)
	require.NoError(t, s.DeleteRunWaits(ctx(t), "wf-none"))

	// The step can wait again (a new run under the same workflow id).
	register(t, s, waitFor("w1-new", "wf1", "a", "x/y", "data.id", `1`))
}

// A run that finishes leaves no waits behind.
func testFinishRunDeletesWaits(t *testing.T, s store.Driver) {
	cancel := waitFor("c1", "app/f/e1", "cancel-0", "shop/cancelled", "data.id", `1`)
	cancel.Kind = store.WaitKindCancel
	require.NoError(t, inClaim(t, s, "e1", "shop/order", func(_ context.Context, _ store.ClaimTx, events []store.Event) (store.Claim, error) {
		return store.Claim{Runs: []store.Run{runFor("run-e1", "f", "e1", base)}, Dispatched: eventIDs(events), Waits: []store.Wait{cancel}}, nil
	}))
	w := register(t, s, waitFor("w1", "app/f/e1", "approval", "shop/approved", "", ""))
	other := register(t, s, waitFor("w2", "app/f/e2", "approval", "shop/approved", "", ""))
	getWait(t, s, cancel)

	require.NoError(t, s.FinishRun(ctx(t), finished("run-e1", wire.RunCompleted, "", base.Add(time.Minute)), nil))
	requireNoWait(t, s, cancel)
	requireNoWait(t, s, w)
	getWait(t, s, other)

	// Even a repeated report of a finished run removes waits left behind.
	late := register(t, s, waitFor("w3", "app/f/e1", "late", "shop/approved", "", ""))
	require.NoError(t, s.FinishRun(ctx(t), finished("run-e1", wire.RunFailed, "", base.Add(time.Minute)), nil))
	requireNoWait(t, s, late)

	// A run Herald has no row for (a cron run) too.
	cron := register(t, s, waitFor("w4", "cron-wf", "s", "shop/approved", "", ""))
	cr := finished("cron-run", wire.RunCompleted, "", base.Add(time.Minute))
	cr.EventID, cr.WorkflowID = "", "cron-wf"
	require.NoError(t, s.FinishRun(ctx(t), cr, nil))
	requireNoWait(t, s, cron)
	getWait(t, s, other)
}

func testPurgeWaits(t *testing.T, s store.Driver) {
	live := register(t, s, waitFor("live", "wf1", "s", "p/x", "data.a", `1`))
	expired := waitFor("expired", "wf2", "s", "p/x", "data.b", `1`)
	expired.ExpiresAt = time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	register(t, s, expired)
	done := register(t, s, waitFor("done", "wf3", "s", "p/y", "data.c", `1`))
	ok, err := s.ResolveWait(ctx(t), done.ID, "e1")
	require.NoError(t, err)
	require.True(t, ok)

	n, err := s.PurgeWaits(ctx(t), time.Now().Add(-time.Hour))
	require.NoError(t, err)
	require.Zero(t, n, "nothing expired or was resolved an hour ago")
	getWait(t, s, expired)
	getWait(t, s, done)

	n, err = s.PurgeWaits(ctx(t), time.Now().Add(5*time.Second))
	require.NoError(t, err)
	require.EqualValues(t, 2, n)
	requireNoWait(t, s, expired)
	requireNoWait(t, s, done)
	requireSameWait(t, live, getWait(t, s, live))

	// The paths of pending waits stay (others may go).
	paths := waitPaths(t, s, "e2", "p/x", "p/y")
	require.Contains(t, paths["p/x"], "data.a")

	n, err = s.PurgeWaits(ctx(t), time.Now().Add(5*time.Second))
	require.NoError(t, err)
	require.Zero(t, n)

	// A path whose waits were purged comes back with a new wait.
	register(t, s, waitFor("again", "wf4", "s", "p/y", "data.c", `2`))
	require.Contains(t, waitPaths(t, s, "e3", "p/y")["p/y"], "data.c")
}

func testWaitStats(t *testing.T, s store.Driver) {
	stats := func() (int64, int64) {
		t.Helper()
		p, u, err := s.WaitStats(ctx(t))
		require.NoError(t, err)
		return p, u
	}
	p, u := stats()
	require.Zero(t, p)
	require.Zero(t, u)

	register(t, s, waitFor("k1", "wf1", "s", "x/y", "data.id", `1`))
	register(t, s, waitFor("k2", "wf2", "s", "x/y", "data.id", `2`))
	register(t, s, waitFor("any1", "wf3", "s", "x/y", "", ""))
	expired := waitFor("any2", "wf4", "s", "x/y", "", "")
	expired.ExpiresAt = time.Now().Add(-time.Minute)
	register(t, s, expired)
	done := register(t, s, waitFor("k3", "wf5", "s", "x/y", "data.id", `3`))
	ok, err := s.ResolveWait(ctx(t), done.ID, "e1")
	require.NoError(t, err)
	require.True(t, ok)

	p, u = stats()
	require.EqualValues(t, 3, p, "pending: unresolved and unexpired")
	require.EqualValues(t, 1, u)
}

// The data-path filter of EventsSince may drop events whose value differs,
// but never one whose value is equal, however it is written.
func testEventsSinceMatch(t *testing.T, s store.Driver) {
	evs := []store.Event{
		ev("m1", "m/x", base), ev("m2", "m/x", base.Add(time.Second)), ev("m3", "m/x", base.Add(2*time.Second)),
		ev("m4", "m/x", base.Add(3*time.Second)), ev("m5", "m/x", base.Add(4*time.Second)),
	}
	evs[0].Data = json.RawMessage(`{"user":{"id":"u1"},"n":12}`)
	evs[1].Data = json.RawMessage(`{"user":{"id":"u2"},"n":12.0}`)
	evs[2].Data = json.RawMessage(`{"user":{"id":"\u0075\u0031"},"n":13}`)
	evs[3].Data = json.RawMessage(`{"other":true}`)
	evs[4].Data = json.RawMessage(`{"user":{"id":"u1"},"n":1.2e1}`)
	insert(t, s, base.Add(-time.Hour), evs...)
	ids := func(key store.WaitKey) []string {
		got, err := s.EventsSince(ctx(t), "m/x", base, key, 100)
		require.NoError(t, err)
		var out []string
		for _, e := range got {
			out = append(out, e.ID)
		}
		return out
	}
	u1 := ids(store.WaitKey{MatchPath: "data.user.id", MatchValue: `"u1"`})
	require.Subset(t, u1, []string{"m1", "m3", "m5"})
	require.NotContains(t, u1, "m2", "a different value is filtered out")
	twelve := ids(store.WaitKey{MatchPath: "data.n", MatchValue: `12`})
	require.Subset(t, twelve, []string{"m1", "m2", "m5"})
	require.NotContains(t, twelve, "m3")
	require.Len(t, ids(store.WaitKey{}), 5, "no key: every event of the name")
}

func testActiveRunsAndCancellations(t *testing.T, s store.Driver) {
	var runs []store.Run
	for i := range 5 {
		status := wire.RunRunning
		if i == 3 {
			status = wire.RunCompleted
		}
		runs = append(runs, store.Run{ID: fmt.Sprintf("r%d", i), AppID: "a", FunctionID: "f", EventID: fmt.Sprintf("e%d", i),
			WorkflowID: fmt.Sprintf("a/f/e%d", i), Status: status, StartedAt: base.Add(time.Duration(i) * time.Minute)})
	}
	runs = append(runs, store.Run{ID: "other", AppID: "a", FunctionID: "g", EventID: "e9", WorkflowID: "a/g/e9", Status: wire.RunRunning, StartedAt: base})
	events := make([]store.Event, 6)
	for i := range events {
		events[i] = ev(fmt.Sprintf("e%d", i), "c/x", base)
	}
	events[5] = ev("e9", "c/x", base)
	insert(t, s, base.Add(-time.Hour), events...)
	_, err := s.ClaimEvents(ctx(t), 10, func(context.Context, store.ClaimTx, []store.Event) (store.Claim, error) {
		return store.Claim{Runs: runs}, nil
	})
	require.NoError(t, err)

	page := func(after, before time.Time, afterID string, limit int) []string {
		got, err := s.ListActiveRuns(ctx(t), "a", "f", after, before, afterID, limit)
		require.NoError(t, err)
		var ids []string
		for _, r := range got {
			ids = append(ids, r.ID)
		}
		return ids
	}
	require.Equal(t, []string{"r0", "r1", "r2", "r4"}, page(time.Time{}, time.Time{}, "", 10), "active runs of f only")
	require.Equal(t, []string{"r0", "r1"}, page(time.Time{}, time.Time{}, "", 2))
	require.Equal(t, []string{"r2", "r4"}, page(time.Time{}, time.Time{}, "r1", 10))
	require.Equal(t, []string{"r2"}, page(base.Add(90*time.Second), base.Add(3*time.Minute), "", 10))

	c := store.Cancellation{ID: "c1", AppID: "a", FunctionID: "f", StartedAfter: base, Expr: `event.data.n == 1`,
		Status: "Running", CreatedAt: base, UpdatedAt: base}
	require.NoError(t, s.SaveCancellation(ctx(t), c))
	c.Status, c.Matched, c.Cancelled, c.UpdatedAt = "Completed", 4, 3, base.Add(time.Second)
	require.NoError(t, s.SaveCancellation(ctx(t), c))
	got, err := s.GetCancellation(ctx(t), "c1")
	require.NoError(t, err)
	require.Equal(t, "Completed", got.Status)
	require.Equal(t, int64(4), got.Matched)
	require.Equal(t, int64(3), got.Cancelled)
	require.True(t, got.StartedAfter.Equal(base))
	require.True(t, got.StartedBefore.IsZero())
	require.Equal(t, c.Expr, got.Expr)
	_, err = s.GetCancellation(ctx(t), "nope")
	require.ErrorIs(t, err, store.ErrNotFound)
}
