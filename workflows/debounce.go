package workflows

import (
	"go.temporal.io/sdk/workflow"

	"github.com/herald-run/herald/internal/wire"
)

// Debounce is the debounce workflow of one (function, key), registered as
// wire.WorkflowDebounce and fed wire.PendingEvent signals named
// wire.SignalEvent by signal-with-start.
//
// A cycle begins with the first event received while none is pending. Each
// event replaces the cycle's pending one and pushes the run back: the run
// starts st.PeriodMS after the cycle's latest event, but, when st.TimeoutMS
// is set, no later than st.TimeoutMS after its first event. The run is
// started with wire.ActivityStartRun for the latest event only; events that
// arrive meanwhile open the next cycle.
//
// The workflow completes when no event is pending, and continues as new
// (carrying the open cycle in Last, FirstAtMS and LastAtMS) when the server
// suggests it or its history grows long; both only after draining delivered
// signals, so no event is lost. A st with Last set resumes that cycle. When
// cancelled it returns the cancellation, dropping the pending event.
func Debounce(ctx workflow.Context, st wire.DebounceState) error {
	ctx = withActivityOptions(ctx)
	d := &debouncer{st: st}
	d.inbox = newEventInbox(ctx, d.add)
	for {
		d.inbox.drain(ctx)
		switch {
		case d.st.Last == nil:
			return nil
		case nowMS(ctx) >= d.fireAtMS():
			if err := d.fire(ctx); err != nil {
				return err
			}
		case continueAsNewDue(ctx):
			return workflow.NewContinueAsNewError(ctx, wire.WorkflowDebounce, d.st)
		default:
			if err := d.inbox.waitUntil(ctx, d.fireAtMS()); err != nil {
				return err
			}
		}
	}
}

// debouncer is the state of a running Debounce.
type debouncer struct {
	st    wire.DebounceState
	inbox eventInbox
}

// add records ev, opening a cycle if none is open. Every event pushes the
// run back; the run's event is the one Herald accepted last (concurrent
// dispatches may deliver two close events out of order), the later arrival
// on a tie.
func (d *debouncer) add(ev wire.PendingEvent, atMS int64) {
	if d.st.Last == nil {
		d.st.FirstAtMS = atMS
	}
	if d.st.Last == nil || ev.ReceivedMS >= d.st.Last.ReceivedMS {
		d.st.Last = &ev
	}
	d.st.LastAtMS = atMS
}

// fireAtMS is when the open cycle's run starts.
func (d *debouncer) fireAtMS() int64 {
	at := d.st.LastAtMS + d.st.PeriodMS
	if d.st.TimeoutMS > 0 {
		at = min(at, d.st.FirstAtMS+d.st.TimeoutMS)
	}
	return at
}

// fire closes the open cycle and starts its run.
func (d *debouncer) fire(ctx workflow.Context) error {
	run := wire.StartRun{
		AppID:      d.st.AppID,
		FunctionID: d.st.FunctionID,
		Events:     []wire.PendingEvent{*d.st.Last},
	}
	d.st.Last, d.st.FirstAtMS, d.st.LastAtMS = nil, 0, 0
	return d.inbox.startRun(ctx, run)
}
