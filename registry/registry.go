// Package registry owns apps and functions: it validates a worker's sync,
// stores the functions with a version, reconciles one Temporal Schedule per
// cron trigger, and serves the router an immutable snapshot (functions and
// their trigger matcher) that is rebuilt when functions change.
package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/herald-run/herald/internal/temporalx"
	"github.com/herald-run/herald/internal/wire"
	"github.com/herald-run/herald/store"
	"github.com/herald-run/herald/triggers"
)

// Limits on an app's configuration.
const (
	MaxTriggers = 10
	MaxRetries  = 20
	MaxCancelOn = 5
)

var (
	appIDPattern      = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,63}$`)
	functionIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,127}$`)
)

// InvalidConfigError lists every problem of a sync, so a user fixes them all
// at once.
type InvalidConfigError struct {
	Problems []string
}

func (e *InvalidConfigError) Error() string {
	return "invalid app configuration: " + strings.Join(e.Problems, "; ")
}

// Func is a function as the router needs it.
type Func struct {
	AppID     string
	ID        string
	TaskQueue string
	Version   int
	Config    wire.FunctionConfig
	// PausedAt is when the function was paused; nil while it runs.
	PausedAt *time.Time
}

// Key returns the function's key, "<app>/<id>".
func (f *Func) Key() string { return f.AppID + "/" + f.ID }

// Snapshot is an immutable view of every function and its matcher; safe to
// share between goroutines.
type Snapshot struct {
	Matcher   *triggers.Matcher
	Functions map[string]*Func // by Key
	loadedAt  time.Time
	version   string // appsVersion of the apps it was built from
}

// appsVersion fingerprints the apps' sync times: it changes with every sync.
func appsVersion(apps []store.App) string {
	var b strings.Builder
	for _, a := range apps {
		b.WriteString(a.ID)
		b.WriteByte('@')
		b.WriteString(strconv.FormatInt(a.SyncedAt.UnixNano(), 10))
		b.WriteByte(';')
	}
	return b.String()
}

// Schedules is what the registry asks of Temporal: it keeps one Temporal
// Schedule per cron trigger. *temporalx.Client implements it.
type Schedules interface {
	UpsertSchedule(ctx context.Context, s temporalx.Schedule) error
	DeleteSchedule(ctx context.Context, id string) error
	PauseSchedule(ctx context.Context, id string, paused bool, note string) error
}

// Config configures a Registry.
type Config struct {
	// Store is required.
	Store store.Driver
	// Env compiles trigger expressions. Required.
	Env *triggers.Env
	// Temporal, when set, is used to reconcile cron schedules.
	Temporal Schedules
	// Namespace is only used in messages.
	Namespace string
	// MaxAge is how long a snapshot is kept at most. Within it, every
	// Snapshot call still compares the apps' sync times with the store, so
	// another replica's sync is seen at once. Default 2s.
	MaxAge time.Duration
	// Logger defaults to discard.
	Logger *slog.Logger
}

// Registry validates syncs and serves snapshots.
type Registry struct {
	cfg      Config
	waitEnv  *triggers.Env
	mu       sync.Mutex
	snapshot *Snapshot
}

