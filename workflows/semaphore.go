package workflows

import (
	"slices"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/herald-run/herald/internal/wire"
)

// livenessInterval is how often a semaphore with waiting requests checks
// that its holders' runs are still open.
const livenessInterval = time.Minute

// Semaphore is the semaphore workflow of one concurrency key, registered as
// wire.WorkflowSemaphore and fed wire.SlotRequest signals named
// wire.SignalAcquire and wire.SignalRelease by signal-with-start.
//
// It admits at most Limit holders at once, Limit being that of the most
// recent acquire (st.Limit until then; a Limit below 1 counts as 1). An
// acquire joins the back of the queue, and queued requests are granted in
// order while there is room, so an acquire is granted at once only when no
// one is waiting. A grant is the signal wire.SlotSignal(Token) to the
// request's WorkflowID. An acquire from a holder is granted again (the step
// may have retried it); one already queued is ignored. A release frees the
// token's slot or takes it out of the queue.
//
// A holder is dropped, freeing its slot, when its grant cannot be delivered
// (its run has ended) or, checked every minute while requests wait, when
// wire.ActivityClosedWorkflows reports its run closed: a run that ended
// without releasing does not block the key for ever.
//
// Signals of one name are handled in arrival order. The SDK keeps one
// channel per signal name, so when acquires and releases are both waiting
// to be handled, the acquires go first.
//
// The workflow completes when it has neither holders nor queue, and
// continues as new (carrying Limit, Holders and Queue) when the server
// suggests it or its history grows long; both only after draining
// delivered signals. When cancelled it returns the cancellation.
func Semaphore(ctx workflow.Context, st wire.SemaphoreState) error {
	ctx = withActivityOptions(ctx)
	s := &semaphore{
		st:       st,
		acquires: workflow.GetSignalChannel(ctx, wire.SignalAcquire),
		releases: workflow.GetSignalChannel(ctx, wire.SignalRelease),
	}
	if err := s.fill(ctx); err != nil {
		return err
	}
	for {
		if err := s.drain(ctx); err != nil {
			return err
		}
		switch {
		case len(s.st.Holders) == 0 && len(s.st.Queue) == 0:
			return nil
		case continueAsNewDue(ctx):
			return workflow.NewContinueAsNewError(ctx, wire.WorkflowSemaphore, s.st)
		default:
			if err := s.wait(ctx); err != nil {
				return err
			}
		}
	}
}

// semaphore is the state of a running Semaphore.
type semaphore struct {
	st                 wire.SemaphoreState
	acquires, releases workflow.ReceiveChannel
	// check is the pending liveness timer, nil when none is set.
	check workflow.Future
}

func (s *semaphore) limit() int { return max(s.st.Limit, 1) }

// drain handles every signal already delivered, without blocking.
func (s *semaphore) drain(ctx workflow.Context) error {
	for {
		var req wire.SlotRequest
		switch {
		case s.acquires.ReceiveAsync(&req):
			if err := s.acquire(ctx, req); err != nil {
				return err
			}
		case s.releases.ReceiveAsync(&req):
			if err := s.release(ctx, req); err != nil {
				return err
			}
		default:
			return nil
		}
	}
}

// wait blocks until the next signal or liveness check and handles it.
func (s *semaphore) wait(ctx workflow.Context) error {
	if s.check == nil && len(s.st.Queue) > 0 {
		s.check = workflow.NewTimer(ctx, livenessInterval)
	}
	var err error
	sel := workflow.NewSelector(ctx)
	sel.AddReceive(s.acquires, func(c workflow.ReceiveChannel, _ bool) {
		var req wire.SlotRequest
		c.Receive(ctx, &req)
		err = s.acquire(ctx, req)
	})
	sel.AddReceive(s.releases, func(c workflow.ReceiveChannel, _ bool) {
		var req wire.SlotRequest
		c.Receive(ctx, &req)
		err = s.release(ctx, req)
	})
	if s.check != nil {
		sel.AddFuture(s.check, func(workflow.Future) {
			s.check = nil
			err = s.dropClosed(ctx)
		})
	}
	sel.AddReceive(ctx.Done(), func(workflow.ReceiveChannel, bool) {})
	sel.Select(ctx)
	if err == nil {
		err = ctx.Err()
	}
	return err
}

// acquire handles an acquire signal.
func (s *semaphore) acquire(ctx workflow.Context, req wire.SlotRequest) error {
	if req.Limit > 0 {
		s.st.Limit = req.Limit
	}
	switch {
	case slices.ContainsFunc(s.st.Holders, hasToken(req.Token)):
		if err := s.grant(ctx, req); err != nil {
			return err
		}
	case slices.ContainsFunc(s.st.Queue, hasToken(req.Token)):
		return nil
	default:
		s.st.Queue = append(s.st.Queue, req)
	}
	// Also grants the queue if the new limit is higher.
	return s.fill(ctx)
}

// release handles a release signal.
func (s *semaphore) release(ctx workflow.Context, req wire.SlotRequest) error {
	s.st.Holders = slices.DeleteFunc(s.st.Holders, hasToken(req.Token))
	s.st.Queue = slices.DeleteFunc(s.st.Queue, hasToken(req.Token))
	return s.fill(ctx)
}

// fill grants queued requests, oldest first, while there is room.
func (s *semaphore) fill(ctx workflow.Context) error {
	for len(s.st.Queue) > 0 && len(s.st.Holders) < s.limit() {
		req := s.st.Queue[0]
		s.st.Queue = slices.Delete(s.st.Queue, 0, 1)
		s.st.Holders = append(s.st.Holders, req)
		if err := s.grant(ctx, req); err != nil {
			return err
		}
	}
	return nil
}

// grant tells the holder req that it holds a slot. If the signal cannot be
// delivered, the requesting run has ended: the holder is dropped and the
// caller's fill grants its slot to the next in line.
func (s *semaphore) grant(ctx workflow.Context, req wire.SlotRequest) error {
	err := workflow.SignalExternalWorkflow(ctx, req.WorkflowID, "", wire.SlotSignal(req.Token), nil).Get(ctx, nil)
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	workflow.GetLogger(ctx).Warn("slot grant undeliverable; dropping holder",
		"token", req.Token, "workflow_id", req.WorkflowID, "error", err)
	s.st.Holders = slices.DeleteFunc(s.st.Holders, hasToken(req.Token))
	return nil
}

// dropClosed frees the slots of holders whose runs have closed, when
// requests are waiting for them.
func (s *semaphore) dropClosed(ctx workflow.Context) error {
	if len(s.st.Queue) == 0 || len(s.st.Holders) == 0 {
		return nil
	}
	ids := make([]string, len(s.st.Holders))
	for i, h := range s.st.Holders {
		ids[i] = h.WorkflowID
	}
	var closed []bool
	err := workflow.ExecuteActivity(ctx, wire.ActivityClosedWorkflows, ids).Get(ctx, &closed)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// The activity retries forever, so this is Herald rejecting the
		// check; the next check tries again.
		workflow.GetLogger(ctx).Warn("liveness check failed", "error", err)
		return nil
	}
	kept := make([]wire.SlotRequest, 0, len(s.st.Holders))
	for i, h := range s.st.Holders {
		if i < len(closed) && closed[i] {
			workflow.GetLogger(ctx).Warn("holder's run closed without releasing; dropping holder",
				"token", h.Token, "workflow_id", h.WorkflowID)
			continue
		}
		kept = append(kept, h)
	}
	s.st.Holders = kept
	return s.fill(ctx)
}

func hasToken(token string) func(wire.SlotRequest) bool {
	return func(r wire.SlotRequest) bool { return r.Token == token }
}
