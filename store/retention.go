package store

import (
	"errors"
	"time"
)

// Retention: what Herald keeps of finished work, and for how long.
//
// Events, runs and finished bulk cancellations are kept for the retention
// (herald serve --retention, 30 days by default) and then purged by
// Driver.Purge, in small batches, by the housekeeping of every replica. What
// is still in use is never purged, however old: a pending event, an event an
// unfinished run references, an unfinished run, a running cancellation.
// Configuration (apps, functions, webhook sources) is never purged. Waits
// and flow-control state have purges of their own, on much shorter clocks
// (PurgeWaits, PurgeFlowState).

// MinRetention is the shortest retention Herald accepts. An event id
// deduplicates later events with the same id for 24 hours (the dedupe
// window), so an event must outlive that window with a wide margin.
const MinRetention = 48 * time.Hour

// DefaultRetention is the retention when none is configured: 30 days.
const DefaultRetention = 30 * 24 * time.Hour

// ErrPurgeBatch is returned by Purge given a batch size below 1.
var ErrPurgeBatch = errors.New("store: purge batch must be at least 1")

// PurgeCounts says how many rows one Purge call deleted, per table.
type PurgeCounts struct {
	// Events is the number of events deleted.
	Events int64
	// Runs is the number of runs deleted.
	Runs int64
	// RunLinks is the number of batch links (a batch run listed under each
	// event of its batch) deleted with their runs.
	RunLinks int64
	// Cancellations is the number of finished bulk cancellations deleted.
	Cancellations int64
	// Replays is the number of finished replays deleted.
	Replays int64
}

// Total is the number of rows deleted, all tables together.
func (c PurgeCounts) Total() int64 {
	return c.Events + c.Runs + c.RunLinks + c.Cancellations + c.Replays
}

// Add adds o's counts to c's.
func (c *PurgeCounts) Add(o PurgeCounts) {
	c.Events += o.Events
	c.Runs += o.Runs
	c.RunLinks += o.RunLinks
	c.Cancellations += o.Cancellations
	c.Replays += o.Replays
}

// More reports whether a Purge call with this batch size may have left rows
// due: it deleted a full batch of some table. (RunLinks follow their runs and
// have no batch of their own.)
func (c PurgeCounts) More(batch int) bool {
	n := int64(batch)
	return c.Events >= n || c.Runs >= n || c.Cancellations >= n || c.Replays >= n
}
