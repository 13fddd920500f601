package ingest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/oklog/ulid/v2"

	"github.com/herald-run/herald/internal/temporalx"
	"github.com/herald-run/herald/internal/wire"
	"github.com/herald-run/herald/router"
	"github.com/herald-run/herald/store"
)

// Replayer starts replayed and rerun runs; *router.Dispatcher is one.
type Replayer interface {
	StartReplay(ctx context.Context, r router.Replay) (store.Run, error)
}

// Resetter resets a run's workflow to one of its steps;
// *temporalx.Client is one.
type Resetter interface {
	ResetToStep(ctx context.Context, workflowID, step, reason string) (string, error)
}

// WaitJSON is a pending wait as the REST API returns it.
type WaitJSON struct {
	ID         string    `json:"id"`
	Kind       string    `json:"kind"`
	AppID      string    `json:"app_id"`
	FunctionID string    `json:"function_id"`
	RunID      string    `json:"run_id"`
	WorkflowID string    `json:"workflow_id"`
	StepID     string    `json:"step_id"`
	EventName  string    `json:"event_name"`
	MatchPath  string    `json:"match_path,omitempty"`
	MatchValue string    `json:"match_value,omitempty"`
	If         string    `json:"if,omitempty"`
	ExpiresAt  time.Time `json:"expires_at"`
	CreatedAt  time.Time `json:"created_at"`
}

// functionParam splits a "<app>/<function id>" query or body value; empty
// is allowed (no filter) when optional.
func functionParam(v string, optional bool) (app, fn string, err error) {
	if v == "" && optional {
		return "", "", nil
	}
	app, fn, ok := strings.Cut(v, "/")
	if !ok || app == "" || fn == "" {
		return "", "", errors.New(`use "<app>/<function id>" as listed by GET /v1/functions`)
	}
	return app, fn, nil
}

// listed answers for a failed listing (a cursor the API did not issue: 400;
// the store: 503) and reports whether the listing succeeded.
func (s *Server) listed(c *gin.Context, err error) bool {
	switch {
	case err == nil:
		return true
	case errors.Is(err, store.ErrInvalidCursor):
		writeError(c, http.StatusBadRequest, "cursor: not a cursor this API returned; start again without it")
	default:
		s.storeError(c, err)
	}
	return false
}

