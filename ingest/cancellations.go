package ingest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/oklog/ulid/v2"

	"github.com/herald-run/herald/internal/wire"
	"github.com/herald-run/herald/store"
	"github.com/herald-run/herald/triggers"
)

// CancellationJSON is a bulk cancellation as the REST API returns it.
type CancellationJSON struct {
	ID            string     `json:"id"`
	FunctionID    string     `json:"function_id"`
	StartedAfter  *time.Time `json:"started_after"`
	StartedBefore *time.Time `json:"started_before"`
	If            string     `json:"if,omitempty"`
	Status        string     `json:"status"`
	Matched       int64      `json:"matched"`
	Cancelled     int64      `json:"cancelled"`
	Error         string     `json:"error,omitempty"`
	CreatedAt     time.Time  `json:"created_at"`
	UpdatedAt     time.Time  `json:"updated_at"`
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func toCancellationJSON(c store.Cancellation) CancellationJSON {
	return CancellationJSON{ID: c.ID, FunctionID: c.AppID + "/" + c.FunctionID, StartedAfter: optTime(c.StartedAfter),
		StartedBefore: optTime(c.StartedBefore), If: c.Expr, Status: c.Status, Matched: c.Matched, Cancelled: c.Cancelled,
		Error: c.Error, CreatedAt: c.CreatedAt.UTC(), UpdatedAt: c.UpdatedAt.UTC()}
}

// handleCreateCancellation starts a bulk cancellation in the background and
// replies at once with its id.
func (s *Server) handleCreateCancellation(c *gin.Context) {
	var body struct {
		FunctionID    string `json:"function_id"`
		StartedAfter  string `json:"started_after"`
		StartedBefore string `json:"started_before"`
		If            string `json:"if"`
	}
	if err := decodeJSONBody(c, &body, s.limits.MaxBodyBytes); err != nil {
		writeError(c, http.StatusBadRequest, "cancellation body: "+err.Error())
		return
	}
	app, fn, ok := strings.Cut(body.FunctionID, "/")
	if !ok || app == "" || fn == "" {
		writeError(c, http.StatusBadRequest, `function_id: use "<app>/<function id>" as listed by GET /v1/functions`)
		return
	}
	after, err := parseTimeParam(body.StartedAfter)
	if err != nil {
		writeError(c, http.StatusBadRequest, "started_after: "+err.Error())
		return
	}
	before, err := parseTimeParam(body.StartedBefore)
	if err != nil {
		writeError(c, http.StatusBadRequest, "started_before: "+err.Error())
		return
	}
	if body.If != "" {
		if _, err := s.triggerEnv.Cached(body.If); err != nil {
			writeError(c, http.StatusBadRequest, "if: "+err.Error())
			return
		}
	}
	now := time.Now().UTC()
	job := store.Cancellation{ID: ulid.Make().String(), AppID: app, FunctionID: fn, StartedAfter: after, StartedBefore: before,
		Expr: body.If, Status: store.JobRunning, CreatedAt: now, UpdatedAt: now, Owner: newLeaseOwner(), HeartbeatAt: now}
	if err := s.cfg.Store.SaveCancellation(c.Request.Context(), job); err != nil {
		s.storeError(c, err)
		return
	}
	s.startCancellation(job)
	c.JSON(http.StatusOK, gin.H{"data": toCancellationJSON(job)})
}

func (s *Server) handleGetCancellation(c *gin.Context) {
	job, err := s.cfg.Store.GetCancellation(c.Request.Context(), c.Param("id"))
	if errors.Is(err, store.ErrNotFound) {
		writeError(c, http.StatusNotFound, fmt.Sprintf("no cancellation with id %q", c.Param("id")))
		return
	}
	if err != nil {
		s.storeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"data": toCancellationJSON(job)})
}

// DefaultJobStaleAfter is JobLease.StaleAfter's default.
const DefaultJobStaleAfter = 30 * time.Second

// JobLease configures the leases under which bulk cancellations run. The
// replica running a job renews its lease every Heartbeat and saves its
// progress at every run; when a job's lease has not been renewed for
// StaleAfter (its replica died, or lost the store), the next replica whose
// housekeeping calls TakeOverCancellations takes it over and resumes it. The
// zero value means the defaults.
type JobLease struct {
	// StaleAfter is how long a running job may go without renewing its
	// lease before another replica takes it over. Default
	// DefaultJobStaleAfter.
	StaleAfter time.Duration
	// Heartbeat is how often a running job renews its lease, even while it
	// waits on Temporal or the store. Default StaleAfter/6; at most
	// StaleAfter/2, so one late renewal never makes a live job stale.
	Heartbeat time.Duration
}

// WithDefaults returns l with its zero fields set to their defaults, and a
// Heartbeat over StaleAfter/2 replaced by the default.
func (l JobLease) WithDefaults() JobLease {
	if l.StaleAfter <= 0 {
		l.StaleAfter = DefaultJobStaleAfter
	}
	if l.Heartbeat <= 0 || l.Heartbeat > l.StaleAfter/2 {
		l.Heartbeat = l.StaleAfter / 6
	}
	return l
}

