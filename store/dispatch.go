package store

import (
	"errors"
	"fmt"

	"github.com/herald-run/herald/internal/wire"
)

// ErrClaimLimit is returned by ClaimEvents when limit is not positive.
var ErrClaimLimit = errors.New("store: claim limit must be positive")

// ValidateRun checks the invariants every driver relies on when it stores a
// run. An empty EventID is allowed: runs Herald did not start for a stored
// event (cron runs) have none, and drivers store it as "no event" so such runs
// never count as duplicates of each other.
func ValidateRun(r Run) error {
	if r.ID == "" || r.AppID == "" || r.FunctionID == "" {
		return fmt.Errorf("store: run %q: id, app and function are required", r.ID)
	}
	if r.Status == "" {
		return fmt.Errorf("store: run %q: status is required", r.ID)
	}
	return nil
}

// ValidateFunctionIDs rejects a sync that names one function twice; the
// drivers would otherwise disagree on which config wins.
func ValidateFunctionIDs(fns []Function) error {
	seen := make(map[string]struct{}, len(fns))
	for _, f := range fns {
		if _, dup := seen[f.ID]; dup {
			return fmt.Errorf("store: sync: function %q appears twice", f.ID)
		}
		seen[f.ID] = struct{}{}
	}
	return nil
}

// ValidateFinish checks a run passed to FinishRun: a valid run whose status
// is terminal.
func ValidateFinish(r Run) error {
	if err := ValidateRun(r); err != nil {
		return err
	}
	if !wire.RunFinished(r.Status) {
		return fmt.Errorf("store: finish run %q: status %q is not terminal", r.ID, r.Status)
	}
	return nil
}
