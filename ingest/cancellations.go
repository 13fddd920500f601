package ingest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/oklog/ulid/v2"

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
		Expr: body.If, Status: "Running", CreatedAt: now, UpdatedAt: now}
	if err := s.cfg.Store.SaveCancellation(c.Request.Context(), job); err != nil {
		s.storeError(c, err)
		return
	}
	s.background.Add(1)
	go func() {
		defer s.background.Done()
		s.runCancellation(s.bgCtx, job)
	}()
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

// runCancellation walks the function's active runs, evaluates the condition
// against each run's triggering event and cancels the matching ones, saving
// its counts as it goes.
func (s *Server) runCancellation(ctx context.Context, job store.Cancellation) {
	fail := func(err error) {
		job.Status, job.Error, job.UpdatedAt = "Failed", err.Error(), time.Now().UTC()
		_ = s.cfg.Store.SaveCancellation(context.WithoutCancel(ctx), job)
		s.log.Error("bulk cancellation failed", "id", job.ID, "err", err)
	}
	if s.cfg.Temporal == nil {
		fail(errors.New("no Temporal client is configured"))
		return
	}
	var prg *triggers.Program
	if job.Expr != "" {
		var err error
		if prg, err = s.triggerEnv.Cached(job.Expr); err != nil {
			fail(err)
			return
		}
	}
	afterID := ""
	for {
		runs, err := s.cfg.Store.ListActiveRuns(ctx, job.AppID, job.FunctionID, job.StartedAfter, job.StartedBefore, afterID, 200)
		if err != nil {
			fail(err)
			return
		}
		for _, r := range runs {
			afterID = r.ID
			if prg != nil {
				e, err := s.cfg.Store.GetEvent(ctx, r.EventID)
				if err != nil {
					continue // no triggering event (a cron run): the condition cannot hold
				}
				act, err := triggers.EventActivation(e.Name, e.Data, e.ID, e.TS, e.V)
				if err != nil {
					continue
				}
				ectx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
				ok, err := prg.Eval(ectx, act)
				cancel()
				if err != nil || !ok {
					continue
				}
			}
			job.Matched++
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := s.cfg.Temporal.Cancel(cctx, r.WorkflowID)
			cancel()
			if err == nil {
				job.Cancelled++
			} else {
				s.log.Warn("bulk cancellation: cancel failed", "id", job.ID, "run_id", r.ID, "err", err)
			}
		}
		job.UpdatedAt = time.Now().UTC()
		if len(runs) < 200 {
			job.Status = "Completed"
		}
		if err := s.cfg.Store.SaveCancellation(context.WithoutCancel(ctx), job); err != nil {
			s.log.Error("bulk cancellation: saving progress failed", "id", job.ID, "err", err)
		}
		if job.Status == "Completed" || ctx.Err() != nil {
			return
		}
	}
}
