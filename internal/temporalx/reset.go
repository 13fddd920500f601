package temporalx

import (
	"context"
	"errors"
	"fmt"
	"strings"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
)

// UnknownStepError is returned by ResetToStep for a step the run never
// scheduled; Steps lists those it did, in order.
type UnknownStepError struct {
	Step  string
	Steps []string
}

func (e *UnknownStepError) Error() string {
	return fmt.Sprintf("the run has no step %q; its steps are: %s", e.Step, strings.Join(e.Steps, ", "))
}

// ResetToStep resets the current execution of workflowID to the workflow
// task that scheduled step (a step.Run: the activity whose id is the step
// id) for the first time. The new execution keeps the results of every step
// before it and runs that step and the rest again. Activity types named
// "herald.*" are Herald's own, not steps. It returns the new execution's run
// id, or an *UnknownStepError.
func (t *Client) ResetToStep(ctx context.Context, workflowID, step, reason string) (string, error) {
	it := t.c.GetWorkflowHistory(ctx, workflowID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var (
		steps []string
		seen  = map[string]bool{}
		point int64
	)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			var nf *serviceerror.NotFound
			if errors.As(err, &nf) {
				return "", fmt.Errorf("history of %s: %w", workflowID, ErrNotFound)
			}
			return "", fmt.Errorf("history of %s: %w", workflowID, err)
		}
		a := ev.GetActivityTaskScheduledEventAttributes()
		if a == nil || strings.HasPrefix(a.GetActivityType().GetName(), "herald.") {
			continue
		}
		id := a.GetActivityId()
		if !seen[id] {
			seen[id] = true
			steps = append(steps, id)
		}
		if id == step && point == 0 {
			point = a.GetWorkflowTaskCompletedEventId()
		}
	}
	if point == 0 {
		return "", &UnknownStepError{Step: step, Steps: steps}
	}
	resp, err := t.c.ResetWorkflowExecution(ctx, &workflowservice.ResetWorkflowExecutionRequest{
		Namespace:                 t.namespace,
		WorkflowExecution:         &commonpb.WorkflowExecution{WorkflowId: workflowID},
		Reason:                    reason,
		WorkflowTaskFinishEventId: point,
	})
	if err != nil {
		return "", fmt.Errorf("reset %s to step %q: %w", workflowID, step, err)
	}
	return resp.GetRunId(), nil
}
