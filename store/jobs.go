package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Background jobs (bulk cancellations and replays) run on one replica at a
// time under a lease: the job's row names its owner, a token the executor
// picked when it started or took over the job, and the time of the owner's
// last heartbeat. The owner renews the heartbeat every few seconds and saves
// its progress with a compare-and-set on the owner, so a save by an executor
// that lost the job changes nothing. When a replica dies its jobs stop
// renewing; once a job's heartbeat is older than a stale threshold, any
// replica may take it over (TakeStaleJob) and resume it from its saved
// progress.

// ErrLeaseLost is returned by the lease operations of a background job when
// the caller no longer holds the job: another executor took it over, or the
// job is no longer running.
var ErrLeaseLost = errors.New("store: job lease lost")

// JobKind names a kind of background job that runs under a lease. Each kind
// keeps its jobs in a table of its own.
type JobKind string

// Job kinds.
const (
	// JobCancellation is a bulk cancellation (Cancellation).
	JobCancellation JobKind = "cancellation"
	// JobReplay is a replay (Replay).
	JobReplay JobKind = "replay"
)

// Job statuses. Only a JobRunning job has a live lease.
const (
	JobRunning   = "Running"
	JobCompleted = "Completed"
	JobFailed    = "Failed"
)

// ErrJobKind is returned for a JobKind a driver does not know.
var ErrJobKind = errors.New("store: unknown job kind")

// CheckJobKind returns ErrJobKind, wrapped with the kind, unless kind is known.
func CheckJobKind(kind JobKind) error {
	if kind != JobCancellation && kind != JobReplay {
		return fmt.Errorf("%w %q", ErrJobKind, kind)
	}
	return nil
}

// Jobs is the lease protocol of background jobs. Times are the caller's
// clock, passed in, so every replica compares heartbeats it wrote itself with
// the same kind of clock; a stale threshold of tens of seconds dwarfs the
// skew between replicas.
type Jobs interface {
	// TakeStaleJob takes over one JobRunning job of kind whose heartbeat is
	// before staleBefore, the stalest first: in one compare-and-set its owner
	// becomes owner and its heartbeat now. Of several replicas calling it at
	// once, exactly one takes each stale job. It returns the job's id, or
	// ErrNotFound when no job of kind is stale.
	TakeStaleJob(ctx context.Context, kind JobKind, owner string, staleBefore, now time.Time) (id string, err error)

	// RenewJob sets the heartbeat of job id to now if owner still holds it
	// and it is JobRunning; otherwise it returns ErrLeaseLost and changes
	// nothing.
	RenewJob(ctx context.Context, kind JobKind, id, owner string, now time.Time) error
}
