package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/oklog/ulid/v2"

	"github.com/herald-run/herald/internal/wire"
	"github.com/herald-run/herald/registry"
	"github.com/herald-run/herald/store"
)

// RunJSON is a run as the REST API returns it.
type RunJSON struct {
	RunID      string          `json:"run_id"`
	AppID      string          `json:"app_id"`
	FunctionID string          `json:"function_id"`
	EventID    string          `json:"event_id"`
	WorkflowID string          `json:"workflow_id"`
	Status     string          `json:"status"`
	Output     json.RawMessage `json:"output"`
	Error      string          `json:"error,omitempty"`
	StartedAt  time.Time       `json:"started_at"`
	EndedAt    *time.Time      `json:"ended_at"`
	// ReplayOf is the run this one repeats (a replay or a rerun); ReplayID
	// the replay job that started it.
	ReplayOf string `json:"replay_of,omitempty"`
	ReplayID string `json:"replay_id,omitempty"`
}

func toRunJSON(r store.Run) RunJSON {
	out := RunJSON{RunID: r.ID, AppID: r.AppID, FunctionID: r.FunctionID, EventID: r.EventID, WorkflowID: r.WorkflowID,
		Status: r.Status, Output: r.Output, Error: r.Error, StartedAt: r.StartedAt.UTC(), EndedAt: r.EndedAt,
		ReplayOf: r.ReplayOf, ReplayID: r.ReplayID}
	if len(out.Output) == 0 {
		out.Output = json.RawMessage("null")
	}
	return out
}

func (s *Server) handleEventRuns(c *gin.Context) {
	id := c.Param("id")
	if _, err := s.cfg.Store.GetEvent(c.Request.Context(), id); errors.Is(err, store.ErrNotFound) {
		writeError(c, http.StatusNotFound, fmt.Sprintf("no event with id %q", id))
		return
	} else if err != nil {
		s.storeError(c, err)
		return
	}
	runs, err := s.cfg.Store.ListRunsByEvent(c.Request.Context(), id)
	if err != nil {
		s.storeError(c, err)
		return
	}
	out := make([]RunJSON, len(runs))
	for i, r := range runs {
		out[i] = toRunJSON(r)
	}
	c.JSON(http.StatusOK, gin.H{"data": out})
}

// runParam loads the run named by the :id parameter, answering 404 or 503
// itself when it cannot.
func (s *Server) runParam(c *gin.Context) (store.Run, bool) {
	r, err := s.cfg.Store.GetRun(c.Request.Context(), c.Param("id"))
	if errors.Is(err, store.ErrNotFound) {
		writeError(c, http.StatusNotFound, fmt.Sprintf("no run with id %q", c.Param("id")))
		return r, false
	}
	if err != nil {
		s.storeError(c, err)
		return r, false
	}
	return r, true
}

func (s *Server) handleGetRun(c *gin.Context) {
	if r, ok := s.runParam(c); ok {
		c.JSON(http.StatusOK, gin.H{"data": toRunJSON(r)})
	}
}

func (s *Server) handleCancelRun(c *gin.Context) {
	r, ok := s.runParam(c)
	if !ok {
		return
	}
	if wire.RunFinished(r.Status) {
		writeError(c, http.StatusConflict, fmt.Sprintf("run %s already ended with status %s", r.ID, r.Status))
		return
	}
	if s.cfg.Temporal == nil {
		writeError(c, http.StatusServiceUnavailable, "Temporal is not configured")
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), 10*time.Second)
	defer cancel()
	if err := s.cfg.Temporal.Cancel(ctx, r.WorkflowID); err != nil {
		s.log.Warn("cancel run failed", "run_id", r.ID, "err", err)
		writeError(c, http.StatusServiceUnavailable, "Temporal did not accept the cancellation; retry: "+err.Error())
		return
	}
	c.JSON(http.StatusOK, gin.H{"data": gin.H{"run_id": r.ID, "status": "Cancelling"}})
}

