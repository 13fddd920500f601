package wire

// Flow-control configuration, as a worker syncs it. Every Key is a CEL
// expression over `event` whose value (a string, number or bool) is the key;
// an empty Key means one key for the whole function. Durations are in
// milliseconds.

// Concurrency scopes.
const (
	ScopeFunction = "fn"  // the limit counts the function's steps only
	ScopeEnv      = "env" // the limit is shared by every function using the same key
)

// ConcurrencyConfig limits the steps executing at once.
type ConcurrencyConfig struct {
	Limit int    `json:"limit"`
	Key   string `json:"key,omitempty"`
	Scope string `json:"scope,omitempty"` // ScopeFunction (default) or ScopeEnv
}

// ThrottleConfig limits run starts per period; excess runs start later.
type ThrottleConfig struct {
	Limit    int    `json:"limit"`
	PeriodMS int64  `json:"period_ms"`
	Burst    int    `json:"burst,omitempty"`
	Key      string `json:"key,omitempty"`
}

// RateLimitConfig limits runs per period; excess runs are skipped.
type RateLimitConfig struct {
	Limit    int    `json:"limit"`
	PeriodMS int64  `json:"period_ms"`
	Key      string `json:"key,omitempty"`
}

// DebounceConfig starts one run PeriodMS after the last event for a key.
type DebounceConfig struct {
	PeriodMS  int64  `json:"period_ms"`
	Key       string `json:"key,omitempty"`
	TimeoutMS int64  `json:"timeout_ms,omitempty"`
}

// BatchConfig runs a function once for up to MaxSize events.
type BatchConfig struct {
	MaxSize   int    `json:"max_size"`
	TimeoutMS int64  `json:"timeout_ms"`
	Key       string `json:"key,omitempty"`
	// If, when set, is a condition over `event`: events for which it is
	// false are not batched and run alone at once.
	If string `json:"if,omitempty"`
}

// PriorityConfig sets a run's Temporal task priority.
type PriorityConfig struct {
	// Run is an integer expression over `event`, clamped to
	// [-MaxPriority, MaxPriority]; higher runs sooner.
	Run string `json:"run"`
}

// MaxPriority bounds a priority expression's value (seconds, as users of
// other event platforms know it).
const MaxPriority = 600

// Singleton modes.
const (
	SingletonSkip   = "skip"
	SingletonCancel = "cancel"
)

// SingletonConfig allows one active run per key.
type SingletonConfig struct {
	Key  string `json:"key,omitempty"`
	Mode string `json:"mode,omitempty"` // SingletonSkip (default) or SingletonCancel
}

// TimeoutsConfig bounds how long a run may wait to start and to finish.
type TimeoutsConfig struct {
	StartMS  int64 `json:"start_ms,omitempty"`
	FinishMS int64 `json:"finish_ms,omitempty"`
}

// Slot is a concurrency limit a run's steps must hold a slot of: the
// semaphore workflow WorkflowID, on TaskQueue, admits Limit steps at once.
type Slot struct {
	WorkflowID string `json:"workflow_id"`
	TaskQueue  string `json:"task_queue"`
	Limit      int    `json:"limit"`
}

// Entity workflows Herald runs on its own task queue.
const (
	WorkflowDebounce  = "herald.debounce"
	WorkflowBatch     = "herald.batch"
	WorkflowSemaphore = "herald.semaphore"

	// SignalEvent delivers []PendingEvent (oldest first) to a debounce or
	// batch workflow: the router sends one per workflow per claimed batch.
	SignalEvent = "herald.event"
	// SignalAcquire and SignalRelease carry a SlotRequest to a semaphore.
	SignalAcquire = "herald.acquire"
	SignalRelease = "herald.release"

	// ActivityStartRun starts (and records) one run of a function for one or
	// more events; input StartRun, no result. Herald runs it.
	ActivityStartRun = "herald.StartRun"
	// ActivityClosedWorkflows reports which of the given workflow ids have no
	// open execution; input []string, result []bool (parallel). Herald runs it.
	ActivityClosedWorkflows = "herald.ClosedWorkflows"

	// DefaultSystemTaskQueue is the task queue of Herald's own workflows.
	DefaultSystemTaskQueue = "herald-system"
)

// SlotSignal names the signal a semaphore sends to grant a slot.
func SlotSignal(token string) string { return "herald.slot/" + token }

// PendingEvent is an event on its way to a debounce or batch workflow.
type PendingEvent struct {
	Event      Event `json:"event"`
	ReceivedMS int64 `json:"received_ms"`
}

// StartRun asks Herald to start the run of a function for Events (a debounce
// fires with one event, a batch with many). The run's id and workflow id
// derive from the first event, so a retried start is the same run.
type StartRun struct {
	AppID      string         `json:"app_id"`
	FunctionID string         `json:"function_id"`
	Events     []PendingEvent `json:"events"`
}

// DebounceState is the input of the debounce workflow (and what it carries
// across continue-as-new).
type DebounceState struct {
	AppID      string `json:"app_id"`
	FunctionID string `json:"function_id"`
	PeriodMS   int64  `json:"period_ms"`
	// TimeoutMS caps, from the first event of a cycle, how long the run can
	// be pushed back; 0 means no cap.
	TimeoutMS int64 `json:"timeout_ms,omitempty"`
	// Last is the latest event of the current cycle, nil when none.
	Last *PendingEvent `json:"last,omitempty"`
	// FirstAtMS and LastAtMS are workflow times (ms) of the cycle's first and
	// latest events.
	FirstAtMS int64 `json:"first_at_ms,omitempty"`
	LastAtMS  int64 `json:"last_at_ms,omitempty"`
}

// BatchState is the input of the batch workflow.
type BatchState struct {
	AppID      string `json:"app_id"`
	FunctionID string `json:"function_id"`
	MaxSize    int    `json:"max_size"`
	TimeoutMS  int64  `json:"timeout_ms"`
	// Pending are the events of the open batch, oldest first; FirstAtMS is
	// the workflow time (ms) the first of them arrived.
	Pending   []PendingEvent `json:"pending,omitempty"`
	FirstAtMS int64          `json:"first_at_ms,omitempty"`
	// Seen holds the ids of recently batched events (newest last, at most
	// MaxSeen), so a redelivered event is not batched twice.
	Seen []string `json:"seen,omitempty"`
}

// MaxSeen is how many recent event ids a batch workflow remembers.
const MaxSeen = 1000

// SlotRequest asks a semaphore for a slot, or returns one. Token is unique
// per step attempt; WorkflowID is the requesting run's workflow, which
// receives SlotSignal(Token) when the slot is granted.
type SlotRequest struct {
	Token      string `json:"token"`
	WorkflowID string `json:"workflow_id"`
	Limit      int    `json:"limit"`
}

// SemaphoreState is the input of the semaphore workflow.
type SemaphoreState struct {
	Limit   int           `json:"limit"`
	Holders []SlotRequest `json:"holders,omitempty"`
	// Queue holds waiting requests, first come first served.
	Queue []SlotRequest `json:"queue,omitempty"`
}
