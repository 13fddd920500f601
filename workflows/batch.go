package workflows

import (
	"cmp"
	"slices"

	"go.temporal.io/sdk/workflow"

	"github.com/herald-run/herald/internal/wire"
)

// Batch is the batch workflow of one (function, key), registered as
// wire.WorkflowBatch and fed wire.PendingEvent signals named
// wire.SignalEvent by signal-with-start.
//
// It collects events into a batch and starts one run for the batch's events,
// in arrival order, with wire.ActivityStartRun: at once when the batch holds
// st.MaxSize events, or st.TimeoutMS after its first event arrived. More than
// MaxSize pending events are flushed MaxSize at a time; the rest open the
// next batch, timed from the first of them. An event whose id is in the open
// batch or among the ids of recently flushed events (st.Seen, at most
// wire.MaxSeen) is a redelivery and is ignored. A MaxSize below 1 counts
// as 1.
//
// The workflow completes when no event is pending, and continues as new
// (carrying Pending, FirstAtMS and Seen) when the server suggests it or its
// history grows long; both only after draining delivered signals, so no
// event is lost or batched twice. When cancelled it returns the
// cancellation, dropping the open batch.
func Batch(ctx workflow.Context, st wire.BatchState) error {
	ctx = withActivityOptions(ctx)
	b := newBatcher(st)
	b.inbox = newEventInbox(ctx, b.add)
	for {
		b.inbox.drain(ctx)
		switch {
		case len(b.st.Pending) == 0:
			return nil
		case b.full() || nowMS(ctx) >= b.flushAtMS():
			if err := b.flush(ctx); err != nil {
				return err
			}
		case continueAsNewDue(ctx):
			return workflow.NewContinueAsNewError(ctx, wire.WorkflowBatch, b.st)
		default:
			if err := b.inbox.waitUntil(ctx, b.flushAtMS()); err != nil {
				return err
			}
		}
	}
}

// batcher is the state of a running Batch.
type batcher struct {
	st    wire.BatchState
	inbox eventInbox
	// arrivals are the workflow times (ms) st.Pending arrived, parallel to
	// it, so the batch after a MaxSize flush is timed from its own first
	// event. st.FirstAtMS is always arrivals[0] (or 0).
	arrivals []int64
	pending  map[string]bool // ids in st.Pending
	seen     map[string]bool // ids in st.Seen
}

func newBatcher(st wire.BatchState) *batcher {
	b := &batcher{
		st:       st,
		arrivals: make([]int64, len(st.Pending)),
		pending:  make(map[string]bool, len(st.Pending)),
		seen:     make(map[string]bool, len(st.Seen)),
	}
	// The state only keeps the first arrival; a continued batch is below
	// MaxSize, so its other arrival times never time a batch of their own.
	for i, ev := range st.Pending {
		b.arrivals[i] = st.FirstAtMS
		b.pending[ev.Event.ID] = true
	}
	for _, id := range st.Seen {
		b.seen[id] = true
	}
	return b
}

// add appends ev to the open batch unless it is a redelivery.
func (b *batcher) add(ev wire.PendingEvent, atMS int64) {
	if id := ev.Event.ID; id != "" {
		if b.pending[id] || b.seen[id] {
			return
		}
		b.pending[id] = true
	}
	b.st.Pending = append(b.st.Pending, ev)
	b.arrivals = append(b.arrivals, atMS)
	b.st.FirstAtMS = b.arrivals[0]
}

func (b *batcher) maxSize() int { return max(b.st.MaxSize, 1) }

// full reports whether the open batch must be flushed now.
func (b *batcher) full() bool { return len(b.st.Pending) >= b.maxSize() }

// flushAtMS is when the open batch times out.
func (b *batcher) flushAtMS() int64 { return b.st.FirstAtMS + b.st.TimeoutMS }

// flush starts a run for the oldest pending events, at most MaxSize of them.
func (b *batcher) flush(ctx workflow.Context) error {
	n := min(len(b.st.Pending), b.maxSize())
	run := wire.StartRun{
		AppID:      b.st.AppID,
		FunctionID: b.st.FunctionID,
		Events:     slices.Clone(b.st.Pending[:n]),
	}
	// Handed over by concurrent dispatches, events may arrive slightly out
	// of order; the run lists them in the order Herald accepted them.
	slices.SortStableFunc(run.Events, func(x, y wire.PendingEvent) int { return cmp.Compare(x.ReceivedMS, y.ReceivedMS) })
	b.st.Pending = slices.Delete(b.st.Pending, 0, n)
	b.arrivals = slices.Delete(b.arrivals, 0, n)
	b.st.FirstAtMS = 0
	if len(b.arrivals) > 0 {
		b.st.FirstAtMS = b.arrivals[0]
	}
	// Remember the ids before the run starts: a redelivery that arrives
	// while it starts is already a duplicate.
	for _, ev := range run.Events {
		if id := ev.Event.ID; id != "" {
			delete(b.pending, id)
			b.remember(id)
		}
	}
	return b.inbox.startRun(ctx, run)
}

// remember adds id to Seen, forgetting the oldest ids past wire.MaxSeen.
func (b *batcher) remember(id string) {
	b.st.Seen = append(b.st.Seen, id)
	b.seen[id] = true
	if over := len(b.st.Seen) - wire.MaxSeen; over > 0 {
		for _, old := range b.st.Seen[:over] {
			delete(b.seen, old)
		}
		b.st.Seen = slices.Delete(b.st.Seen, 0, over)
	}
}
