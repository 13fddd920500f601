package herald

import (
	"encoding/json"
	"fmt"

	"github.com/herald-run/herald/internal/wire"
)

// Event is an event a function sends with step.SendEvent.
type Event struct {
	// ID is the deduplication key; empty means Herald derives one from the run
	// and step, so a retried step never sends twice.
	ID string `json:"id,omitempty"`
	// Name is required, for example "billing/invoice.paid". Names starting
	// with "herald/" are reserved.
	Name string `json:"name"`
	// Data is anything that encodes to a JSON object (a struct or a map); nil
	// means {}.
	Data any `json:"data,omitempty"`
	// TS is the event time in milliseconds since the epoch; 0 means now. A
	// time in the future delays the runs it triggers.
	TS int64 `json:"ts,omitempty"`
	// V is an optional payload version.
	V string `json:"v,omitempty"`
}

// TypedEvent is an event a function received, with its data decoded into T.
type TypedEvent[T any] struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Data T      `json:"data"`
	// TS is the event time in milliseconds since the epoch.
	TS int64  `json:"ts"`
	V  string `json:"v,omitempty"`
}

// Input is what a function receives.
type Input[T any] struct {
	// Event is the event that started the run. For a cron run it is a
	// herald/scheduled.timer event; for an invoked run, herald/function.invoked.
	Event TypedEvent[T]
	// Events holds every event of a batched run; otherwise just Event.
	Events []TypedEvent[T]
	// RunID is Herald's id of this run.
	RunID string
	// Attempt is the workflow attempt, starting at 1.
	Attempt int
}

func decodeEvent[T any](e wire.Event) (TypedEvent[T], error) {
	out := TypedEvent[T]{ID: e.ID, Name: e.Name, TS: e.TS, V: e.V}
	if len(e.Data) > 0 {
		if err := json.Unmarshal(e.Data, &out.Data); err != nil {
			return out, fmt.Errorf("herald: event %s (%s): data does not decode into %T: %w", e.ID, e.Name, out.Data, err)
		}
	}
	return out, nil
}
