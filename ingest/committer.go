package ingest

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/herald-run/herald/store"
)

// errClosed is returned by Commit after the committer has been closed.
var errClosed = errors.New("ingest: shutting down")

// commitRequest is one HTTP request's events waiting for a group commit.
type commitRequest struct {
	ctx context.Context
	// deadline is when the request must have its answer: its arrival plus
	// the commit timeout, however long it queued.
	deadline time.Time
	events   []store.Event
	inserted []bool
	err      error
	done     chan struct{}
}

// committer group-commits: concurrent requests queue their events and a few
// flusher goroutines each write whatever is queued in one transaction. Under
// load a transaction carries many requests, so durable ingest costs close to a
// batched insert per event, not a commit per request.
//
// What one group commit costs on PostgreSQL: one statement per kind of
// event, in one BEGIN/COMMIT when there are both. Events without a client id
// go in with one multi-row INSERT (unnest of column arrays); events with a
// client id with one upsert that skips the ids accepted within the dedupe
// window. Each statement also writes the new events' pending_events rows.
// One event row and its index entries, and one pending row, are written per
// new event; nothing else. The request is answered only after the commit.
type committer struct {
	store       store.Driver
	window      time.Duration
	maxEvents   int
	timeout     time.Duration
	metrics     *metrics
	queue       chan *commitRequest
	mu          sync.RWMutex // guards closed against sends on a closed queue
	closed      bool
	flushers    sync.WaitGroup
	requestPool sync.Pool
}

func newCommitter(s store.Driver, flushers, maxEvents int, window, timeout time.Duration, m *metrics) *committer {
	c := &committer{
		store:     s,
		window:    window,
		maxEvents: maxEvents,
		timeout:   timeout,
		metrics:   m,
		queue:     make(chan *commitRequest, 4096),
	}
	c.requestPool.New = func() any { return &commitRequest{done: make(chan struct{}, 1)} }
	for range flushers {
		c.flushers.Add(1)
		go c.run()
	}
	return c
}

// Commit makes events durable and reports, for each, whether it was new
// (false: a duplicate of an id accepted within the dedupe window). When it
// returns nil every event is committed.
func (c *committer) Commit(ctx context.Context, events []store.Event) ([]bool, error) {
	r := c.requestPool.Get().(*commitRequest)
	r.ctx, r.events, r.inserted, r.err = ctx, events, nil, nil
	r.deadline = time.Now().Add(c.timeout)

	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		return nil, errClosed
	}
	select {
	case c.queue <- r:
		c.mu.RUnlock()
	case <-ctx.Done():
		c.mu.RUnlock()
		return nil, ctx.Err()
	}
	// Always wait for the flusher, even when ctx ends: the request is in its hands.
	<-r.done
	inserted, err := r.inserted, r.err
	r.ctx, r.events, r.inserted, r.err = nil, nil, nil, nil
	c.requestPool.Put(r)
	return inserted, err
}

// Close stops accepting commits, flushes what is queued and waits for the
// flushers to finish.
func (c *committer) Close() {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		close(c.queue)
	}
	c.mu.Unlock()
	c.flushers.Wait()
}

func (c *committer) run() {
	defer c.flushers.Done()
	batch := make([]*commitRequest, 0, 64)
	for r := range c.queue {
		batch = append(batch[:0], r)
		n := len(r.events)
	drain:
		for n < c.maxEvents {
			select {
			case more, ok := <-c.queue:
				if !ok {
					break drain
				}
				batch = append(batch, more)
				n += len(more.events)
			default:
				break drain
			}
		}
		c.flush(batch)
	}
}

func (c *committer) flush(batch []*commitRequest) {
	// A client that gave up before its turn is not written: it was told its
	// request failed, so storing its events would surprise it.
	// Nor is one whose deadline passed while it queued (a store that hangs
	// holds the flushers): it gets its 503 now.
	live := batch[:0:0]
	now := time.Now()
	for _, r := range batch {
		err := r.ctx.Err()
		if err == nil && !now.Before(r.deadline) {
			err = context.DeadlineExceeded
		}
		if err != nil {
			r.err = err
			r.done <- struct{}{}
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	err := c.insert(live)
	if errors.Is(err, store.ErrInvalidData) && len(live) > 1 {
		// One request's data poisoned the shared transaction: commit each
		// request alone so only the offender fails.
		for _, r := range live {
			if err := c.insert([]*commitRequest{r}); err != nil {
				r.err = err
			}
		}
	} else if err != nil {
		for _, r := range live {
			r.err = err
		}
	}
	for _, r := range live {
		r.done <- struct{}{}
	}
}

// insert writes the requests' events in one transaction and hands each request
// its slice of the result.
func (c *committer) insert(reqs []*commitRequest) error {
	var events []store.Event
	if len(reqs) == 1 {
		events = reqs[0].events
	} else {
		total := 0
		for _, r := range reqs {
			total += len(r.events)
		}
		events = make([]store.Event, 0, total)
		for _, r := range reqs {
			events = append(events, r.events...)
		}
	}
	// The transaction ends by the earliest deadline of its requests, so a
	// store that stops answering costs each request at most the commit
	// timeout from its arrival, queueing included.
	deadline := reqs[0].deadline
	for _, r := range reqs[1:] {
		if r.deadline.Before(deadline) {
			deadline = r.deadline
		}
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	inserted, err := c.store.InsertEvents(ctx, events, start.Add(-c.window))
	c.metrics.observeCommit(len(reqs), len(events), time.Since(start), err)
	if err != nil {
		return err
	}
	off := 0
	for _, r := range reqs {
		r.inserted = inserted[off : off+len(r.events)]
		off += len(r.events)
	}
	return nil
}