// FunctionJSON is a function as the REST API returns it.
type FunctionJSON struct {
	ID        string               `json:"id"`
	AppID     string               `json:"app_id"`
	Slug      string               `json:"function_id"`
	Name      string               `json:"name"`
	Version   int                  `json:"version"`
	Triggers  []wire.TriggerConfig `json:"triggers"`
	Retries   int                  `json:"retries"`
	UpdatedAt time.Time            `json:"updated_at"`
	// Paused says whether the function is paused, and PausedAt since when.
	Paused   bool       `json:"paused"`
	PausedAt *time.Time `json:"paused_at"`
	// Config is the function's whole configuration as synced: triggers,
	// flow control, cancelOn, timeouts.
	Config wire.FunctionConfig `json:"config"`
}

func toFunctionJSON(f store.Function) FunctionJSON {
	var fc wire.FunctionConfig
	_ = json.Unmarshal(f.Config, &fc)
	name := fc.Name
	if name == "" {
		name = f.ID
	}
	out := FunctionJSON{ID: f.AppID + "/" + f.ID, AppID: f.AppID, Slug: f.ID, Name: name,
		Version: f.Version, Triggers: fc.Triggers, Retries: fc.Retries, UpdatedAt: f.UpdatedAt.UTC(), Paused: f.PausedAt != nil,
		Config: fc}
	if f.PausedAt != nil {
		at := f.PausedAt.UTC()
		out.PausedAt = &at
	}
	return out
}

func (s *Server) handleListFunctions(c *gin.Context) {
	fns, err := s.cfg.Store.ListFunctions(c.Request.Context())
	if err != nil {
		s.storeError(c, err)
		return
	}
	out := make([]FunctionJSON, 0, len(fns))
	for _, f := range fns {
		out = append(out, toFunctionJSON(f))
	}
	c.JSON(http.StatusOK, gin.H{"data": out})
}

func (s *Server) handleSync(c *gin.Context) {
	if s.cfg.Registry == nil {
		writeError(c, http.StatusServiceUnavailable, "this server has no function registry")
		return
	}
	var req wire.SyncRequest
	if err := decodeJSONBody(c, &req, s.limits.MaxBodyBytes); err != nil {
		writeError(c, http.StatusBadRequest, "sync body: "+err.Error())
		return
	}
	res, err := s.cfg.Registry.Sync(c.Request.Context(), c.Param("app"), req)
	var invalid *registry.InvalidConfigError
	if errors.As(err, &invalid) {
		c.AbortWithStatusJSON(http.StatusBadRequest, gin.H{"status": 400, "error": "invalid app configuration", "problems": invalid.Problems})
		return
	}
	if err != nil {
		s.log.Error("sync failed", "app", c.Param("app"), "err", err)
		writeError(c, http.StatusServiceUnavailable, "sync failed; retry: "+err.Error())
		return
	}
	s.notify()
	c.JSON(http.StatusOK, res)
}

// handleInvoke stores a herald/function.invoked event addressed to one
// function; the router starts that function with the event's data.
func (s *Server) handleInvoke(c *gin.Context) {
	fnKey := strings.TrimPrefix(c.Param("function_id"), "/")
	if s.cfg.Registry == nil {
		writeError(c, http.StatusServiceUnavailable, "this server has no function registry")
		return
	}
	snap, err := s.cfg.Registry.Snapshot(c.Request.Context())
	if err != nil {
		s.storeError(c, err)
		return
	}
	fn := snap.Functions[fnKey]
	if fn == nil {
		writeError(c, http.StatusNotFound, fmt.Sprintf("no function %q: use <app>/<function id> as listed by GET /v1/functions", fnKey))
		return
	}
	var body struct {
		Data json.RawMessage `json:"data"`
		ID   string          `json:"id"`
	}
	if c.Request.ContentLength != 0 {
		if err := decodeJSONBody(c, &body, s.limits.MaxBodyBytes); err != nil {
			writeError(c, http.StatusBadRequest, "invoke body: "+err.Error())
			return
		}
	}
	if len(body.Data) == 0 || string(body.Data) == "null" {
		body.Data = json.RawMessage(`{}`)
	}
	if body.Data[0] != '{' {
		writeError(c, http.StatusBadRequest, "data: must be a JSON object")
		return
	}
	// The same rules as an event sent to /e (id, data's depth and contents).
	probe, _ := json.Marshal(map[string]any{"name": "invoke/check", "id": body.ID, "data": body.Data})
	if body.ID == "" {
		probe, _ = json.Marshal(map[string]any{"name": "invoke/check", "data": body.Data})
	}
	if _, err := DecodeEvents(probe, s.limits, time.Now()); err != nil {
		writeError(c, http.StatusBadRequest, strings.TrimPrefix(err.Error(), "event 0: "))
		return
	}
	data, _ := json.Marshal(map[string]any{"function_id": fnKey, "data": body.Data})
	now := time.Now().UTC().Truncate(time.Millisecond)
	e := store.Event{ID: body.ID, Name: wire.EventFunctionInvoked, Data: data, TS: now.UnixMilli(), ReceivedAt: now}
	if e.ID == "" {
		e.ID, e.Fresh = ulid.Make().String(), true
	}
	if _, err := s.committer.Commit(c.Request.Context(), []store.Event{e}); err != nil {
		s.commitFailed(c, err)
		return
	}
	s.notify()
	c.JSON(http.StatusOK, gin.H{"ids": []string{e.ID}, "run_id": wire.RunID(fn.AppID, fn.ID, e.ID, e.ReceivedAt), "status": 200})
}

