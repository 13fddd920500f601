package ingest

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/oklog/ulid/v2"

	"github.com/herald-run/herald/internal/wire"
	"github.com/herald-run/herald/store"
	"github.com/herald-run/herald/triggers"
)

// handleRegisterWait registers a step.WaitForEvent. Events accepted since the
// run's trigger may already be stored (even dispatched) by now; they are
// checked here, so no event between the trigger and the registration is lost.
func (s *Server) handleRegisterWait(c *gin.Context) {
	var reg wire.WaitRegister
	if err := decodeJSONBody(c, &reg, s.limits.MaxBodyBytes); err != nil {
		writeError(c, http.StatusBadRequest, "wait body: "+err.Error())
		return
	}
	w, err := s.buildWait(reg)
	if err != nil {
		writeError(c, http.StatusBadRequest, err.Error())
		return
	}
	ctx := c.Request.Context()
	stored, err := s.cfg.Store.RegisterWait(ctx, w)
	if err != nil {
		s.storeError(c, err)
		return
	}
	if stored.ResolvedAt != nil {
		// A retried registration: the wait was resolved meanwhile.
		s.replyWait(c, stored.ID, stored.ResolvedBy)
		return
	}
	// An event of that name accepted since the wait's start may already be
	// stored, even dispatched: look for it.
	eventID, won, err := s.waits.CatchUp(ctx, s.cfg.Store, stored)
	if err != nil {
		s.storeError(c, err)
		return
	}
	if won {
		s.replyWait(c, stored.ID, eventID)
		return
	}
	// None, or the router resolved it first and signals the run.
	c.JSON(http.StatusOK, wire.WaitRegistered{WaitID: stored.ID})
}

func (s *Server) replyWait(c *gin.Context, waitID, eventID string) {
	e, err := s.cfg.Store.GetEvent(c.Request.Context(), eventID)
	if errors.Is(err, store.ErrNotFound) {
		c.JSON(http.StatusOK, wire.WaitRegistered{WaitID: waitID})
		return
	}
	if err != nil {
		s.storeError(c, err)
		return
	}
	c.JSON(http.StatusOK, wire.WaitRegistered{WaitID: waitID, Event: &wire.Event{ID: e.ID, Name: e.Name, Data: e.Data, TS: e.TS, V: e.V}})
}

// buildWait validates a registration and binds the triggering event's value
// into the wait's indexed key.
func (s *Server) buildWait(reg wire.WaitRegister) (store.Wait, error) {
	switch {
	case reg.AppID == "" || reg.FunctionID == "" || reg.RunID == "" || reg.WorkflowID == "" || reg.StepID == "":
		return store.Wait{}, errors.New("app_id, function_id, run_id, workflow_id and step_id are required")
	case reg.ExpiresAtMS <= 0:
		return store.Wait{}, errors.New("expires_at_ms is required")
	}
	if err := triggers.ValidateName(reg.Event); err != nil {
		return store.Wait{}, fmt.Errorf("event: %w", err)
	}
	trig, err := jsonEvent(reg.TriggerEvent)
	if err != nil {
		return store.Wait{}, err
	}
	w := store.Wait{
		ID: ulid.Make().String(), Kind: store.WaitKindWait,
		AppID: reg.AppID, FunctionID: reg.FunctionID, RunID: reg.RunID, WorkflowID: reg.WorkflowID,
		StepID: reg.StepID, EventName: reg.Event, Expr: reg.If, TriggerEvent: trig,
		Since: time.UnixMilli(reg.SinceMS).UTC(), ExpiresAt: time.UnixMilli(reg.ExpiresAtMS).UTC(),
		CreatedAt: time.Now().UTC(),
	}
	if reg.If != "" {
		if _, err := s.waits.Env().Cached(reg.If); err != nil {
			return store.Wait{}, fmt.Errorf("if: %w", err)
		}
	}
	if reg.Match != "" {
		if err := triggers.ValidatePath(reg.Match); err != nil {
			return store.Wait{}, err
		}
	}
	act, err := triggers.EventActivation(reg.TriggerEvent.Name, reg.TriggerEvent.Data, reg.TriggerEvent.ID, reg.TriggerEvent.TS, reg.TriggerEvent.V)
	if err != nil && reg.Match != "" {
		return store.Wait{}, fmt.Errorf("trigger_event: %w", err)
	}
	k, ok := s.waits.BindKey(reg.Match, reg.If, act)
	if !ok {
		return store.Wait{}, fmt.Errorf("match %q: the triggering event has no value there, so no event could match", reg.Match)
	}
	w.MatchPath, w.MatchValue = k.Path, k.Value
	return w, nil
}
