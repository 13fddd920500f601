// Package wire is the leaf of words that cross process boundaries: run
// statuses, run, workflow and derived event ids, system event names, and the
// JSON shapes Herald's components exchange (the worker's app sync, the
// router's workflow input, a run's result, wait registration, flow-control
// configuration). Workers, Herald's server and Temporal payloads share them.
// It imports nothing of Herald, so the SDK that depends on it never compiles
// the server. Users never see it; the root package converts to and from its
// public types.
package wire

import (
	"encoding/json"
)

// Event is an event as it travels between Herald components.
type Event struct {
	ID   string          `json:"id"`
	Name string          `json:"name"`
	Data json.RawMessage `json:"data"`
	TS   int64           `json:"ts"`
	V    string          `json:"v,omitempty"`
}

// RunRequest is the input of every function workflow.
type RunRequest struct {
	AppID      string  `json:"app_id"`
	FunctionID string  `json:"function_id"`
	RunID      string  `json:"run_id"`
	Event      Event   `json:"event"`
	Events     []Event `json:"events,omitempty"`
	// ReceivedMS is when Herald accepted Event (ms since the epoch); waits
	// match events accepted from then on.
	ReceivedMS int64 `json:"received_ms,omitempty"`
	// Slots are the concurrency limits every step.Run of the run holds a
	// slot of while it executes, in the order to acquire them.
	Slots []Slot `json:"slots,omitempty"`
	// Report is how the run reports its outcome to Herald: ReportLocal, or
	// empty for a run whose starter predates it (the run then decides with
	// a version marker). It is part of the run's input, so it is in its
	// history: a replay takes the same path without a marker of its own.
	Report string `json:"report,omitempty"`
}

// ReportLocal makes a run report its outcome with a local activity: one
// marker in its history instead of an activity's three events and a
// workflow task.
const ReportLocal = "local"

// TriggerConfig is one trigger of a function: an event pattern with an
// optional CEL filter, or a cron expression.
type TriggerConfig struct {
	Event string `json:"event,omitempty"`
	If    string `json:"if,omitempty"`
	Cron  string `json:"cron,omitempty"`
}

// CancelOnConfig cancels a run when a matching event arrives.
type CancelOnConfig struct {
	Event string `json:"event"`
	Match string `json:"match,omitempty"`
	If    string `json:"if,omitempty"`
	// TimeoutMS bounds how long the run can be cancelled this way; 0 means for
	// as long as it runs (up to MaxWait).
	TimeoutMS int64 `json:"timeout_ms,omitempty"`
}

// FunctionConfig is a function's configuration as a worker syncs it.
type FunctionConfig struct {
	ID       string           `json:"id"`
	Name     string           `json:"name,omitempty"`
	Triggers []TriggerConfig  `json:"triggers"`
	Retries  int              `json:"retries"`
	CancelOn []CancelOnConfig `json:"cancel_on,omitempty"`

	// Flow control; see flow.go.
	Concurrency []ConcurrencyConfig `json:"concurrency,omitempty"`
	Throttle    *ThrottleConfig     `json:"throttle,omitempty"`
	RateLimit   *RateLimitConfig    `json:"rate_limit,omitempty"`
	Debounce    *DebounceConfig     `json:"debounce,omitempty"`
	Batch       *BatchConfig        `json:"batch,omitempty"`
	Priority    *PriorityConfig     `json:"priority,omitempty"`
	Singleton   *SingletonConfig    `json:"singleton,omitempty"`
	// Idempotency is a key expression: at most one run per key per 24 hours.
	Idempotency string          `json:"idempotency,omitempty"`
	Timeouts    *TimeoutsConfig `json:"timeouts,omitempty"`
}

// MaxWaitMS is the longest a wait (or a cancelOn) can last: 366 days.
const MaxWaitMS = 366 * 24 * 60 * 60 * 1000

// WaitRegister is the body of POST /v1/waits, sent when a run reaches
// step.WaitForEvent.
type WaitRegister struct {
	AppID        string `json:"app_id"`
	FunctionID   string `json:"function_id"`
	RunID        string `json:"run_id"`
	WorkflowID   string `json:"workflow_id"`
	StepID       string `json:"step_id"`
	Event        string `json:"event"`
	Match        string `json:"match,omitempty"`
	If           string `json:"if,omitempty"`
	TriggerEvent Event  `json:"trigger_event"`
	// SinceMS and ExpiresAtMS are milliseconds since the epoch.
	SinceMS     int64 `json:"since_ms"`
	ExpiresAtMS int64 `json:"expires_at_ms"`
}

// WaitRegistered is the reply: Event is set when an event that arrived while
// the wait was being registered already resolved it.
type WaitRegistered struct {
	WaitID string `json:"wait_id"`
	Event  *Event `json:"event,omitempty"`
}

// WaitSignal names the signal that delivers a wait's event to its run.
func WaitSignal(stepID string) string { return "herald.wait/" + stepID }

// SyncRequest is the body of POST /v1/apps/{app}/sync.
type SyncRequest struct {
	TaskQueue string           `json:"task_queue"`
	Functions []FunctionConfig `json:"functions"`
}

// SyncResponse is the reply of a successful sync.
type SyncResponse struct {
	App       string `json:"app"`
	Functions int    `json:"functions"`
	Created   int    `json:"created"`
	Updated   int    `json:"updated"`
	Removed   int    `json:"removed"`
	Schedules int    `json:"schedules"`
}

// RunFinish is the body of POST /v1/runs/{id}/finish, sent by the function
// wrapper when a run ends. Herald records the outcome and, when Emit is set,
// stores the matching herald/function.* system event in the same transaction.
type RunFinish struct {
	AppID      string          `json:"app_id"`
	FunctionID string          `json:"function_id"`
	WorkflowID string          `json:"workflow_id"`
	Status     string          `json:"status"`
	Output     json.RawMessage `json:"output,omitempty"`
	Error      string          `json:"error,omitempty"`
	Event      Event           `json:"event"`
	Emit       bool            `json:"emit"`
	// Execution is the Temporal run id of an execution that a reset made
	// (a rerun from a step): its outcome event is a new event, not a
	// duplicate of the first execution's. Empty otherwise.
	Execution string `json:"execution,omitempty"`
}

// System event names.
const (
	EventFunctionFinished  = "herald/function.finished"
	EventFunctionFailed    = "herald/function.failed"
	EventFunctionCancelled = "herald/function.cancelled"
	EventFunctionInvoked   = "herald/function.invoked"
	EventScheduledTimer    = "herald/scheduled.timer"
)