// newLeaseOwner returns a fresh lease token. Every start or takeover of a job
// gets its own, so an executor that lost the job can never pass for the one
// that holds it, in another process or in this one.
func newLeaseOwner() string { return ulid.Make().String() }

// cancellationPage is how many active runs a job lists at a time.
const cancellationPage = 200

// startCancellation runs job in the background, under the lease job.Owner
// holds, until it finishes, loses its lease or the server closes.
func (s *Server) startCancellation(job store.Cancellation) {
	s.background.Add(1)
	go func() {
		defer s.background.Done()
		s.runCancellation(s.bgCtx, job)
	}()
}

// TakeOverCancellations takes over the bulk cancellations whose lease has not
// been renewed for Jobs.StaleAfter, and resumes them on this server from
// their saved progress. Several replicas may call it at once: each stale job
// is taken by exactly one. It returns how many jobs it took. Housekeeping
// calls it every few seconds; it must not be called once Close has begun.
func (s *Server) TakeOverCancellations(ctx context.Context) (int, error) {
	return takeOver(ctx, s, store.JobCancellation, s.cfg.Store.GetCancellation, func(job store.Cancellation) {
		s.log.Info("bulk cancellation: taking over a job whose replica stopped renewing its lease",
			"id", job.ID, "cursor", job.Cursor, "matched", job.Matched, "cancelled", job.Cancelled)
		s.startCancellation(job)
	})
}

// takeOver takes every stale job of kind, reads it with get and resumes it
// with resume, until none is stale or the server closes.
func takeOver[J any](ctx context.Context, s *Server, kind store.JobKind, get func(context.Context, string) (J, error), resume func(J)) (int, error) {
	lease := s.cfg.Jobs.WithDefaults()
	taken := 0
	for s.bgCtx.Err() == nil {
		now := time.Now().UTC()
		id, err := s.cfg.Store.TakeStaleJob(ctx, kind, newLeaseOwner(), now.Add(-lease.StaleAfter), now)
		if errors.Is(err, store.ErrNotFound) {
			break
		}
		if err != nil {
			return taken, err
		}
		// Taken but not started if this read fails: the job is stale again
		// after StaleAfter, and taken again.
		job, err := get(ctx, id)
		if err != nil {
			return taken, err
		}
		taken++
		resume(job)
	}
	return taken, nil
}

// cancellationRun is one executor's run of a bulk cancellation.
type cancellationRun struct {
	s   *Server
	prg *triggers.Program // nil: no condition
	// job is the executor's state; its counts may be ahead of saved, the
	// state last stored.
	job, saved store.Cancellation
}

// runCancellation works through the function's active runs, in id order,
// from the job's cursor: it evaluates the condition against each run's
// triggering event and cancels the matching runs. Before each run it saves
// the cursor (that run) and the counts of the runs before it, with a
// compare-and-set on its lease, so an executor that takes the job over
// repeats at most that one run. A renewal goroutine keeps the lease alive
// meanwhile. The job stops, without finishing, when it loses its lease
// (another replica has it), when it cannot save its progress (the store is
// unreachable: once the lease is stale a replica resumes it) or when the
// server closes (it hands its lease back so that another replica resumes it
// at once).
func (s *Server) runCancellation(parent context.Context, job store.Cancellation) {
	r := &cancellationRun{s: s, job: job, saved: job}
	s.runUnderLease(parent, store.JobCancellation, "bulk cancellation", job.ID, job.Owner, r.run, r.handBack, func() {
		s.log.Info("bulk cancellation finished", "id", job.ID, "status", r.job.Status,
			"matched", r.job.Matched, "cancelled", r.job.Cancelled, "error", r.job.Error)
	})
}

// runUnderLease runs work, one executor's run of the background job id of
// kind, under the lease owner holds: a goroutine renews the lease meanwhile
// and stops work once the lease is lost. work returns nil when the job has
// finished and that is saved (finished then reports it), and otherwise why
// it stopped. When it stopped because the server closes, handBack hands the
// lease back (the progress last saved, with its heartbeat at the epoch), so
// that another replica resumes the job at once; it returns that progress's
// cursor. In every other case the job is resumed once its lease is stale.
func (s *Server) runUnderLease(parent context.Context, kind store.JobKind, what, id, owner string,
	work func(context.Context) error, handBack func(context.Context) (cursor string, err error), finished func()) {
	lease := s.cfg.Jobs.WithDefaults()
	ctx, stop := context.WithCancel(parent)
	var (
		lost     atomic.Bool
		renewing sync.WaitGroup
	)
	renewing.Add(1)
	go func() {
		defer renewing.Done()
		s.renewLease(ctx, kind, id, owner, lease.Heartbeat, &lost, stop)
	}()
	err := work(ctx)
	stop()
	renewing.Wait()
	switch {
	case err == nil:
		finished()
	case lost.Load() || errors.Is(err, store.ErrLeaseLost):
		s.log.Warn(what+": another replica took the job over; stopping here", "id", id)
	case parent.Err() != nil:
		hctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		cursor, err := handBack(hctx)
		if err != nil {
			s.log.Warn(what+": handing the job over failed; another replica resumes it once its lease is stale", "id", id, "err", err)
			return
		}
		s.log.Info(what+": handed over to the other replicas as this one stops", "id", id, "cursor", cursor)
	default:
		s.log.Error(what+": cannot save progress; stopping, to be resumed once the lease is stale", "id", id, "err", err)
	}
}

