package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

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
	paused bool
}

// reconcileSchedules makes the app's Temporal Schedules match its cron
// triggers: creates missing ones, updates existing ones, deletes those of
// removed triggers or functions. It returns how many schedules the app has.
// Schedules of paused functions stay paused.
func (r *Registry) reconcileSchedules(ctx context.Context, appID string, req wire.SyncRequest, previous []wire.FunctionConfig, paused map[string]bool) (int, error) {
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
			desired[id] = desiredSchedule{id: id, fn: f, spec: spec, source: t.Cron, paused: paused[f.ID]}
		}
	}
	for _, d := range desired {
		if err := r.cfg.Temporal.UpsertSchedule(ctx, schedule(appID, req.TaskQueue, d)); err != nil {
			return 0, fmt.Errorf("registry: %w", err)
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
			if err := r.cfg.Temporal.DeleteSchedule(ctx, id); err != nil {
				return 0, fmt.Errorf("registry: %w", err)
			}
		}
	}
	return len(desired), nil
}

// schedule is the Temporal Schedule of one cron trigger.
func schedule(appID, taskQueue string, d desiredSchedule) temporalx.Schedule {
	cron := d.spec.Expr
	if d.spec.TimeZone != "" {
		cron = "CRON_TZ=" + d.spec.TimeZone + " " + d.spec.Expr
	}
	data, _ := json.Marshal(map[string]string{"cron": d.source})
	return temporalx.Schedule{
		ID:           d.id,
		Cron:         cron,
		WorkflowID:   "herald-cron/" + appID + "/" + d.fn.ID,
		WorkflowType: d.fn.ID,
		TaskQueue:    taskQueue,
		Input: wire.RunRequest{
			AppID:      appID,
			FunctionID: d.fn.ID,
			Event:      wire.Event{Name: wire.EventScheduledTimer, Data: data},
			Report:     wire.ReportLocal,
		},
		App:           appID,
		Function:      d.fn.ID,
		EventName:     wire.EventScheduledTimer,
		Summary:       "cron " + d.source,
		CatchupWindow: CatchupWindow,
		Note:          "managed by Herald: changed on every app sync",
		Paused:        d.paused,
	}
}

// cronScheduleIDs returns the ids of a function's cron schedules.
func cronScheduleIDs(appID string, fn wire.FunctionConfig) []string {
	var ids []string
	for i, t := range fn.Triggers {
		if t.Cron != "" {
			ids = append(ids, ScheduleID(appID, fn.ID, i))
		}
	}
	return ids
}
