// Package storetest is the conformance suite every store.Driver passes. A driver's
// test calls Run with a function that opens a fresh, migrated, empty store.
package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-run/herald/store"
)

// Opener returns a fresh, migrated, empty store for one test. It registers its
// own cleanup.
type Opener func(t *testing.T) store.Driver

// Run runs the whole conformance suite against the driver that open returns.
func Run(t *testing.T, open Opener) {
	tests := map[string]func(t *testing.T, s store.Driver){
		"MigrateIsIdempotent":        testMigrateIsIdempotent,
		"InsertAndGet":               testInsertAndGet,
		"GetMissing":                 testGetMissing,
		"DuplicateWithinWindow":      testDuplicateWithinWindow,
		"DuplicateInOneCall":         testDuplicateInOneCall,
		"DuplicateAfterWindow":       testDuplicateAfterWindow,
		"AllOrNothing":               testAllOrNothing,
		"InvalidEventRejected":       testInvalidEventRejected,
		"ListNewestFirstAndCursor":   testListNewestFirstAndCursor,
		"ListFilters":                testListFilters,
		"ListLimitAndInvalidCursor":  testListLimitAndInvalidCursor,
		"ConcurrentInserts":          testConcurrentInserts,
		"LargeBatch":                 testLargeBatch,
		"FreshAndKeyedInOneCall":     testFreshAndKeyedInOneCall,
		"TraceRoundTrips":            testTraceRoundTrips,
		"SyncApp":                    testSyncApp,
		"SyncAppUpdatesApp":          testSyncAppUpdatesApp,
		"SyncAppsIsolated":           testSyncAppsIsolated,
		"ClaimOldestFirst":           testClaimOldestFirst,
		"ClaimEmpty":                 testClaimEmpty,
		"ClaimFnError":               testClaimFnError,
		"ClaimPartial":               testClaimPartial,
		"ClaimDuplicateRun":          testClaimDuplicateRun,
		"RedispatchAfterRearm":       testRedispatchAfterRearm,
		"ConcurrentClaims":           testConcurrentClaims,
		"GetAndListRuns":             testGetAndListRuns,
		"FinishRun":                  testFinishRun,
		"FinishUnknownRun":           testFinishUnknownRun,
		"ConcurrentFinish":           testConcurrentFinish,
		"FinishRunInvalidOutput":     testFinishRunInvalidOutput,
		"RegisterWait":               testRegisterWait,
		"CandidateWaits":             testCandidateWaits,
		"ClaimRecordsWaits":          testClaimRecordsWaits,
		"WaitResolvedOnce":           testWaitResolvedOnce,
		"EventsSince":                testEventsSince,
		"EventsSinceMatch":           testEventsSinceMatch,
		"ActiveRunsAndCancellations": testActiveRunsAndCancellations,
		"DeleteRunWaits":             testDeleteRunWaits,
		"FinishRunDeletesWaits":      testFinishRunDeletesWaits,
		"PurgeWaits":                 testPurgeWaits,
		"WaitStats":                  testWaitStats,
		"LimitRateLimit":             testLimitRateLimit,
		"LimitThrottle":              testLimitThrottle,
		"LimitPersistsAndRollsBack":  testLimitPersistsAndRollsBack,
		"LimitRelease":               testLimitRelease,
		"TakeKey":                    testTakeKey,
		"Singletons":                 testSingletons,
		"RecordRun":                  testRecordRun,
		"PurgeFlowState":             testPurgeFlowState,
		"WebhooksCRUD":               testWebhooksCRUD,
		"WebhookInvalidVerify":       testWebhookInvalidVerify,
		"Purge":                      testPurge,
		"PurgeBatches":               testPurgeBatches,
		"ConcurrentPurge":            testConcurrentPurge,
		"JobLease":                   testJobLease,
		"JobTakeOrder":               testJobTakeOrder,
		"JobConcurrentTakeOver":      testJobConcurrentTakeOver,
		"PauseSurvivesSync":          testPauseSurvivesSync,
		"ListRunsFiltersAndPages":    testListRunsFiltersAndPages,
		"ReplayRunsAndReopen":        testReplayRunsAndReopen,
		"ListWaitsPending":           testListWaitsPending,
		"ReplayJobLease":             testReplayJobLease,
		"FlowTx":                     testFlowTx,
	}
	for name, fn := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fn(t, open(t))
		})
	}
}

