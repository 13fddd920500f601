package store

import (
	"context"
	"encoding/base64"
	"strconv"
	"strings"
	"time"
)

// Recovery is what pausing, replaying and rerunning ask of a store, and the
// listings of runs and waits the API and the console page through.
type Recovery interface {
	// SetFunctionPaused pauses the function (pausedAt not nil) or resumes it
	// (nil), and moves its app's SyncedAt so every replica's registry
	// reloads. Pausing a paused function keeps its first PausedAt. It
	// returns the function as stored, or ErrNotFound.
	SetFunctionPaused(ctx context.Context, appID, functionID string, pausedAt *time.Time) (Function, error)

	// ListRuns returns one page of runs, newest first (by StartedAt, then
	// id), and the cursor of the next page ("" when there is none).
	ListRuns(ctx context.Context, filter RunFilter) (runs []Run, next string, err error)

	// RunEventIDs returns the ids of the events a run ran for: its own event
	// first, then the others of its batch, in id order. A run without a
	// stored event (cron) has none.
	RunEventIDs(ctx context.Context, runID string) ([]string, error)

	// ReopenRun makes a finished run Running again (no end, output or
	// error): a rerun from one of its steps resets its workflow, whose new
	// outcome FinishRun then records. ErrNotFound when there is no such run.
	ReopenRun(ctx context.Context, runID string) error

	// ListWaits returns one page of pending waits (unresolved, unexpired at
	// now), newest first, and the cursor of the next page.
	ListWaits(ctx context.Context, filter WaitFilter, now time.Time) (waits []Wait, next string, err error)

	// SaveReplay inserts or replaces a replay, its lease and progress
	// included.
	SaveReplay(ctx context.Context, r Replay) error

	// UpdateReplay saves the progress of a running replay (Status, Matched,
	// Started, Skipped, Error, Cursor, UpdatedAt) and its heartbeat, if
	// r.Owner still holds it and it is JobRunning; otherwise it returns
	// ErrLeaseLost and changes nothing.
	UpdateReplay(ctx context.Context, r Replay) error

	// GetReplay returns a replay, or ErrNotFound.
	GetReplay(ctx context.Context, id string) (Replay, error)

	// FlowTx runs fn with a ClaimTx outside a claim, for a start that is not
	// an event's dispatch (a replayed run): its limiter reads and writes
	// commit when fn returns nil and roll back otherwise.
	FlowTx(ctx context.Context, fn func(ctx context.Context, tx ClaimTx) error) error
}

// RunFilter selects runs for ListRuns. Zero fields select everything.
type RunFilter struct {
	AppID, FunctionID string
	// Statuses, when not empty, selects runs with one of these statuses.
	Statuses []string
	// StartedAfter and StartedBefore bound StartedAt: at or after, and
	// strictly before.
	StartedAfter, StartedBefore time.Time
	// Limit is the page size (0: DefaultListLimit; at most MaxListLimit).
	Limit  int
	Cursor string
}

// EffectiveLimit returns the page size a driver uses for f.
func (f RunFilter) EffectiveLimit() int { return EventFilter{Limit: f.Limit}.EffectiveLimit() }

// WaitFilter selects pending waits for ListWaits.
type WaitFilter struct {
	AppID, FunctionID string
	Limit             int
	// Cursor continues a listing: the id of the last wait of the previous
	// page.
	Cursor string
}

// EffectiveLimit returns the page size a driver uses for f.
func (f WaitFilter) EffectiveLimit() int { return EventFilter{Limit: f.Limit}.EffectiveLimit() }

// EncodeRunCursor returns the cursor of a run listing that continues after
// (older than) the run started at started with id.
func EncodeRunCursor(started time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte("r" + strconv.FormatInt(started.UnixMicro(), 10) + ":" + id))
}

// DecodeRunCursor parses a cursor made by EncodeRunCursor; ok is false for
// the empty cursor. A cursor the store did not issue gives ErrInvalidCursor.
func DecodeRunCursor(cursor string) (started time.Time, id string, ok bool, err error) {
	if cursor == "" {
		return time.Time{}, "", false, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil || len(raw) < 3 || raw[0] != 'r' {
		return time.Time{}, "", false, ErrInvalidCursor
	}
	us, id, found := strings.Cut(string(raw[1:]), ":")
	n, err := strconv.ParseInt(us, 10, 64)
	if !found || err != nil || id == "" {
		return time.Time{}, "", false, ErrInvalidCursor
	}
	return time.UnixMicro(n).UTC(), id, true, nil
}

// Replay is a replay job: it starts a new run of a function for each run of
// the window whose status is in Statuses (or, with Events, for each stored
// event of the window that the function's triggers match), in the
// background, under a lease like a bulk cancellation.
type Replay struct {
	ID, AppID, FunctionID string
	// From and To bound the window: runs started, or events received, at or
	// after From and before To.
	From, To time.Time
	Statuses []string
	// Events replays the window's events instead of its runs.
	Events bool
	// Expr is a CEL condition over `event`; empty selects all.
	Expr string
	// Status is JobRunning, JobCompleted or JobFailed.
	Status string
	// Matched counts the runs (or events) the job selected, Started the new
	// runs it started, Skipped those it did not (the function is gone, or
	// the start was refused).
	Matched, Started, Skipped int64
	Error                     string
	CreatedAt, UpdatedAt      time.Time
	// Owner, HeartbeatAt: the lease (see Jobs).
	Owner       string
	HeartbeatAt time.Time
	// Cursor is where the job resumes: the listing cursor of the page it
	// was working on and how many of that page's items it had done,
	// "<cursor>|<n>".
	Cursor string
}
