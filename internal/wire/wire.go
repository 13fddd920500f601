// Package wire holds the JSON shapes Herald's own components exchange: the
// worker's app sync, the router's workflow input, a run's result. Users never
// see them; the root package converts to and from its public types.
package wire

import "encoding/json"

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
}

// TriggerConfig is one trigger of a function: an event pattern with an
// optional CEL filter, or a cron expression.
type TriggerConfig struct {
	Event string `json:"event,omitempty"`
	If    string `json:"if,omitempty"`
	Cron  string `json:"cron,omitempty"`
}

// FunctionConfig is a function's configuration as a worker syncs it.
type FunctionConfig struct {
	ID       string          `json:"id"`
	Name     string          `json:"name,omitempty"`
	Triggers []TriggerConfig `json:"triggers"`
	Retries  int             `json:"retries"`
}

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

// Run statuses.
const (
	StatusScheduled = "Scheduled"
	StatusRunning   = "Running"
	StatusCompleted = "Completed"
	StatusFailed    = "Failed"
	StatusCancelled = "Cancelled"
	StatusSkipped   = "Skipped"
)

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
}

// System event names.
const (
	EventFunctionFinished  = "herald/function.finished"
	EventFunctionFailed    = "herald/function.failed"
	EventFunctionCancelled = "herald/function.cancelled"
	EventFunctionInvoked   = "herald/function.invoked"
	EventScheduledTimer    = "herald/scheduled.timer"
)
