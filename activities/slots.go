package activities

import (
	"context"
	"fmt"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/herald-run/herald/internal/wire"
)

// Slots asks Herald's semaphore workflows for concurrency slots.
type Slots struct {
	// Temporal is the worker's Temporal client.
	Temporal client.Client
}

// AcquireSlotInput is the input of Acquire.
type AcquireSlotInput struct {
	Slot    wire.Slot        `json:"slot"`
	Request wire.SlotRequest `json:"request"`
}

// Acquire queues a request for a slot with the semaphore workflow of
// in.Slot, starting that workflow if it is not running (signal-with-start).
// The slot is granted later, by a signal to the requesting run. Sending the
// same request again is harmless: a holder is granted again, a queued request
// keeps its place.
func (s *Slots) Acquire(ctx context.Context, in AcquireSlotInput) error {
	if s.Temporal == nil {
		return fmt.Errorf("herald: concurrency limits need the worker's Temporal client")
	}
	_, err := s.Temporal.SignalWithStartWorkflow(ctx, in.Slot.WorkflowID, wire.SignalAcquire, in.Request,
		client.StartWorkflowOptions{
			ID:                    in.Slot.WorkflowID,
			TaskQueue:             in.Slot.TaskQueue,
			WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
			StaticSummary:         "concurrency limit",
		},
		wire.WorkflowSemaphore, wire.SemaphoreState{Limit: in.Slot.Limit})
	if err != nil {
		return fmt.Errorf("herald: acquire a slot of %s: %w", in.Slot.WorkflowID, err)
	}
	return nil
}
