package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/oklog/ulid/v2"

	"github.com/herald-run/herald/internal/wire"
	"github.com/herald-run/herald/router"
	"github.com/herald-run/herald/store"
	"github.com/herald-run/herald/triggers"
)

// ReplayJSON is a replay as the REST API returns it.
type ReplayJSON struct {
	ID         string    `json:"id"`
	FunctionID string    `json:"function_id"`
	From       time.Time `json:"from"`
	To         time.Time `json:"to"`
	Statuses   []string  `json:"statuses"`
	Events     bool      `json:"events"`
	If         string    `json:"if,omitempty"`
	Status     string    `json:"status"`
	Matched    int64     `json:"matched"`
	Started    int64     `json:"started"`
	Skipped    int64     `json:"skipped"`
	Error      string    `json:"error,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

func toReplayJSON(r store.Replay) ReplayJSON {
	return ReplayJSON{ID: r.ID, FunctionID: r.AppID + "/" + r.FunctionID, From: r.From.UTC(), To: r.To.UTC(),
		Statuses: orEmpty(r.Statuses), Events: r.Events, If: r.Expr, Status: r.Status, Matched: r.Matched, Started: r.Started,
		Skipped: r.Skipped, Error: r.Error, CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC()}
}

// replayableStatuses are the outcomes a replay may select: finished ones.
var replayableStatuses = []string{wire.RunCompleted, wire.RunFailed, wire.RunCancelled, wire.RunSkipped}

// defaultReplayStatuses are replayed when a replay names none.
var defaultReplayStatuses = []string{wire.RunFailed, wire.RunCancelled, wire.RunSkipped}

// handleCreateReplay starts a replay in the background and answers 202 with
// its id.
func (s *Server) handleCreateReplay(c *gin.Context) {
	if s.cfg.Replayer == nil || s.cfg.Registry == nil {
		writeError(c, http.StatusServiceUnavailable, "this server does not start runs")
		return
	}
	var body struct {
		FunctionID string    `json:"function_id"`
		From       timeValue `json:"from"`
		To         timeValue `json:"to"`
		Statuses   []string  `json:"statuses"`
		Events     bool      `json:"events"`
		If         string    `json:"if"`
	}
	if err := decodeJSONBody(c, &body, s.limits.MaxBodyBytes); err != nil {
		writeError(c, http.StatusBadRequest, "replay body: "+err.Error())
		return
	}
	app, fn, err := functionParam(body.FunctionID, false)
	if err != nil {
		writeError(c, http.StatusBadRequest, "function_id: "+err.Error())
		return
	}
	snap, err := s.cfg.Registry.Snapshot(c.Request.Context())
	if err != nil {
		s.storeError(c, err)
		return
	}
	if snap.Functions[body.FunctionID] == nil {
		writeError(c, http.StatusBadRequest, fmt.Sprintf("function_id: no function %s; GET /v1/functions lists them", body.FunctionID))
		return
	}
	if body.From == "" {
		writeError(c, http.StatusBadRequest, "from: required: the start of the window (RFC 3339 or milliseconds since the Unix epoch)")
		return
	}
	from, err := parseTimeParam(string(body.From))
	if err != nil {
		writeError(c, http.StatusBadRequest, "from: "+err.Error())
		return
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	to, err := parseTimeParam(string(body.To))
	if err != nil {
		writeError(c, http.StatusBadRequest, "to: "+err.Error())
		return
	}
	// The window ends at the latest now: the replay's own runs, started
	// later, are never replayed by it.
	if to.IsZero() || to.After(now) {
		to = now
	}
	if !from.Before(to) {
		writeError(c, http.StatusBadRequest, "from: must be before to (and before now)")
		return
	}
	statuses := body.Statuses
	if body.Events {
		if len(statuses) > 0 {
			writeError(c, http.StatusBadRequest, "statuses: a replay of events (\"events\": true) runs every matching event; it takes no statuses")
			return
		}
	} else {
		if len(statuses) == 0 {
			statuses = defaultReplayStatuses
		}
		for _, st := range statuses {
			if !slices.Contains(replayableStatuses, st) {
				writeError(c, http.StatusBadRequest, "statuses: each must be one of "+strings.Join(replayableStatuses, ", ")+" (runs still going are not replayed)")
				return
			}
		}
	}
	if body.If != "" {
		if _, err := s.triggerEnv.Cached(body.If); err != nil {
			writeError(c, http.StatusBadRequest, "if: "+err.Error())
			return
		}
	}
	job := store.Replay{ID: ulid.Make().String(), AppID: app, FunctionID: fn, From: from, To: to, Statuses: statuses,
		Events: body.Events, Expr: body.If, Status: store.JobRunning, CreatedAt: now, UpdatedAt: now,
		Owner: newLeaseOwner(), HeartbeatAt: now}
	if body.Events {
		job.Statuses = nil
	}
	if err := s.cfg.Store.SaveReplay(c.Request.Context(), job); err != nil {
		s.storeError(c, err)
		return
	}
	s.startReplay(job)
	c.JSON(http.StatusAccepted, gin.H{"id": job.ID, "data": toReplayJSON(job)})
}

func (s *Server) handleGetReplay(c *gin.Context) {
	job, err := s.cfg.Store.GetReplay(c.Request.Context(), c.Param("id"))
	if errors.Is(err, store.ErrNotFound) {
		writeError(c, http.StatusNotFound, fmt.Sprintf("no replay with id %q", c.Param("id")))
		return
	}
	if err != nil {
		s.storeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"data": toReplayJSON(job)})
}

// replayPage is how many runs or events a replay lists at a time.
const replayPage = 100

func (s *Server) startReplay(job store.Replay) {
	s.background.Add(1)
	go func() {
		defer s.background.Done()
		s.runReplay(s.bgCtx, job)
	}()
}

// TakeOverReplays takes over the replays whose lease has not been renewed
// for Jobs.StaleAfter and resumes them here from their saved progress, like
// TakeOverCancellations.
func (s *Server) TakeOverReplays(ctx context.Context) (int, error) {
	return takeOver(ctx, s, store.JobReplay, s.cfg.Store.GetReplay, func(job store.Replay) {
		s.log.Info("replay: taking over a job whose replica stopped renewing its lease",
			"id", job.ID, "cursor", job.Cursor, "matched", job.Matched, "started", job.Started)
		s.startReplay(job)
	})
}

// replayRun is one executor's run of a replay.
type replayRun struct {
	s          *Server
	prg        *triggers.Program
	job, saved store.Replay
}

// runReplay works through the replay's window page by page. Before each item
// it saves its cursor (the page and how many of its items are done) and its
// counts with a compare-and-set on its lease; the run it starts for an item
// has an id made from the job and the item, so an executor that takes the
// job over and repeats the item starts nothing twice. It stops as a bulk
// cancellation does: on losing its lease, on a store it cannot save to, or
// when the server closes (handing its lease back).
func (s *Server) runReplay(parent context.Context, job store.Replay) {
	r := &replayRun{s: s, job: job, saved: job}
	s.runUnderLease(parent, store.JobReplay, "replay", job.ID, job.Owner, r.run, r.handBack, func() {
		s.log.Info("replay finished", "id", job.ID, "status", r.job.Status, "matched", r.job.Matched,
			"started", r.job.Started, "skipped", r.job.Skipped, "error", r.job.Error)
	})
}

// handBack saves the progress last saved with its heartbeat at the epoch.
func (r *replayRun) handBack(ctx context.Context) (string, error) {
	job := r.saved
	job.HeartbeatAt = time.Unix(0, 0).UTC()
	return job.Cursor, r.s.cfg.Store.UpdateReplay(ctx, job)
}

// splitCursor parses a replay's "<listing cursor>|<items done>".
func splitCursor(c string) (page string, done int) {
	page, n, ok := strings.Cut(c, "|")
	if !ok {
		return c, 0
	}
	done, _ = strconv.Atoi(n)
	return page, done
}

func (r *replayRun) run(ctx context.Context) error {
	s := r.s
	if r.job.Expr != "" {
		prg, err := s.triggerEnv.Cached(r.job.Expr)
		if err != nil {
			return r.finish(ctx, store.JobFailed, "if: "+err.Error())
		}
		r.prg = prg
	}
	page, done := splitCursor(r.job.Cursor)
	for {
		items, next, err := r.list(ctx, page)
		if err != nil {
			return err
		}
		for i := done; i < len(items); i++ {
			r.job.Cursor = page + "|" + strconv.Itoa(i)
			if err := r.save(ctx); err != nil {
				return err
			}
			if err := r.replay(ctx, items[i]); err != nil {
				var fatal fatalReplay
				if errors.As(err, &fatal) {
					return r.finish(ctx, store.JobFailed, fatal.msg)
				}
				return err
			}
		}
		if next == "" {
			r.job.Cursor = page + "|" + strconv.Itoa(len(items))
			return r.finish(ctx, store.JobCompleted, "")
		}
		page, done = next, 0
	}
}

// replayItem is one run (or, for a replay of events, one event) to replay.
type replayItem struct {
	run   *store.Run
	event *store.Event
}

// list reads one page of the window's runs or events.
func (r *replayRun) list(ctx context.Context, cursor string) ([]replayItem, string, error) {
	j := r.job
	if j.Events {
		events, next, err := r.s.cfg.Store.ListEvents(ctx, store.EventFilter{ReceivedAfter: j.From.Add(-time.Microsecond),
			ReceivedBefore: j.To, Limit: replayPage, Cursor: cursor})
		items := make([]replayItem, len(events))
		for i := range events {
			items[i] = replayItem{event: &events[i]}
		}
		return items, next, err
	}
	runs, next, err := r.s.cfg.Store.ListRuns(ctx, store.RunFilter{AppID: j.AppID, FunctionID: j.FunctionID, Statuses: j.Statuses,
		StartedAfter: j.From, StartedBefore: j.To, Limit: replayPage, Cursor: cursor})
	items := make([]replayItem, len(runs))
	for i := range runs {
		items[i] = replayItem{run: &runs[i]}
	}
	return items, next, err
}

// fatalReplay ends a replay Failed.
type fatalReplay struct{ msg string }

func (f fatalReplay) Error() string { return f.msg }

// replay starts the new run of one item, when it matches. It fails only
// when the job cannot go on.
func (r *replayRun) replay(ctx context.Context, it replayItem) error {
	s := r.s
	fnKey := r.job.AppID + "/" + r.job.FunctionID
	var (
		events   []store.Event
		replayOf string
		key      string
	)
	if it.run != nil {
		if it.run.ReplayID == r.job.ID {
			return nil // one of this replay's own runs
		}
		evs, err := s.runEvents(ctx, *it.run)
		if err != nil {
			return err
		}
		if len(evs) == 0 {
			// A cron run, or its events were purged: nothing to run it with.
			if r.matches(ctx, nil) {
				r.job.Matched++
				r.job.Skipped++
			}
			return nil
		}
		events, replayOf, key = evs, it.run.ID, r.job.ID+"/run/"+it.run.ID
	} else {
		ok, err := r.triggers(ctx, fnKey, it.event)
		if err != nil || !ok {
			return err
		}
		events, key = []store.Event{*it.event}, r.job.ID+"/event/"+it.event.ID
	}
	if !r.matches(ctx, &events[0]) {
		return nil
	}
	r.job.Matched++
	backoff := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		run, err := s.cfg.Replayer.StartReplay(ctx, router.Replay{Function: fnKey, Events: events, ReplayOf: replayOf,
			ReplayID: r.job.ID, Key: key, At: r.job.CreatedAt})
		switch {
		case err == nil:
			r.job.Started++
			return nil
		case errors.Is(err, router.ErrNoFunction):
			return fatalReplay{msg: "the function is no longer synced"}
		case errors.Is(err, router.ErrPaused):
			return fatalReplay{msg: "the function is paused: resume it, then replay again"}
		case ctx.Err() != nil:
			return ctx.Err()
		case attempt == 10:
			s.log.Warn("replay: a run did not start after 10 attempts; counted as skipped", "id", r.job.ID, "replay_of", replayOf, "err", err)
			s.abandonRun(ctx, run, err)
			r.job.Skipped++
			return nil
		}
		s.log.Warn("replay: starting a run failed; retrying", "id", r.job.ID, "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// matches evaluates the replay's condition on e (nil: no event, which only
// the absence of a condition matches).
func (r *replayRun) matches(ctx context.Context, e *store.Event) bool {
	if r.prg == nil {
		return true
	}
	if e == nil {
		return false
	}
	act, err := triggers.EventActivation(e.Name, e.Data, e.ID, e.TS, e.V)
	if err != nil {
		return false
	}
	ectx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	ok, err := r.prg.Eval(ectx, act)
	return err == nil && ok
}

// triggers reports whether one of the function's triggers matches e.
func (r *replayRun) triggers(ctx context.Context, fnKey string, e *store.Event) (bool, error) {
	snap, err := r.s.cfg.Registry.Snapshot(ctx)
	if err != nil {
		return false, err
	}
	if e.Name == wire.EventFunctionInvoked {
		return false, nil
	}
	act, err := triggers.EventActivation(e.Name, e.Data, e.ID, e.TS, e.V)
	if err != nil {
		act = nil
	}
	ectx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	keys, _ := snap.Matcher.Match(ectx, act, e.Name)
	return slices.Contains(keys, fnKey), nil
}

func (r *replayRun) save(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := time.Now().UTC()
	r.job.UpdatedAt, r.job.HeartbeatAt = now, now
	if err := r.s.cfg.Store.UpdateReplay(ctx, r.job); err != nil {
		return err
	}
	r.saved = r.job
	return nil
}

func (r *replayRun) finish(ctx context.Context, status, msg string) error {
	r.job.Status, r.job.Error = status, msg
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return r.save(sctx)
}

// timeValue is a time in a JSON body: an RFC 3339 string or milliseconds
// since the Unix epoch, as a number or a string; parseTimeParam checks it.
type timeValue string

func (v *timeValue) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*v = timeValue(s)
		return nil
	}
	if string(b) == "null" {
		*v = ""
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return errors.New("a time must be an RFC 3339 string or milliseconds since the Unix epoch")
	}
	*v = timeValue(n.String())
	return nil
}
