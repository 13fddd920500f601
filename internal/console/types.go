package console

import (
	"time"

	"github.com/herald-run/herald/ingest"
	"github.com/herald-run/herald/internal/wire"
)

// The API's JSON, as the console reads it: the REST API's own types, so the
// two cannot drift. Fields the API does not send (an older Herald) stay zero
// and are left out of the pages.

type (
	eventJSON   = ingest.EventJSON
	runJSON     = ingest.RunJSON
	waitJSON    = ingest.WaitJSON
	webhookJSON = ingest.WebhookJSON
	replayJSON  = ingest.ReplayJSON
)

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
