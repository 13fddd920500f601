package console

import (
	"encoding/json"
	"time"

	"github.com/herald-run/herald/internal/wire"
)

// The API's JSON, as the console reads it. Fields the API does not send
// (an older Herald) stay zero and are left out of the pages.

type eventJSON struct {
	ID         string          `json:"id"`
	Name       string          `json:"name"`
	Data       json.RawMessage `json:"data"`
	TS         int64           `json:"ts"`
	V          string          `json:"v"`
	ReceivedAt time.Time       `json:"received_at"`
}

type runJSON struct {
	RunID      string          `json:"run_id"`
	AppID      string          `json:"app_id"`
	FunctionID string          `json:"function_id"`
	EventID    string          `json:"event_id"`
	WorkflowID string          `json:"workflow_id"`
	Status     string          `json:"status"`
	Output     json.RawMessage `json:"output"`
	Error      string          `json:"error"`
	StartedAt  time.Time       `json:"started_at"`
	EndedAt    *time.Time      `json:"ended_at"`
	ReplayOf   string          `json:"replay_of"`
	ReplayID   string          `json:"replay_id"`
}

// functionJSON is a GET /v1/functions item. Beyond the triggers it reads
// the flow-control fields under the names a worker syncs them with, for an
// API that reports them.
type functionJSON struct {
	ID        string               `json:"id"`
	AppID     string               `json:"app_id"`
	Slug      string               `json:"function_id"`
	Name      string               `json:"name"`
	Version   int                  `json:"version"`
	Triggers  []wire.TriggerConfig `json:"triggers"`
	Retries   int                  `json:"retries"`
	UpdatedAt time.Time            `json:"updated_at"`
	Paused    bool                 `json:"paused"`
	PausedAt  *time.Time           `json:"paused_at"`

	CancelOn    []wire.CancelOnConfig    `json:"cancel_on"`
	Concurrency []wire.ConcurrencyConfig `json:"concurrency"`
	Throttle    *wire.ThrottleConfig     `json:"throttle"`
	RateLimit   *wire.RateLimitConfig    `json:"rate_limit"`
	Debounce    *wire.DebounceConfig     `json:"debounce"`
	Batch       *wire.BatchConfig        `json:"batch"`
	Priority    *wire.PriorityConfig     `json:"priority"`
	Singleton   *wire.SingletonConfig    `json:"singleton"`
	Idempotency string                   `json:"idempotency"`
	Timeouts    *wire.TimeoutsConfig     `json:"timeouts"`
	// Config, when the API nests the synced configuration, holds it.
	Config *wire.FunctionConfig `json:"config"`
}

type waitJSON struct {
	ID         string     `json:"id"`
	Kind       string     `json:"kind"`
	AppID      string     `json:"app_id"`
	FunctionID string     `json:"function_id"`
	RunID      string     `json:"run_id"`
	WorkflowID string     `json:"workflow_id"`
	StepID     string     `json:"step_id"`
	EventName  string     `json:"event_name"`
	MatchPath  string     `json:"match_path"`
	MatchValue string     `json:"match_value"`
	If         string     `json:"if"`
	ExpiresAt  *time.Time `json:"expires_at"`
	CreatedAt  time.Time  `json:"created_at"`
}

type webhookJSON struct {
	ID     string `json:"id"`
	URL    string `json:"url"`
	Name   string `json:"name"`
	Verify struct {
		Scheme    string `json:"scheme"`
		SecretSet bool   `json:"secret_set"`
	} `json:"verify"`
	Transform   string    `json:"transform"`
	AllowEvents []string  `json:"allow_events"`
	CreatedAt   time.Time `json:"created_at"`
}

type replayJSON struct {
	ID         string    `json:"id"`
	FunctionID string    `json:"function_id"`
	Status     string    `json:"status"`
	Matched    int64     `json:"matched"`
	Started    int64     `json:"started"`
	Skipped    int64     `json:"skipped"`
	Error      string    `json:"error"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}