// run works through the runs. It returns nil once the job has finished
// (Completed or Failed) and that is saved, and otherwise why it stopped.
func (r *cancellationRun) run(ctx context.Context) error {
	s := r.s
	if s.cfg.Temporal == nil {
		return r.finish(ctx, store.JobFailed, "no Temporal client is configured")
	}
	if r.job.Expr != "" {
		prg, err := s.triggerEnv.Cached(r.job.Expr)
		if err != nil {
			return r.finish(ctx, store.JobFailed, err.Error())
		}
		r.prg = prg
	}
	afterID := r.job.Cursor
	if afterID != "" {
		// Taken over: the run at the cursor is the one the previous
		// executor was working on; it may have cancelled it already.
		run, err := s.cfg.Store.GetRun(ctx, afterID)
		switch {
		case errors.Is(err, store.ErrNotFound): // purged since: long finished
		case err != nil:
			return err
		default:
			if err := r.process(ctx, run, true); err != nil {
				return err
			}
		}
	}
	for {
		runs, err := s.cfg.Store.ListActiveRuns(ctx, r.job.AppID, r.job.FunctionID, r.job.StartedAfter, r.job.StartedBefore, afterID, cancellationPage)
		if err != nil {
			return err
		}
		for _, run := range runs {
			r.job.Cursor = run.ID
			if err := r.save(ctx); err != nil {
				return err
			}
			if err := r.process(ctx, run, false); err != nil {
				return err
			}
			afterID = run.ID
		}
		if len(runs) < cancellationPage {
			return r.finish(ctx, store.JobCompleted, "")
		}
	}
}

// process evaluates the condition for run and cancels it if it holds,
// counting it. A run found again after a takeover (resumed) that has ended
// Cancelled since is counted as cancelled: the previous executor's request
// did it. process fails only when ctx is done; then run is not counted.
func (r *cancellationRun) process(ctx context.Context, run store.Run, resumed bool) error {
	s := r.s
	if r.prg != nil {
		e, err := s.cfg.Store.GetEvent(ctx, run.EventID)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return nil // no triggering event (a cron run): the condition cannot hold
		}
		act, err := triggers.EventActivation(e.Name, e.Data, e.ID, e.TS, e.V)
		if err != nil {
			return nil
		}
		ectx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		ok, err := r.prg.Eval(ectx, act)
		cancel()
		if err != nil || !ok {
			return ctx.Err()
		}
	}
	if wire.RunFinished(run.Status) {
		if resumed && run.Status == wire.RunCancelled {
			r.job.Matched++
			r.job.Cancelled++
		}
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := s.cfg.Temporal.Cancel(cctx, run.WorkflowID)
	cancel()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	r.job.Matched++
	if err == nil {
		r.job.Cancelled++
	} else {
		s.log.Warn("bulk cancellation: cancel failed", "id", r.job.ID, "run_id", run.ID, "err", err)
	}
	return nil
}

// save stores the job's progress and renews its lease.
func (r *cancellationRun) save(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := time.Now().UTC()
	r.job.UpdatedAt, r.job.HeartbeatAt = now, now
	if err := r.s.cfg.Store.UpdateCancellation(ctx, r.job); err != nil {
		return err
	}
	r.saved = r.job
	return nil
}

// finish saves the job's outcome, even while the server closes.
func (r *cancellationRun) finish(ctx context.Context, status, msg string) error {
	r.job.Status, r.job.Error = status, msg
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return r.save(sctx)
}

// handBack saves the progress last saved with its heartbeat at the epoch:
// the next replica that looks takes the job over at once.
func (r *cancellationRun) handBack(ctx context.Context) (string, error) {
	job := r.saved
	job.HeartbeatAt = time.Unix(0, 0).UTC()
	return job.Cursor, r.s.cfg.Store.UpdateCancellation(ctx, job)
}

// renewLease renews owner's lease of the job of kind with id every interval
// until ctx is done. When the lease is gone (another replica took the job
// over) it sets lost and stops the job through stop. A failed renewal is
// retried at the next tick; if the store stays out of reach past
// StaleAfter, another replica takes the job and the job's next save fails.
func (s *Server) renewLease(ctx context.Context, kind store.JobKind, id, owner string, every time.Duration, lost *atomic.Bool, stop context.CancelFunc) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := s.cfg.Store.RenewJob(ctx, kind, id, owner, time.Now().UTC())
		switch {
		case errors.Is(err, store.ErrLeaseLost):
			lost.Store(true)
			stop()
			return
		case err != nil && ctx.Err() == nil:
			s.log.Warn("background job: renewing the lease failed", "kind", kind, "id", id, "err", err)
		}
	}
}
