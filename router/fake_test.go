package router

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/stretchr/testify/require"

	"github.com/herald-run/herald/internal/temporalx"
	"github.com/herald-run/herald/internal/wire"
	"github.com/herald-run/herald/registry"
	"github.com/herald-run/herald/store"
	"github.com/herald-run/herald/store/sqlite"
	"github.com/herald-run/herald/triggers"
)

// errTemporalDown is what the fake returns when told to fail.
var errTemporalDown = errors.New("fake temporal: unavailable")

// signalCall is one recorded Temporal.Signal.
type signalCall struct {
	WorkflowID string
	Signal     string
	Arg        any
}

// fakeTemporal implements Temporal. It records every call (failed ones too)
// and behaves like temporalx.Client where it matters: a start of an id that
// was already started is success, and a started, not cancelled workflow is
// running. The fail hooks, when set, decide an error per call.
type fakeTemporal struct {
	mu           sync.Mutex
	starts       []temporalx.Start
	signalStarts []temporalx.SignalStart
	signals      []signalCall
	cancels      []string
	isRunning    []string
	started      map[string]bool // workflow ids with a successful start
	cancelled    map[string]bool

	// Hooks; nil means success. Set them before dispatching.
	failStart       func(s temporalx.Start) error
	failSignalStart func(s temporalx.SignalStart) error
	failSignal      func(workflowID string) error
	failCancel      func(workflowID string) error
	// running overrides IsRunning when set.
	running func(workflowID string) (bool, error)
}

func newFakeTemporal() *fakeTemporal {
	return &fakeTemporal{started: map[string]bool{}, cancelled: map[string]bool{}}
}

var _ Temporal = (*fakeTemporal)(nil)

func (f *fakeTemporal) StartWorkflow(_ context.Context, s temporalx.Start) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.starts = append(f.starts, s)
	if f.failStart != nil {
		if err := f.failStart(s); err != nil {
			return err
		}
	}
	f.started[s.WorkflowID] = true // a second start of the id is "already started": success
	return nil
}

func (f *fakeTemporal) SignalWithStart(_ context.Context, s temporalx.SignalStart) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.signalStarts = append(f.signalStarts, s)
	if f.failSignalStart != nil {
		return f.failSignalStart(s)
	}
	return nil
}

func (f *fakeTemporal) Signal(_ context.Context, workflowID, signal string, arg any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.signals = append(f.signals, signalCall{WorkflowID: workflowID, Signal: signal, Arg: arg})
	if f.failSignal != nil {
		return f.failSignal(workflowID)
	}
	return nil
}

func (f *fakeTemporal) Cancel(_ context.Context, workflowID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cancels = append(f.cancels, workflowID)
	if f.failCancel != nil {
		if err := f.failCancel(workflowID); err != nil {
			return err
		}
	}
	if !f.started[workflowID] || f.cancelled[workflowID] {
		return errors.Join(temporalx.ErrNotFound, errors.New("cancel "+workflowID))
	}
	f.cancelled[workflowID] = true
	return nil
}

func (f *fakeTemporal) IsRunning(_ context.Context, workflowID string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.isRunning = append(f.isRunning, workflowID)
	if f.running != nil {
		return f.running(workflowID)
	}
	return f.started[workflowID] && !f.cancelled[workflowID], nil
}

// Snapshots of the recorded calls, sorted where the router makes them
// concurrently.

func (f *fakeTemporal) Starts() []temporalx.Start {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := slices.Clone(f.starts)
	slices.SortStableFunc(out, func(a, b temporalx.Start) int { return strings.Compare(a.WorkflowID, b.WorkflowID) })
	return out
}

func (f *fakeTemporal) StartIDs() []string {
	var ids []string
	for _, s := range f.Starts() {
		ids = append(ids, s.WorkflowID)
	}
	return ids
}

func (f *fakeTemporal) SignalStarts() []temporalx.SignalStart {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := slices.Clone(f.signalStarts)
	slices.SortStableFunc(out, func(a, b temporalx.SignalStart) int { return strings.Compare(a.WorkflowID, b.WorkflowID) })
	return out
}

func (f *fakeTemporal) Signals() []signalCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := slices.Clone(f.signals)
	slices.SortStableFunc(out, func(a, b signalCall) int { return strings.Compare(a.WorkflowID, b.WorkflowID) })
	return out
}

func (f *fakeTemporal) Cancels() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := slices.Clone(f.cancels)
	slices.Sort(out)
	return out
}

func (f *fakeTemporal) IsRunningCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.isRunning)
}

// The app every test syncs.
const (
	testApp   = "shop"
	testQueue = "shop-queue"
)

// bundle is a dispatcher over a fresh SQLite store and a fake Temporal.
type bundle struct {
	st  *sqlite.Driver
	reg *registry.Registry
	d   *Dispatcher
	tc  *fakeTemporal
}