// limitParam parses a listing's limit query parameter (0: the default),
// answering 400 itself when it is not one.
func limitParam(c *gin.Context) (int, bool) {
	v := c.Query("limit")
	if v == "" {
		return 0, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > store.MaxListLimit {
		writeError(c, http.StatusBadRequest, fmt.Sprintf("limit: must be an integer from 1 to %d", store.MaxListLimit))
		return 0, false
	}
	return n, true
}

var runStatuses = []string{wire.RunScheduled, wire.RunRunning, wire.RunCompleted, wire.RunFailed, wire.RunCancelled, wire.RunSkipped}

// handleListRuns lists runs, newest first: GET /v1/runs?function_id=&status=&limit=&cursor=.
func (s *Server) handleListRuns(c *gin.Context) {
	app, fn, err := functionParam(c.Query("function_id"), true)
	if err != nil {
		writeError(c, http.StatusBadRequest, "function_id: "+err.Error())
		return
	}
	f := store.RunFilter{AppID: app, FunctionID: fn, Cursor: c.Query("cursor")}
	if st := c.Query("status"); st != "" {
		for _, one := range strings.Split(st, ",") {
			if !slices.Contains(runStatuses, one) {
				writeError(c, http.StatusBadRequest, "status: must be one or more of "+strings.Join(runStatuses, ", ")+", separated by commas")
				return
			}
			f.Statuses = append(f.Statuses, one)
		}
	}
	var ok bool
	if f.Limit, ok = limitParam(c); !ok {
		return
	}
	runs, next, err := s.cfg.Store.ListRuns(c.Request.Context(), f)
	if !s.listed(c, err) {
		return
	}
	out := make([]RunJSON, len(runs))
	for i, r := range runs {
		out[i] = toRunJSON(r)
	}
	c.JSON(http.StatusOK, gin.H{"data": out, "cursor": next})
}

// handleListWaits lists pending waits, newest first: GET /v1/waits.
func (s *Server) handleListWaits(c *gin.Context) {
	app, fn, err := functionParam(c.Query("function_id"), true)
	if err != nil {
		writeError(c, http.StatusBadRequest, "function_id: "+err.Error())
		return
	}
	f := store.WaitFilter{AppID: app, FunctionID: fn, Cursor: c.Query("cursor")}
	var ok bool
	if f.Limit, ok = limitParam(c); !ok {
		return
	}
	ws, next, err := s.cfg.Store.ListWaits(c.Request.Context(), f, time.Now())
	if !s.listed(c, err) {
		return
	}
	out := make([]WaitJSON, len(ws))
	for i, w := range ws {
		out[i] = WaitJSON{ID: w.ID, Kind: w.Kind, AppID: w.AppID, FunctionID: w.FunctionID, RunID: w.RunID, WorkflowID: w.WorkflowID,
			StepID: w.StepID, EventName: w.EventName, MatchPath: w.MatchPath, MatchValue: w.MatchValue, If: w.Expr,
			ExpiresAt: w.ExpiresAt.UTC(), CreatedAt: w.CreatedAt.UTC()}
	}
	c.JSON(http.StatusOK, gin.H{"data": out, "cursor": next})
}

// handlePause pauses or resumes a function:
// POST /v1/functions/{app}/{function}/pause, with an optional
// {"cancel_running":true}, and .../resume.
func (s *Server) handlePause(paused bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		if s.cfg.Registry == nil {
			writeError(c, http.StatusServiceUnavailable, "this server has no function registry")
			return
		}
		var body struct {
			CancelRunning bool `json:"cancel_running"`
		}
		if c.Request.ContentLength != 0 {
			if err := decodeJSONBody(c, &body, s.limits.MaxBodyBytes); err != nil {
				writeError(c, http.StatusBadRequest, "pause body: "+err.Error())
				return
			}
		}
		if body.CancelRunning && !paused {
			writeError(c, http.StatusBadRequest, "cancel_running: only a pause cancels running runs")
			return
		}
		app, fn := c.Param("app"), c.Param("function")
		f, err := s.cfg.Registry.SetPaused(c.Request.Context(), app, fn, paused)
		if errors.Is(err, store.ErrNotFound) {
			writeError(c, http.StatusNotFound, fmt.Sprintf("no function %s/%s; GET /v1/functions lists them", app, fn))
			return
		}
		if err != nil {
			s.log.Error("pausing a function failed", "function", app+"/"+fn, "paused", paused, "err", err)
			writeError(c, http.StatusServiceUnavailable, "the pause was stored, but its cron schedules could not all be changed; retry: "+err.Error())
			return
		}
		out := gin.H{"data": toFunctionJSON(f)}
		if body.CancelRunning {
			now := time.Now().UTC()
			job := store.Cancellation{ID: ulid.Make().String(), AppID: app, FunctionID: fn, StartedBefore: now.Add(time.Millisecond),
				Status: store.JobRunning, CreatedAt: now, UpdatedAt: now, Owner: newLeaseOwner(), HeartbeatAt: now}
			if err := s.cfg.Store.SaveCancellation(c.Request.Context(), job); err != nil {
				s.storeError(c, err)
				return
			}
			s.startCancellation(job)
			out["cancellation"] = toCancellationJSON(job)
		}
		c.JSON(http.StatusOK, out)
	}
}

// handleRerun starts a run again: from the start, as a new run for the same
// event(s), or, with {"from_step":"<id>"}, by resetting its workflow to that
// step, keeping the results of the steps before it.
func (s *Server) handleRerun(c *gin.Context) {
	run, ok := s.runParam(c)
	if !ok {
		return
	}
	var body struct {
		FromStep string `json:"from_step"`
	}
	if c.Request.ContentLength != 0 {
		if err := decodeJSONBody(c, &body, s.limits.MaxBodyBytes); err != nil {
			writeError(c, http.StatusBadRequest, "rerun body: "+err.Error())
			return
		}
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), 30*time.Second)
	defer cancel()
	if body.FromStep != "" {
		s.rerunFromStep(ctx, c, run, body.FromStep)
		return
	}
	if s.cfg.Replayer == nil {
		writeError(c, http.StatusServiceUnavailable, "this server does not start runs")
		return
	}
	events, err := s.runEvents(ctx, run)
	if err != nil {
		s.storeError(c, err)
		return
	}
	if len(events) == 0 {
		writeError(c, http.StatusConflict, fmt.Sprintf("run %s has no stored event (a cron run, or its event was purged); rerun it from a step instead", run.ID))
		return
	}
	now := time.Now().UTC()
	nr, err := s.cfg.Replayer.StartReplay(ctx, router.Replay{Function: run.AppID + "/" + run.FunctionID, Events: events,
		ReplayOf: run.ID, Key: "rerun/" + ulid.Make().String(), At: now})
	if s.replayStartFailed(c, err) {
		s.abandonRun(ctx, nr, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"data": toRunJSON(nr)})
}

