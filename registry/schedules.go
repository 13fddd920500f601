package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/herald-run/herald/internal/temporalx"
	"github.com/herald-run/herald/internal/wire"
	"github.com/herald-run/herald/triggers"
)

// CatchupWindow is how late a missed cron run may still start (after a
// Temporal outage, say). Temporal's default is a year, which would replay a
// long outage's worth of runs.
const CatchupWindow = time.Minute

// ScheduleID names the Temporal Schedule of a function's cron trigger.
func ScheduleID(appID, fnID string, trigger int) string {
	return fmt.Sprintf("herald-cron/%s/%s/%d", appID, fnID, trigger)
}

type desiredSchedule struct {
	id     string
	fn     wire.FunctionConfig
	spec   triggers.CronSpec
	source string
}

// reconcileSchedules makes the app's Temporal Schedules match its cron
// triggers: creates missing ones, updates existing ones, deletes those of
// removed triggers or functions. It returns how many schedules the app has.
func (r *Registry) reconcileSchedules(ctx context.Context, appID string, req wire.SyncRequest, previous []wire.FunctionConfig) (int, error) {
	sc := r.cfg.Temporal.ScheduleClient()
	desired := map[string]desiredSchedule{}
	for _, f := range req.Functions {
		for i, t := range f.Triggers {
			if t.Cron == "" {
				continue
			}
			spec, err := triggers.ParseCron(t.Cron) // validated already
			if err != nil {
				return 0, err
			}
			id := ScheduleID(appID, f.ID, i)
			desired[id] = desiredSchedule{id: id, fn: f, spec: spec, source: t.Cron}
		}
	}
	for _, d := range desired {
		if err := r.upsertSchedule(ctx, sc, appID, req.TaskQueue, d); err != nil {
			return 0, err
		}
	}
	// Delete the schedules of triggers that existed before this sync and not now.
	for _, f := range previous {
		for i, t := range f.Triggers {
			if t.Cron == "" {
				continue
			}
			id := ScheduleID(appID, f.ID, i)
			if _, keep := desired[id]; keep {
				continue
			}
			err := sc.GetHandle(ctx, id).Delete(ctx)
			var nf *serviceerror.NotFound
			if err != nil && !errors.As(err, &nf) {
				return 0, fmt.Errorf("registry: delete schedule %s: %w", id, err)
			}
		}
	}
	return len(desired), nil
}

func (r *Registry) upsertSchedule(ctx context.Context, sc client.ScheduleClient, appID, taskQueue string, d desiredSchedule) error {
	cron := d.spec.Expr
	if d.spec.TimeZone != "" {
		cron = "CRON_TZ=" + d.spec.TimeZone + " " + d.spec.Expr
	}
	spec := client.ScheduleSpec{CronExpressions: []string{cron}}
	data, _ := json.Marshal(map[string]string{"cron": d.source})
	action := &client.ScheduleWorkflowAction{
		ID:        "herald-cron/" + appID + "/" + d.fn.ID,
		Workflow:  d.fn.ID,
		TaskQueue: taskQueue,
		Args: []any{wire.RunRequest{
			AppID:      appID,
			FunctionID: d.fn.ID,
			Event:      wire.Event{Name: wire.EventScheduledTimer, Data: data},
		}},
		TypedSearchAttributes: temporal.NewSearchAttributes(
			temporalx.AttrApp.ValueSet(appID),
			temporalx.AttrFunction.ValueSet(d.fn.ID),
			temporalx.AttrEventName.ValueSet(wire.EventScheduledTimer),
		),
		StaticSummary: "cron " + d.source,
	}
	h := sc.GetHandle(ctx, d.id)
	if _, err := h.Describe(ctx); err != nil {
		var nf *serviceerror.NotFound
		if !errors.As(err, &nf) {
			return fmt.Errorf("registry: describe schedule %s: %w", d.id, err)
		}
		_, err := sc.Create(ctx, client.ScheduleOptions{
			ID:            d.id,
			Spec:          spec,
			Action:        action,
			Overlap:       enumspb.SCHEDULE_OVERLAP_POLICY_SKIP,
			CatchupWindow: CatchupWindow,
			Note:          "managed by Herald: changed on every app sync",
		})
		if err != nil && !errors.Is(err, temporal.ErrScheduleAlreadyRunning) {
			return fmt.Errorf("registry: create schedule %s: %w", d.id, err)
		}
		return nil
	}
	err := h.Update(ctx, client.ScheduleUpdateOptions{
		DoUpdate: func(in client.ScheduleUpdateInput) (*client.ScheduleUpdate, error) {
			s := in.Description.Schedule
			s.Spec = &spec
			s.Action = action
			if s.Policy == nil {
				s.Policy = &client.SchedulePolicies{}
			}
			s.Policy.Overlap = enumspb.SCHEDULE_OVERLAP_POLICY_SKIP
			s.Policy.CatchupWindow = CatchupWindow
			return &client.ScheduleUpdate{Schedule: &s}, nil
		},
	})
	if err != nil {
		return fmt.Errorf("registry: update schedule %s: %w", d.id, err)
	}
	return nil
}