var base = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func ev(id, name string, received time.Time) store.Event {
	return store.Event{
		ID: id, Name: name,
		Data:       json.RawMessage(fmt.Sprintf(`{"id":%q,"n":1}`, id)),
		TS:         received.UnixMilli(),
		ReceivedAt: received,
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func insert(t *testing.T, s store.Driver, dedupeSince time.Time, events ...store.Event) []bool {
	t.Helper()
	got, err := s.InsertEvents(ctx(t), events, dedupeSince)
	require.NoError(t, err)
	require.Len(t, got, len(events))
	return got
}

func testMigrateIsIdempotent(t *testing.T, s store.Driver) {
	require.NoError(t, s.Migrate(ctx(t)))
	require.NoError(t, s.Migrate(ctx(t)))
	insert(t, s, base.Add(-24*time.Hour), ev("a", "x/y", base))
}

func testInsertAndGet(t *testing.T, s store.Driver) {
	e := store.Event{
		ID:         "01J0000000000000000000000A",
		Name:       "demo/user.signup",
		Data:       json.RawMessage(`{"email":"a@example.com","plan":"pro","nested":{"list":[1,2.5,"x",null,true]},"unicode":"żółw ✓"}`),
		TS:         1714564800123,
		V:          "2024-01-01.1",
		ReceivedAt: base.Add(123 * time.Millisecond),
	}
	require.Equal(t, []bool{true}, insert(t, s, base.Add(-24*time.Hour), e))

	got, err := s.GetEvent(ctx(t), e.ID)
	require.NoError(t, err)
	require.Equal(t, e.ID, got.ID)
	require.Equal(t, e.Name, got.Name)
	require.JSONEq(t, string(e.Data), string(got.Data))
	require.Equal(t, e.TS, got.TS)
	require.Equal(t, e.V, got.V)
	require.True(t, e.ReceivedAt.Equal(got.ReceivedAt), "received_at %v != %v", got.ReceivedAt, e.ReceivedAt)
	require.False(t, got.Dispatched, "a new event is pending")
}

func testGetMissing(t *testing.T, s store.Driver) {
	_, err := s.GetEvent(ctx(t), "nope")
	require.ErrorIs(t, err, store.ErrNotFound)
}

func testDuplicateWithinWindow(t *testing.T, s store.Driver) {
	first := ev("dup", "a/b", base)
	require.Equal(t, []bool{true}, insert(t, s, base.Add(-24*time.Hour), first))

	again := ev("dup", "a/changed", base.Add(time.Hour))
	again.Data = json.RawMessage(`{"changed":true}`)
	require.Equal(t, []bool{false, true}, insert(t, s, base.Add(-23*time.Hour), again, ev("new", "a/b", base.Add(time.Hour))))

	got, err := s.GetEvent(ctx(t), "dup")
	require.NoError(t, err)
	require.Equal(t, "a/b", got.Name, "a duplicate must not overwrite the accepted event")
	require.JSONEq(t, string(first.Data), string(got.Data))
}

func testDuplicateInOneCall(t *testing.T, s store.Driver) {
	a := ev("same", "first/one", base)
	b := ev("same", "second/one", base)
	require.Equal(t, []bool{true, false, true}, insert(t, s, base.Add(-24*time.Hour), a, b, ev("other", "x/y", base)))
	got, err := s.GetEvent(ctx(t), "same")
	require.NoError(t, err)
	require.Equal(t, "first/one", got.Name)
}

func testDuplicateAfterWindow(t *testing.T, s store.Driver) {
	insert(t, s, base.Add(-24*time.Hour), ev("old", "v/1", base))
	later := base.Add(25 * time.Hour)
	again := ev("old", "v/2", later)
	require.Equal(t, []bool{true}, insert(t, s, later.Add(-24*time.Hour), again),
		"an id last accepted before the dedupe window is accepted anew")
	got, err := s.GetEvent(ctx(t), "old")
	require.NoError(t, err)
	require.Equal(t, "v/2", got.Name)
	require.True(t, later.Equal(got.ReceivedAt))
	require.False(t, got.Dispatched)
}

// A backend may refuse a value Herald let through (Postgres jsonb cannot hold
// \u0000). Then nothing of the call is stored and the error says it was the data.
func testAllOrNothing(t *testing.T, s store.Driver) {
	good := ev("good", "a/b", base)
	odd := ev("odd", "a/b", base)
	odd.Data = json.RawMessage(`{"s":"nul \u0000 inside"}`)
	_, err := s.InsertEvents(ctx(t), []store.Event{good, odd}, base.Add(-24*time.Hour))
	if err != nil {
		require.ErrorIs(t, err, store.ErrInvalidData)
		_, err := s.GetEvent(ctx(t), "good")
		require.ErrorIs(t, err, store.ErrNotFound, "a failed call must store nothing")
		return
	}
	for _, id := range []string{"good", "odd"} {
		_, err := s.GetEvent(ctx(t), id)
		require.NoError(t, err)
	}
}

func testInvalidEventRejected(t *testing.T, s store.Driver) {
	bad := ev("bad", "", base)
	_, err := s.InsertEvents(ctx(t), []store.Event{ev("fine", "a/b", base), bad}, base.Add(-time.Hour))
	require.Error(t, err)
	_, err = s.GetEvent(ctx(t), "fine")
	require.ErrorIs(t, err, store.ErrNotFound)
}

func listAll(t *testing.T, s store.Driver, f store.EventFilter) []string {
	t.Helper()
	var ids []string
	for pages := 0; ; pages++ {
		require.Less(t, pages, 1000, "cursor does not terminate")
		events, next, err := s.ListEvents(ctx(t), f)
		require.NoError(t, err)
		for _, e := range events {
			ids = append(ids, e.ID)
		}
		if next == "" {
			return ids
		}
		require.Len(t, events, f.EffectiveLimit(), "only the last page may be short")
		f.Cursor = next
	}
}

func testListNewestFirstAndCursor(t *testing.T, s store.Driver) {
	var want []string
	for i := range 25 {
		id := fmt.Sprintf("e%02d", i)
		insert(t, s, base.Add(-24*time.Hour), ev(id, "list/x", base.Add(time.Duration(i)*time.Second)))
		want = append([]string{id}, want...)
	}
	require.Equal(t, want, listAll(t, s, store.EventFilter{Limit: 7}))
	require.Equal(t, want, listAll(t, s, store.EventFilter{}))

	page, next, err := s.ListEvents(ctx(t), store.EventFilter{Limit: 25})
	require.NoError(t, err)
	require.Len(t, page, 25)
	require.Empty(t, next, "no cursor when the page holds the rest")
}

func testListFilters(t *testing.T, s store.Driver) {
	for i := range 10 {
		name := "f/even"
		if i%2 == 1 {
			name = "f/odd"
		}
		insert(t, s, base.Add(-24*time.Hour), ev(fmt.Sprintf("f%d", i), name, base.Add(time.Duration(i)*time.Minute)))
	}
	require.Equal(t, []string{"f9", "f7", "f5", "f3", "f1"}, listAll(t, s, store.EventFilter{Name: "f/odd", Limit: 2}))
	require.Equal(t, []string{"f6", "f5", "f4"}, listAll(t, s, store.EventFilter{
		ReceivedAfter:  base.Add(3 * time.Minute),
		ReceivedBefore: base.Add(7 * time.Minute),
	}))
	require.Equal(t, []string{"f6", "f4"}, listAll(t, s, store.EventFilter{
		Name:           "f/even",
		ReceivedAfter:  base.Add(3 * time.Minute),
		ReceivedBefore: base.Add(7 * time.Minute),
		Limit:          1,
	}))
	require.Empty(t, listAll(t, s, store.EventFilter{Name: "f/none"}))
}

func testListLimitAndInvalidCursor(t *testing.T, s store.Driver) {
	events := make([]store.Event, 0, 150)
	for i := range 150 {
		events = append(events, ev(fmt.Sprintf("l%03d", i), "l/x", base))
	}
	insert(t, s, base.Add(-time.Hour), events...)
	page, next, err := s.ListEvents(ctx(t), store.EventFilter{Limit: 1000})
	require.NoError(t, err)
	require.Len(t, page, store.MaxListLimit)
	require.NotEmpty(t, next)

	for _, bad := range []string{"garbage!", "czEyMw==", store.EncodeCursor(5)[:2]} {
		_, _, err := s.ListEvents(ctx(t), store.EventFilter{Cursor: bad})
		require.ErrorIs(t, err, store.ErrInvalidCursor, "cursor %q", bad)
	}
}

func testConcurrentInserts(t *testing.T, s store.Driver) {
	const writers, each = 8, 50
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				// Every writer also sends one id that all writers share.
				batch := []store.Event{ev(fmt.Sprintf("w%d-%d", w, i), "c/x", base), ev(fmt.Sprintf("shared-%d", i), "c/x", base)}
				if _, err := s.InsertEvents(context.Background(), batch, base.Add(-time.Hour)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	ids := listAll(t, s, store.EventFilter{Limit: 100})
	require.Len(t, ids, writers*each+each)
}

func testLargeBatch(t *testing.T, s store.Driver) {
	events := make([]store.Event, 5000)
	for i := range events {
		events[i] = ev(fmt.Sprintf("big%05d", i), "big/x", base)
	}
	got := insert(t, s, base.Add(-time.Hour), events...)
	for i, ok := range got {
		if !ok {
			require.FailNow(t, "event not inserted", "index %d", i)
		}
	}
	e, err := s.GetEvent(ctx(t), "big04999")
	require.NoError(t, err)
	require.Equal(t, "big/x", e.Name)
}

// Fresh events (ids Herald just generated) may take a faster path; mixed with
// client-keyed events in one call, both kinds are stored and deduplication of
// the keyed ones still holds.
func testFreshAndKeyedInOneCall(t *testing.T, s store.Driver) {
	insert(t, s, base.Add(-time.Hour), ev("known", "k/x", base))
	fresh := func(id string) store.Event { e := ev(id, "f/x", base); e.Fresh = true; return e }
	got := insert(t, s, base.Add(-time.Hour),
		fresh("01FRESH0000000000000000001"), ev("known", "k/changed", base), ev("keyed-new", "k/x", base), fresh("01FRESH0000000000000000002"))
	require.Equal(t, []bool{true, false, true, true}, got)
	for _, id := range []string{"01FRESH0000000000000000001", "01FRESH0000000000000000002", "keyed-new"} {
		_, err := s.GetEvent(ctx(t), id)
		require.NoError(t, err, id)
	}
	known, err := s.GetEvent(ctx(t), "known")
	require.NoError(t, err)
	require.Equal(t, "k/x", known.Name)

	// Only fresh events, in bulk.
	batch := make([]store.Event, 300)
	for i := range batch {
		batch[i] = fresh(fmt.Sprintf("01FRESHBULK%015d", i))
	}
	for i, ok := range insert(t, s, base.Add(-time.Hour), batch...) {
		require.True(t, ok, "fresh event %d", i)
	}
	require.Len(t, listAll(t, s, store.EventFilter{Name: "f/x", Limit: 100}), 302)

	// A refused value in a mixed call stores nothing of it.
	bad := ev("keyed-bad", "k/x", base)
	bad.Data = json.RawMessage(`{"s":"\u0000"}`)
	_, err = s.InsertEvents(ctx(t), []store.Event{fresh("01FRESH0000000000000000003"), bad}, base.Add(-time.Hour))
	if err != nil {
		require.ErrorIs(t, err, store.ErrInvalidData)
		_, err := s.GetEvent(ctx(t), "01FRESH0000000000000000003")
		require.ErrorIs(t, err, store.ErrNotFound, "a failed call must store nothing")
	}
}

// An event's traceparent is stored on every insert path (single fresh, bulk
// fresh, client-keyed) and read back by GetEvent and by a claim.
func testTraceRoundTrips(t *testing.T, s store.Driver) {
	const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	traced := func(id string, fresh bool) store.Event {
		e := ev(id, "t/x", base)
		e.Fresh, e.Trace = fresh, tp
		return e
	}
	insert(t, s, base.Add(-time.Hour), traced("01TRACEFRESH00000000000001", true), traced("keyed-traced", false), ev("untraced", "t/x", base))
	bulk := make([]store.Event, 250)
	for i := range bulk {
		bulk[i] = traced(fmt.Sprintf("01TRACEBULK%015d", i), true)
	}
	insert(t, s, base.Add(-time.Hour), bulk...)
	for _, id := range []string{"01TRACEFRESH00000000000001", "keyed-traced", "01TRACEBULK000000000000249"} {
		e, err := s.GetEvent(ctx(t), id)
		require.NoError(t, err)
		require.Equal(t, tp, e.Trace, id)
	}
	e, err := s.GetEvent(ctx(t), "untraced")
	require.NoError(t, err)
	require.Empty(t, e.Trace)
	claimed := map[string]string{}
	_, err = s.ClaimEvents(ctx(t), 1000, func(_ context.Context, _ store.ClaimTx, events []store.Event) (store.Claim, error) {
		for _, e := range events {
			claimed[e.ID] = e.Trace
		}
		return store.Claim{}, nil
	})
	require.NoError(t, err)
	require.Len(t, claimed, 253)
	require.Equal(t, tp, claimed["keyed-traced"])
	require.Equal(t, "", claimed["untraced"])
}