// New returns a Registry.
func New(cfg Config) (*Registry, error) {
	if cfg.Store == nil || cfg.Env == nil {
		return nil, errors.New("registry: Store and Env are required")
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	waitEnv, err := triggers.NewWaitEnv()
	if err != nil {
		return nil, err
	}
	return &Registry{cfg: cfg, waitEnv: waitEnv}, nil
}

// Validate checks a sync request and returns every problem found.
func (r *Registry) Validate(appID string, req wire.SyncRequest) error {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if !appIDPattern.MatchString(appID) {
		add("app id %q: must be 1-64 lowercase letters, digits or dashes, starting with a letter or digit", appID)
	}
	if strings.TrimSpace(req.TaskQueue) == "" {
		add("task_queue: is required")
	}
	seen := map[string]bool{}
	for i, f := range req.Functions {
		where := fmt.Sprintf("function %d (%q)", i, f.ID)
		if !functionIDPattern.MatchString(f.ID) {
			add("%s: id must be 1-128 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit", where)
		}
		if seen[f.ID] {
			add("%s: id is used by another function of the app; ids must be unique", where)
		}
		seen[f.ID] = true
		if len(f.Triggers) == 0 {
			add("%s: needs at least one trigger", where)
		}
		if len(f.Triggers) > MaxTriggers {
			add("%s: has %d triggers; at most %d are allowed", where, len(f.Triggers), MaxTriggers)
		}
		if f.Retries < 0 || f.Retries > MaxRetries {
			add("%s: retries must be between 0 and %d", where, MaxRetries)
		}
		if len(f.CancelOn) > MaxCancelOn {
			add("%s: has %d cancel_on entries; at most %d are allowed", where, len(f.CancelOn), MaxCancelOn)
		}
		for j, co := range f.CancelOn {
			cw := fmt.Sprintf("%s cancel_on %d", where, j)
			if err := triggers.ValidateName(co.Event); err != nil {
				add("%s: event: %v", cw, err)
			}
			if co.Match != "" {
				if err := triggers.ValidatePath(co.Match); err != nil {
					add("%s: %v", cw, err)
				}
			}
			if co.If != "" {
				if _, err := r.waitEnv.Compile(co.If); err != nil {
					add("%s: if: %v", cw, err)
				}
			}
			if co.TimeoutMS < 0 || co.TimeoutMS > wire.MaxWaitMS {
				add("%s: timeout must be between 0 and 366 days", cw)
			}
		}
		r.validateFlow(where, f, add)
		for j, t := range f.Triggers {
			tw := fmt.Sprintf("%s trigger %d", where, j)
			switch {
			case t.Event != "" && t.Cron != "":
				add("%s: set either event or cron, not both", tw)
			case t.Event == "" && t.Cron == "":
				add("%s: set an event name or a cron expression", tw)
			case t.Cron != "":
				if t.If != "" {
					add("%s: a cron trigger cannot have an if expression", tw)
				}
				if _, err := triggers.ParseCron(t.Cron); err != nil {
					add("%s: %v", tw, err)
				}
			default:
				if err := triggers.ValidatePattern(t.Event); err != nil {
					add("%s: %v", tw, err)
				}
				if t.If != "" {
					if _, err := r.cfg.Env.Compile(t.If); err != nil {
						add("%s: if: %v", tw, err)
					}
				}
			}
		}
	}
	if len(problems) > 0 {
		return &InvalidConfigError{Problems: problems}
	}
	return nil
}

// Sync validates req, stores the app's functions, reconciles its cron
// schedules and invalidates the snapshot. A function left out of req is
// removed: it stops being triggered and its schedules are deleted.
func (r *Registry) Sync(ctx context.Context, appID string, req wire.SyncRequest) (wire.SyncResponse, error) {
	if err := r.Validate(appID, req); err != nil {
		return wire.SyncResponse{}, err
	}
	fns := make([]store.Function, len(req.Functions))
	for i, f := range req.Functions {
		raw, err := json.Marshal(f)
		if err != nil {
			return wire.SyncResponse{}, err
		}
		fns[i] = store.Function{AppID: appID, ID: f.ID, Config: raw}
	}
	res, err := r.cfg.Store.SyncApp(ctx, store.App{ID: appID, TaskQueue: req.TaskQueue}, fns)
	if err != nil {
		return wire.SyncResponse{}, fmt.Errorf("registry: store app %q: %w", appID, err)
	}
	r.Invalidate()
	schedules := 0
	if r.cfg.Temporal != nil {
		var previous []wire.FunctionConfig
		paused := map[string]bool{}
		for _, p := range res.Previous {
			var fc wire.FunctionConfig
			if json.Unmarshal(p.Config, &fc) == nil {
				previous = append(previous, fc)
			}
			paused[p.ID] = p.PausedAt != nil
		}
		if schedules, err = r.reconcileSchedules(ctx, appID, req, previous, paused); err != nil {
			return wire.SyncResponse{}, err
		}
	}
	r.cfg.Logger.Info("app synced", "app", appID, "functions", len(fns), "created", len(res.Created), "updated", len(res.Updated), "removed", len(res.Removed), "schedules", schedules)
	return wire.SyncResponse{
		App: appID, Functions: len(fns), Created: len(res.Created), Updated: len(res.Updated),
		Removed: len(res.Removed), Schedules: schedules,
	}, nil
}

// SetPaused pauses (paused true) or resumes a function: while paused, every
// event it matches records a Skipped run ("skipped: paused") and its cron
// schedules are paused in Temporal. The state is stored, so it survives
// restarts and syncs, and every replica sees it at once. It returns the
// function as stored, or store.ErrNotFound.
func (r *Registry) SetPaused(ctx context.Context, appID, functionID string, paused bool) (store.Function, error) {
	var at *time.Time
	if paused {
		now := time.Now().UTC().Truncate(time.Millisecond)
		at = &now
	}
	f, err := r.cfg.Store.SetFunctionPaused(ctx, appID, functionID, at)
	if err != nil {
		return f, err
	}
	r.Invalidate()
	if r.cfg.Temporal == nil {
		return f, nil
	}
	var fc wire.FunctionConfig
	if err := json.Unmarshal(f.Config, &fc); err != nil {
		return f, fmt.Errorf("registry: function %s/%s: %w", appID, functionID, err)
	}
	note := "resumed with its function through Herald"
	if paused {
		note = "paused with its function through Herald"
	}
	for _, id := range cronScheduleIDs(appID, fc) {
		if err := r.cfg.Temporal.PauseSchedule(ctx, id, paused, note); err != nil {
			return f, fmt.Errorf("registry: %w", err)
		}
	}
	r.cfg.Logger.Info("function paused", "function", appID+"/"+functionID, "paused", paused)
	return f, nil
}

// Invalidate makes the next Snapshot call reload from the store.
func (r *Registry) Invalidate() {
	r.mu.Lock()
	r.snapshot = nil
	r.mu.Unlock()
}

// Snapshot returns the current functions and matcher, reloading them from the
// store when they are older than MaxAge or were invalidated.
func (r *Registry) Snapshot(ctx context.Context) (*Snapshot, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.snapshot != nil && time.Since(r.snapshot.loadedAt) < r.cfg.MaxAge {
		// One small query tells whether any replica synced an app since the
		// snapshot was built, so a sync that finished before an event was sent
		// applies to it on every replica.
		apps, err := r.cfg.Store.ListApps(ctx)
		if err != nil || appsVersion(apps) == r.snapshot.version {
			return r.snapshot, nil
		}
	}
	snap, err := r.load(ctx)
	if err != nil {
		if r.snapshot != nil {
			// Keep dispatching with what we know; the store error surfaces elsewhere.
			r.cfg.Logger.Warn("reloading functions failed; using the previous snapshot", "err", err)
			return r.snapshot, nil
		}
		return nil, err
	}
	r.snapshot = snap
	return snap, nil
}

func (r *Registry) load(ctx context.Context) (*Snapshot, error) {
	apps, err := r.cfg.Store.ListApps(ctx)
	if err != nil {
		return nil, fmt.Errorf("registry: list apps: %w", err)
	}
	queues := make(map[string]string, len(apps))
	for _, a := range apps {
		queues[a.ID] = a.TaskQueue
	}
	version := appsVersion(apps)
	stored, err := r.cfg.Store.ListFunctions(ctx)
	if err != nil {
		return nil, fmt.Errorf("registry: list functions: %w", err)
	}
	snap := &Snapshot{Functions: make(map[string]*Func, len(stored)), loadedAt: time.Now(), version: version}
	var trigs []triggers.Trigger
	for _, sf := range stored {
		f := &Func{AppID: sf.AppID, ID: sf.ID, TaskQueue: queues[sf.AppID], Version: sf.Version, PausedAt: sf.PausedAt}
		if err := json.Unmarshal(sf.Config, &f.Config); err != nil {
			r.cfg.Logger.Error("stored function config does not decode; skipping it", "function", f.Key(), "err", err)
			continue
		}
		snap.Functions[f.Key()] = f
		for i, t := range f.Config.Triggers {
			if t.Event == "" {
				continue
			}
			tr := triggers.Trigger{FunctionKey: f.Key(), Pattern: t.Event, Index: i}
			if t.If != "" {
				p, err := r.cfg.Env.Cached(t.If)
				if err != nil {
					r.cfg.Logger.Error("stored trigger expression does not compile; skipping it", "function", f.Key(), "if", t.If, "err", err)
					continue
				}
				tr.If = p
			}
			trigs = append(trigs, tr)
		}
	}
	m, err := triggers.NewMatcher(trigs)
	if err != nil {
		return nil, fmt.Errorf("registry: build matcher: %w", err)
	}
	snap.Matcher = m
	return snap, nil
}

// Sorted returns every function, sorted by key.
func (s *Snapshot) Sorted() []*Func {
	out := make([]*Func, 0, len(s.Functions))
	for _, f := range s.Functions {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out
}

// Env returns the CEL environment of trigger and key expressions.
func (r *Registry) Env() *triggers.Env { return r.cfg.Env }
