// Package store owns Herald's durable state: the events outbox, apps and
// functions, runs, waits, flow-control state, cancellation jobs and webhook
// sources. It defines the Driver interface that every storage
// backend implements; the drivers live in the postgres and sqlite subpackages and
// all of them pass the conformance suite in storetest.
package store

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// ErrNotFound is returned when a requested record does not exist.
var ErrNotFound = errors.New("store: not found")

// ErrInvalidData is returned when the backend refuses a value that passed
// Herald's validation (for example a JSON string Postgres cannot store). The
// caller's input is at fault, not the backend.
var ErrInvalidData = errors.New("store: invalid data")

// ErrInvalidCursor is returned by list operations given a cursor they did not issue.
var ErrInvalidCursor = errors.New("store: invalid cursor")

// Event is one stored event. The table of events is Herald's outbox: an event is
// pending until the router marks it dispatched.
type Event struct {
	// ID is the event's unique id: the client's deduplication key, or a ULID
	// assigned at ingest.
	ID string
	// Name is the event name, for example "demo/user.signup".
	Name string
	// Data is the event payload, always a JSON object.
	Data json.RawMessage
	// TS is the event time in milliseconds since the Unix epoch.
	TS int64
	// V is the optional payload version.
	V string
	// ReceivedAt is when Herald accepted the event.
	ReceivedAt time.Time
	// Dispatched reports whether the router has finished with the event
	// (false while it is pending).
	Dispatched bool
	// Trace is the W3C traceparent of the request that sent the event, when
	// tracing is on, so the router's spans continue the sender's trace.
	Trace string
	// Fresh marks an ID that Herald generated for this insert (a new ULID), so
	// it cannot already be stored and drivers may skip the duplicate check.
	// It is never set on events read back from a store.
	Fresh bool
}

// EventFilter selects events for ListEvents. The zero value lists the newest
// events first, DefaultListLimit of them.
type EventFilter struct {
	// Name, when set, selects only events with exactly this name.
	Name string
	// ReceivedAfter, when non-zero, selects events received strictly after it.
	ReceivedAfter time.Time
	// ReceivedBefore, when non-zero, selects events received strictly before it.
	ReceivedBefore time.Time
	// Limit is the page size; 0 means DefaultListLimit, and it is capped at MaxListLimit.
	Limit int
	// Cursor continues a previous listing; empty starts from the newest event.
	Cursor string
}

const (
	// DefaultListLimit is the page size when EventFilter.Limit is zero.
	DefaultListLimit = 50
	// MaxListLimit is the largest page a list operation returns.
	MaxListLimit = 100
)

// Page returns what a driver's ListEvents needs of f's paging: the sequence
// number to list below (0 for the first page) and the page size. A cursor the
// store did not issue gives ErrInvalidCursor.
func (f EventFilter) Page() (before int64, limit int, err error) {
	before, err = DecodeCursor(f.Cursor)
	return before, f.EffectiveLimit(), err
}

// EffectiveLimit returns the page size a driver uses for f.
func (f EventFilter) EffectiveLimit() int {
	switch {
	case f.Limit <= 0:
		return DefaultListLimit
	case f.Limit > MaxListLimit:
		return MaxListLimit
	default:
		return f.Limit
	}
}

// Driver is a storage backend. Implementations are safe for concurrent use.
type Driver interface {
	// Migrate applies every embedded migration not yet applied. It is safe to run
	// concurrently from several processes.
	Migrate(ctx context.Context) error

	// InsertEvents stores events in one transaction: either all of them are
	// durable when it returns nil, or none are. An event whose id was already
	// accepted at or after dedupeSince is a duplicate: it is not stored again and
	// its inserted flag is false. An id accepted before dedupeSince is accepted
	// anew (its row is replaced and becomes pending again). Within one call, the
	// first occurrence of an id wins. The returned slice is parallel to events.
	InsertEvents(ctx context.Context, events []Event, dedupeSince time.Time) (inserted []bool, err error)

	// GetEvent returns the event with the given id, or ErrNotFound.
	GetEvent(ctx context.Context, id string) (Event, error)

	// ListEvents returns one page of events, newest first, and the cursor of the
	// next page ("" when there is none).
	ListEvents(ctx context.Context, filter EventFilter) (events []Event, next string, err error)

	// Ping reports whether the backend is reachable.
	Ping(ctx context.Context) error

	// Close releases the driver's resources.
	Close() error

	// Purge deletes what the retention no longer keeps, for a retention
	// that ends at before (now minus the retention): at most batch rows of
	// each kind, one statement per table in one short transaction, so a
	// call holds its locks briefly; on error it deletes nothing. It deletes
	//   - events received before before that are dispatched and that no
	//     unfinished (Scheduled or Running) run references, as its event or
	//     through a batch link; a pending event is never purged;
	//   - runs that finished (Completed, Failed, Cancelled or Skipped) and
	//     ended before before, with their batch links;
	//   - bulk cancellations and replays that finished (Completed or
	//     Failed) and were last updated before before.
	// Apps, functions and webhook sources are never purged; waits and flow
	// state have their own purges (PurgeWaits, PurgeFlowState). Where rows
	// are locked (PostgreSQL), rows another replica's purge or a claim holds
	// are skipped, so replicas may purge at once. It returns what it
	// deleted; PurgeCounts.More says whether another call may find more. A
	// batch below 1 gives ErrPurgeBatch.
	Purge(ctx context.Context, before time.Time, batch int) (PurgeCounts, error)

	Dispatcher
	Webhooks
	Jobs
	Recovery
}