// setup builds a bundle and syncs fns as the functions of testApp. cfg, if
// given, adjusts the dispatcher's config.
func setup(t *testing.T, fns []wire.FunctionConfig, cfg ...func(*Config)) *bundle {
	t.Helper()
	ctx := t.Context()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "h.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	require.NoError(t, st.Migrate(ctx))
	env, err := triggers.NewEnv()
	require.NoError(t, err)
	reg, err := registry.New(registry.Config{Store: st, Env: env})
	require.NoError(t, err)
	b := &bundle{st: st, reg: reg, tc: newFakeTemporal()}
	if len(fns) > 0 {
		b.sync(t, fns...)
	}
	c := Config{Store: st, Registry: reg, Temporal: b.tc}
	for _, f := range cfg {
		f(&c)
	}
	b.d, err = New(c)
	require.NoError(t, err)
	return b
}

// sync syncs fns as the functions of testApp.
func (b *bundle) sync(t *testing.T, fns ...wire.FunctionConfig) {
	t.Helper()
	_, err := b.reg.Sync(t.Context(), testApp, wire.SyncRequest{TaskQueue: testQueue, Functions: fns})
	require.NoError(t, err)
}

// fn is a function of testApp triggered by the given event patterns.
func fn(id string, events ...string) wire.FunctionConfig {
	c := wire.FunctionConfig{ID: id}
	for _, e := range events {
		c.Triggers = append(c.Triggers, wire.TriggerConfig{Event: e})
	}
	return c
}

// eventOpt adjusts an event before it is stored.
type eventOpt func(*store.Event)

func withTS(ts time.Time) eventOpt { return func(e *store.Event) { e.TS = ts.UnixMilli() } }

func receivedAt(at time.Time) eventOpt {
	return func(e *store.Event) { e.ReceivedAt = at.UTC().Truncate(time.Millisecond) }
}

// send stores one pending event the way ingest does and returns it as the
// router will read it back.
func (b *bundle) send(t *testing.T, name, data string, opts ...eventOpt) store.Event {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Millisecond)
	e := store.Event{
		ID: ulid.Make().String(), Fresh: true, Name: name, Data: json.RawMessage(data),
		TS: now.UnixMilli(), ReceivedAt: now,
	}
	for _, o := range opts {
		o(&e)
	}
	inserted, err := b.st.InsertEvents(t.Context(), []store.Event{e}, now.Add(-time.Hour))
	require.NoError(t, err)
	require.Equal(t, []bool{true}, inserted)
	got, err := b.st.GetEvent(t.Context(), e.ID)
	require.NoError(t, err)
	return got
}

// dispatch runs DispatchOnce and requires it to succeed, returning how many
// events it claimed.
func (b *bundle) dispatch(t *testing.T) int {
	t.Helper()
	n, err := b.d.DispatchOnce(t.Context())
	require.NoError(t, err)
	return n
}

// dispatched reports whether the event is marked dispatched.
func (b *bundle) dispatched(t *testing.T, id string) bool {
	t.Helper()
	e, err := b.st.GetEvent(t.Context(), id)
	require.NoError(t, err)
	return e.Dispatched
}

func (b *bundle) pending(t *testing.T) int64 {
	t.Helper()
	n, err := b.st.PendingEvents(t.Context())
	require.NoError(t, err)
	return n
}

// runs returns the runs the event started, oldest first.
func (b *bundle) runs(t *testing.T, eventID string) []store.Run {
	t.Helper()
	rs, err := b.st.ListRunsByEvent(t.Context(), eventID)
	require.NoError(t, err)
	return rs
}

// runOf returns the one run of function fnID for the event.
func (b *bundle) runOf(t *testing.T, fnID string, e store.Event) store.Run {
	t.Helper()
	r, err := b.st.GetRun(t.Context(), wire.RunID(testApp, fnID, e.ID, e.ReceivedAt))
	require.NoError(t, err, "no run of %s for event %s", fnID, e.ID)
	return r
}

// wfID and runID are the ids the router must use for fnID and e.
func wfID(fnID string, e store.Event) string { return wire.WorkflowID(testApp, fnID, e.ID) }
func runID(fnID string, e store.Event) string {
	return wire.RunID(testApp, fnID, e.ID, e.ReceivedAt)
}

// wireEvent is e as the router hands it to Temporal.
func wireEvent(e store.Event) wire.Event {
	return wire.Event{ID: e.ID, Name: e.Name, Data: e.Data, TS: e.TS, V: e.V}
}

// startsOf returns the recorded starts of workflow id.
func (f *fakeTemporal) startsOf(id string) []temporalx.Start {
	var out []temporalx.Start
	for _, s := range f.Starts() {
		if s.WorkflowID == id {
			out = append(out, s)
		}
	}
	return out
}

// open reports whether the fake considers workflow id running.
func (f *fakeTemporal) open(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.started[id] && !f.cancelled[id]
}