// handleFinishRun records a run's outcome, reported by the function wrapper,
// and stores its herald/function.* system event in the same transaction.
func (s *Server) handleFinishRun(c *gin.Context) {
	var fin wire.RunFinish
	if err := decodeJSONBody(c, &fin, s.limits.MaxBodyBytes); err != nil {
		writeError(c, http.StatusBadRequest, "finish body: "+err.Error())
		return
	}
	runID := c.Param("id")
	var name string
	switch fin.Status {
	case wire.RunCompleted:
		name = wire.EventFunctionFinished
	case wire.RunFailed:
		name = wire.EventFunctionFailed
	case wire.RunCancelled:
		name = wire.EventFunctionCancelled
	default:
		writeError(c, http.StatusBadRequest, "status: must be Completed, Failed or Cancelled")
		return
	}
	if fin.AppID == "" || fin.FunctionID == "" || fin.WorkflowID == "" || fin.Event.ID == "" {
		writeError(c, http.StatusBadRequest, "app_id, function_id, workflow_id and event.id are required")
		return
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	output := fin.Output
	if len(output) == 0 || string(output) == "null" {
		output = nil
	}
	run := store.Run{ID: runID, AppID: fin.AppID, FunctionID: fin.FunctionID, EventID: fin.Event.ID, WorkflowID: fin.WorkflowID,
		Status: fin.Status, Output: output, Error: fin.Error, StartedAt: now, EndedAt: &now}
	var sys *store.Event
	if fin.Emit {
		payload := map[string]any{
			"function_id": fin.AppID + "/" + fin.FunctionID,
			"run_id":      runID,
			"event":       fin.Event,
		}
		if fin.Status == wire.RunCompleted {
			payload["result"] = json.RawMessage(orNull(output))
		} else {
			payload["error"] = fin.Error
		}
		data, err := json.Marshal(payload)
		if err != nil {
			writeError(c, http.StatusBadRequest, "finish body: "+err.Error())
			return
		}
		id := wire.DerivedEventID(runID, name)
		if fin.Execution != "" {
			id = wire.DerivedEventID(runID, name, fin.Execution)
		}
		sys = &store.Event{ID: id, Name: name, Data: data, TS: now.UnixMilli(), ReceivedAt: now}
	}
	if err := s.cfg.Store.FinishRun(c.Request.Context(), run, sys); err != nil {
		if errors.Is(err, store.ErrInvalidData) {
			s.log.Warn("the store refused a run's outcome", "run_id", runID, "err", err)
			writeError(c, http.StatusBadRequest, "the store refused the run's output or error; nothing was recorded")
			return
		}
		s.storeError(c, err)
		return
	}
	if sys != nil {
		s.notify()
	}
	c.JSON(http.StatusOK, gin.H{"status": 200})
}

func orNull(raw json.RawMessage) []byte {
	if len(raw) == 0 {
		return []byte("null")
	}
	return raw
}

func decodeJSONBody(c *gin.Context, out any, limit int64) error {
	dec := json.NewDecoder(http.MaxBytesReader(c.Writer, c.Request.Body, limit))
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("not valid JSON for this request: %v", err)
	}
	return nil
}

func jsonEvent(e wire.Event) (json.RawMessage, error) {
	raw, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("trigger_event: %w", err)
	}
	return raw, nil
}