// EncodeCursor returns the opaque cursor for a position in a listing.
func EncodeCursor(seq int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("s" + strconv.FormatInt(seq, 10)))
}

// DecodeCursor parses a cursor made by EncodeCursor. The empty cursor decodes to 0.
func DecodeCursor(cursor string) (int64, error) {
	if cursor == "" {
		return 0, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil || len(raw) < 2 || raw[0] != 's' {
		return 0, ErrInvalidCursor
	}
	seq, err := strconv.ParseInt(string(raw[1:]), 10, 64)
	if err != nil || seq <= 0 {
		return 0, ErrInvalidCursor
	}
	return seq, nil
}

// FirstOccurrences returns the indexes of events whose id appears for the first
// time in events. Drivers use it so one statement never touches a row twice.
func FirstOccurrences(events []Event) []int {
	seen := make(map[string]struct{}, len(events))
	idx := make([]int, 0, len(events))
	for i := range events {
		if _, dup := seen[events[i].ID]; dup {
			continue
		}
		seen[events[i].ID] = struct{}{}
		idx = append(idx, i)
	}
	return idx
}

// ValidateForInsert checks the invariants every driver relies on. Ingest
// validates user input long before this; this guards programming errors.
func ValidateForInsert(events []Event) error {
	for i, e := range events {
		if e.ID == "" || e.Name == "" {
			return fmt.Errorf("store: event %d: id and name are required", i)
		}
		if e.ReceivedAt.IsZero() {
			return fmt.Errorf("store: event %d: received_at is required", i)
		}
		if len(e.Data) == 0 || e.Data[0] != '{' {
			return fmt.Errorf("store: event %d: data must be a JSON object", i)
		}
	}
	return nil
}

// App is an app: a set of functions that one worker deployment serves.
type App struct {
	ID string
	// TaskQueue is the Temporal task queue the app's workers poll.
	TaskQueue string
	// SyncedAt is when the app was last synced, or one of its functions
	// paused or resumed: every change to what the router runs moves it, so
	// replicas see the change at once (registry snapshots compare it).
	SyncedAt time.Time
}

// Function is one function of an app, as last synced.
type Function struct {
	AppID string
	// ID is the function's id within its app.
	ID string
	// Config is the function's configuration as the worker sent it (JSON).
	Config json.RawMessage
	// Version starts at 1 and grows by one with every sync that changes Config.
	Version   int
	UpdatedAt time.Time
	// PausedAt is when the function was paused, nil while it runs. Syncs
	// keep it (see Recovery.SetFunctionPaused).
	PausedAt *time.Time
}

// SyncResult says what a sync changed.
type SyncResult struct {
	Created, Updated, Removed []string // function ids
	// Previous holds the app's functions as they were before the sync.
	Previous []Function
}

// Run is one execution of a function for an event.
type Run struct {
	// ID is Herald's run id (a ULID, or the Temporal run id for runs Herald
	// did not start itself, such as cron and invoked runs).
	ID         string
	AppID      string
	FunctionID string
	EventID    string
	WorkflowID string
	// Status is one of Scheduled, Running, Completed, Failed, Cancelled, Skipped.
	Status string
	// Output is the function's JSON result once Completed.
	Output json.RawMessage
	// Error is the failure message once Failed, or the reason once Skipped.
	Error     string
	StartedAt time.Time
	EndedAt   *time.Time
	// ReplayOf is the run this one repeats, for a replayed or rerun run;
	// ReplayID the replay job that started it (empty for a rerun). A replay
	// that ran an event with no run has ReplayID without ReplayOf. Only
	// runs with neither are one per (app, function, event).
	ReplayOf string
	ReplayID string
}

// Claim is what the router reports back for a batch of claimed events.
type Claim struct {
	// Runs to record. A run for a (app, function, event) that already exists
	// is ignored, so a re-dispatched event never records a second run.
	Runs []Run
	// Dispatched are the ids of the events that are done; the others stay
	// pending and are claimed again later.
	Dispatched []string
	// Waits to register (the cancelOn waits of the runs just started). A wait
	// whose (WorkflowID, Kind, StepID) exists is ignored.
	Waits []Wait
	// Resolved are the waits the router resolved with events of this batch;
	// each must have been returned by ClaimTx.CandidateWaits in this claim.
	Resolved []WaitResolution
}

// Wait kinds.
const (
	WaitKindWait   = "wait"   // step.WaitForEvent: resolving signals the workflow
	WaitKindCancel = "cancel" // cancelOn: resolving cancels the workflow
)

// Wait is a pending step.WaitForEvent or cancelOn: the run it belongs to waits
// for an event named EventName that matches its key and expression.
type Wait struct {
	// ID is a ULID.
	ID         string
	Kind       string
	AppID      string
	FunctionID string
	RunID      string
	WorkflowID string
	// StepID is the WaitForEvent step id; for cancelOn, "cancel-<index>".
	StepID string
	// EventName is the exact name of the awaited event.
	EventName string
	// MatchPath and MatchValue are the indexed equality: an event matches only
	// if the value at MatchPath (e.g. "data.userId") encodes, as compact JSON,
	// to MatchValue (e.g. `"u_42"`). Both empty: the wait is not indexable and
	// every event with EventName is a candidate.
	MatchPath  string
	MatchValue string
	// Expr is the rest of the condition, a CEL expression over `event` (the
	// run's triggering event) and `async` (the candidate); empty means none.
	Expr string
	// TriggerEvent is the run's triggering event (JSON object with id, name,
	// data, ts, v), bound to `event` when Expr runs.
	TriggerEvent json.RawMessage
	// Since: only events received at or after it can resolve the wait.
	Since time.Time
	// ExpiresAt: after it the wait no longer matches (the workflow's own timer
	// has fired).
	ExpiresAt time.Time
	CreatedAt time.Time
	// ResolvedAt and ResolvedBy (an event id) are set once, by the first
	// matching event.
	ResolvedAt *time.Time
	ResolvedBy string
}

// WaitKey selects indexable candidate waits.
type WaitKey struct {
	EventName, MatchPath, MatchValue string
}

// WaitResolution records that EventID resolved WaitID.
type WaitResolution struct {
	WaitID, EventID string
}

// ClaimTx is what the router may read inside ClaimEvents, in the claim's
// transaction.
type ClaimTx interface {
	// WaitPaths returns, for each event name given, the distinct MatchPaths of
	// its pending waits (so the router knows which values to look up).
	WaitPaths(ctx context.Context, names []string) (map[string][]string, error)
	// CandidateWaits returns the unresolved, unexpired waits that match one of
	// keys, plus the non-indexable ones (empty MatchPath) for the given names.
	// On Postgres they are locked FOR UPDATE until the claim commits; a wait
	// another claim holds is waited for (then seen resolved, or not), never
	// skipped, so no event passes a wait by.
	CandidateWaits(ctx context.Context, names []string, keys []WaitKey) ([]Wait, error)

	// Limit applies the GCRA limiter named key (its state is one theoretical
	// arrival time, TAT; a missing row or a TAT before now means now). The
	// request may start at startAt = max(now, TAT-tolerance). If startAt is
	// after latest, ok is false and the state is unchanged; otherwise ok is
	// true and TAT becomes max(TAT, now)+emission. A rate limit passes
	// latest = now (over the limit: skipped); a throttle passes the latest
	// start it accepts (over the limit: started later). The row is locked
	// until the claim commits, so concurrent claims queue on it.
	Limit(ctx context.Context, key string, now time.Time, emission, tolerance time.Duration, latest time.Time) (startAt time.Time, ok bool, err error)

	// ReleaseLimit gives back one admission of emission to the limiter named
	// key: its TAT moves back by emission. The router calls it, in the same
	// claim, for a run whose start failed after Limit admitted it, so the
	// retry is not skipped or delayed for a slot it never used. A missing
	// row is left missing.
	ReleaseLimit(ctx context.Context, key string, emission time.Duration) error

	// TakeKey records that runID holds the idempotency key until expires,
	// unless an unexpired record of another run exists. It reports whether
	// runID holds the key now (true also when runID already held it: a
	// re-dispatch) and, when not, which run does.
	TakeKey(ctx context.Context, key, runID string, now, expires time.Time) (taken bool, holder string, err error)

	// SingletonHolder returns the run holding the singleton key, or empty
	// strings when none does; the row is locked until the claim commits.
	SingletonHolder(ctx context.Context, key string) (runID, workflowID string, err error)

	// SetSingleton makes runID (workflow workflowID) the holder of key,
	// replacing any previous holder. FinishRun of the holder releases it.
	SetSingleton(ctx context.Context, key, runID, workflowID string) error
}

// Dispatcher is the part of a Driver the router and the registry use.
type Dispatcher interface {
	// SyncApp stores app and replaces its functions with fns in one
	// transaction: new ones are created at version 1, changed ones get the
	// next version, absent ones are removed.
	SyncApp(ctx context.Context, app App, fns []Function) (SyncResult, error)

	// ListApps returns every app.
	ListApps(ctx context.Context) ([]App, error)

	// ListFunctions returns every function of every app, ordered by app and id.
	ListFunctions(ctx context.Context) ([]Function, error)

	// ClaimEvents claims up to limit pending events, oldest first, and calls
	// fn with them. It then records fn's runs and marks fn's dispatched events
	// in one transaction. When fn fails nothing is recorded and the events stay
	// pending. On Postgres claimed rows are locked (SKIP LOCKED), so replicas
	// claim disjoint batches. It returns the number of events claimed.
	ClaimEvents(ctx context.Context, limit int, fn func(ctx context.Context, tx ClaimTx, events []Event) (Claim, error)) (int, error)

	// PendingEvents counts events not yet dispatched.
	PendingEvents(ctx context.Context) (int64, error)

	// GetRun returns a run by id, or ErrNotFound.
	GetRun(ctx context.Context, id string) (Run, error)

	// ListRunsByEvent returns the runs an event started, oldest first: the
	// runs whose EventID it is and the runs RecordRun linked it to (a batch).
	ListRunsByEvent(ctx context.Context, eventID string) ([]Run, error)

	// RecordRun stores a run started outside a claim (a debounce or a batch
	// firing) and links it to every id in eventIDs, so each event lists it.
	// A run whose id, or whose (app, function, event), is already stored is
	// left unchanged (a retried start); the links are still added.
	RecordRun(ctx context.Context, r Run, eventIDs []string) error

	// PurgeFlowState deletes idempotency keys expired at now and limiter
	// rows whose TAT is before now (they mean the same as no row), and
	// returns how many rows it deleted.
	PurgeFlowState(ctx context.Context, now time.Time) (int64, error)

	// FinishRun records a run's outcome (status, output, error, ended_at)
	// and releases the singleton keys the run holds. A
	// run Herald has no row for (a cron or invoked run) is inserted from r. If
	// systemEvent is not nil it is stored in the same transaction, deduplicated
	// by id like any event. Finishing an already finished run changes nothing
	// and stores no second system event.
	FinishRun(ctx context.Context, r Run, systemEvent *Event) error

	// RegisterWait stores a wait. Registering the same (WorkflowID, Kind,
	// StepID) again returns the stored wait unchanged (a retried activity).
	RegisterWait(ctx context.Context, w Wait) (Wait, error)

	// EventsSince returns events named name received at or after since, oldest
	// first, at most limit: what a new wait must check because it may have
	// arrived while the wait was being registered.
	// When match.MatchPath is a data path ("data.userId"), events whose value
	// there differs from match.MatchValue may be left out; this is a
	// pre-filter, the caller still checks every event it gets.
	EventsSince(ctx context.Context, name string, since time.Time, match WaitKey, limit int) ([]Event, error)

	// ResolveWait marks the wait resolved by eventID if it is still
	// unresolved and unexpired, and reports whether this call did it.
	ResolveWait(ctx context.Context, waitID, eventID string) (bool, error)

	// GetWait returns a wait by (WorkflowID, Kind, StepID), or ErrNotFound.
	GetWait(ctx context.Context, workflowID, kind, stepID string) (Wait, error)

	// DeleteRunWaits removes every wait of a run (when it ends).
	DeleteRunWaits(ctx context.Context, workflowID string) error

	// PurgeWaits deletes waits expired or resolved before before and returns
	// how many.
	PurgeWaits(ctx context.Context, before time.Time) (int64, error)

	// WaitStats counts pending waits and, among them, those not indexable.
	WaitStats(ctx context.Context) (pending, unindexed int64, err error)

	// ListActiveRuns returns up to limit Scheduled or Running runs of a
	// function, started within [after, before) (zero times: unbounded), with
	// ids greater than afterID, ordered by id.
	ListActiveRuns(ctx context.Context, appID, functionID string, after, before time.Time, afterID string, limit int) ([]Run, error)

	// SaveCancellation inserts or replaces a bulk cancellation, its lease
	// (Owner, HeartbeatAt) and progress (Cursor) included.
	SaveCancellation(ctx context.Context, c Cancellation) error

	// UpdateCancellation saves the progress of a running bulk cancellation
	// (Status, Matched, Cancelled, Error, Cursor, UpdatedAt) and its
	// heartbeat (HeartbeatAt), if c.Owner still holds it and it is
	// JobRunning: a compare-and-set on the owner. Otherwise it returns
	// ErrLeaseLost and changes nothing. Saving a finished Status ends the
	// lease.
	UpdateCancellation(ctx context.Context, c Cancellation) error

	// GetCancellation returns a bulk cancellation, or ErrNotFound.
	GetCancellation(ctx context.Context, id string) (Cancellation, error)
}

// Cancellation is a bulk cancellation of a function's runs.
type Cancellation struct {
	ID            string
	AppID         string
	FunctionID    string
	StartedAfter  time.Time // zero: unbounded
	StartedBefore time.Time // zero: unbounded
	// Expr is a CEL condition over `event`, the run's triggering event.
	Expr string
	// Status is JobRunning, JobCompleted or JobFailed.
	Status string
	// Matched counts the active runs the job found matching, Cancelled those
	// whose cancellation Temporal accepted.
	Matched   int64
	Cancelled int64
	Error     string
	CreatedAt time.Time
	// UpdatedAt is when the job last saved progress or finished.
	UpdatedAt time.Time
	// Owner is the lease token of the executor running the job (see Jobs).
	Owner string
	// HeartbeatAt is when Owner last renewed its lease. A JobRunning job
	// whose heartbeat is older than the stale threshold is taken over.
	HeartbeatAt time.Time
	// Cursor is the id of the run the job was working on when it last saved
	// (empty before the first): Matched and Cancelled count every run before
	// it, so an executor that takes the job over starts again at that run.
	Cursor string
}

// Webhook is a webhook source: deliveries to POST /w/{ID} are verified with
// Verify, turned into events by Transform and ingested like POST /e.
type Webhook struct {
	// ID is "wh_" followed by a ULID.
	ID string
	// Name names the source; events of a source without a transform are
	// named "webhook/<Name>".
	Name string
	// Transform is the CEL transform from a delivery to events; empty means
	// the default event.
	Transform string
	// Verify is the JSON of the ingest's verification settings, secret
	// included: it is stored as is and must never be returned by the API.
	Verify json.RawMessage
	// AllowEvents are the event name patterns the source may produce; empty
	// allows any name.
	AllowEvents []string
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// Webhooks stores webhook sources.
type Webhooks interface {
	// CreateWebhook stores a new source; an id already stored is an error.
	CreateWebhook(ctx context.Context, w Webhook) error

	// GetWebhook returns a source by id, or ErrNotFound.
	GetWebhook(ctx context.Context, id string) (Webhook, error)

	// ListWebhooks returns every source, ordered by id (so by creation).
	ListWebhooks(ctx context.Context) ([]Webhook, error)

	// UpdateWebhook replaces the name, transform, verify, allow_events and
	// updated_at of the source with w's id (created_at is kept), or returns
	// ErrNotFound.
	UpdateWebhook(ctx context.Context, w Webhook) error

	// DeleteWebhook removes a source, or returns ErrNotFound.
	DeleteWebhook(ctx context.Context, id string) error
}

// EncodeAllowEvents returns the JSON array of patterns a driver stores
// ("[]" for none).
func EncodeAllowEvents(patterns []string) []byte {
	if len(patterns) == 0 {
		return []byte("[]")
	}
	b, _ := json.Marshal(patterns) // a []string always marshals
	return b
}

// DecodeAllowEvents parses what EncodeAllowEvents stored; none decodes to nil.
func DecodeAllowEvents(raw []byte) ([]string, error) {
	var out []string
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("store: allow_events: %w", err)
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}