// replayStartFailed answers for a failed replay start; it reports whether
// there was one.
func (s *Server) replayStartFailed(c *gin.Context, err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, router.ErrNoFunction):
		writeError(c, http.StatusConflict, "the run's function is no longer synced")
	case errors.Is(err, router.ErrPaused):
		writeError(c, http.StatusConflict, "the function is paused: resume it first")
	default:
		s.log.Warn("starting a rerun failed", "err", err)
		writeError(c, http.StatusServiceUnavailable, "Temporal or the store did not accept the run; retry: "+err.Error())
	}
	return true
}

// abandonRun records a replayed run whose workflow could not be started as
// Skipped, with the reason, so it does not look Running forever.
func (s *Server) abandonRun(ctx context.Context, r store.Run, cause error) {
	if r.ID == "" {
		return
	}
	now := time.Now()
	r.Status, r.Error, r.EndedAt = wire.RunSkipped, "skipped: the run could not be started: "+cause.Error(), &now
	if err := s.cfg.Store.FinishRun(context.WithoutCancel(ctx), r, nil); err != nil {
		s.log.Error("recording an unstarted run as skipped failed", "run_id", r.ID, "err", err)
	}
}

func (s *Server) rerunFromStep(ctx context.Context, c *gin.Context, run store.Run, step string) {
	if s.cfg.Resetter == nil {
		writeError(c, http.StatusServiceUnavailable, "Temporal is not configured")
		return
	}
	if run.Status == wire.RunSkipped {
		writeError(c, http.StatusConflict, fmt.Sprintf("run %s was skipped (%s): it never started, so it has no steps; rerun it from the start", run.ID, run.Error))
		return
	}
	// Running again before the reset, so the reset execution's outcome is
	// recorded even if it ends before this handler returns.
	if err := s.cfg.Store.ReopenRun(ctx, run.ID); err != nil {
		s.storeError(c, err)
		return
	}
	_, err := s.cfg.Resetter.ResetToStep(ctx, run.WorkflowID, step, "rerun from step "+step+" through Herald")
	if err != nil {
		// Put the outcome back: nothing was reset.
		if wire.RunFinished(run.Status) {
			restore := run
			if restore.EndedAt == nil {
				now := time.Now()
				restore.EndedAt = &now
			}
			if rerr := s.cfg.Store.FinishRun(context.WithoutCancel(ctx), restore, nil); rerr != nil {
				s.log.Error("restoring a run after a failed reset failed", "run_id", run.ID, "err", rerr)
			}
		}
		var unknown *temporalx.UnknownStepError
		switch {
		case errors.As(err, &unknown):
			c.AbortWithStatusJSON(http.StatusBadRequest, gin.H{"status": 400, "error": "from_step: " + unknown.Error(), "steps": orEmpty(unknown.Steps)})
		case errors.Is(err, temporalx.ErrNotFound):
			writeError(c, http.StatusConflict, "the run's workflow history is gone from Temporal (past its retention); rerun it from the start instead")
		default:
			s.log.Warn("reset failed", "run_id", run.ID, "step", step, "err", err)
			writeError(c, http.StatusServiceUnavailable, "Temporal did not reset the run; retry: "+err.Error())
		}
		return
	}
	nr, err := s.cfg.Store.GetRun(ctx, run.ID)
	if err != nil {
		s.storeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"data": toRunJSON(nr)})
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// runEvents loads the events a run ran for: its own first, then the rest of
// its batch. Purged events are left out.
func (s *Server) runEvents(ctx context.Context, run store.Run) ([]store.Event, error) {
	ids, err := s.cfg.Store.RunEventIDs(ctx, run.ID)
	if err != nil {
		return nil, err
	}
	events := make([]store.Event, 0, len(ids))
	for _, id := range ids {
		e, err := s.cfg.Store.GetEvent(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		events = append(events, e)
	}
	return events, nil
}
