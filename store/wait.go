package store

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// ValidateWait checks the invariants every driver relies on when it stores a
// wait. The router and the wait activities build waits from validated
// configs; this guards programming errors.
func ValidateWait(w Wait) error {
	if w.ID == "" || w.WorkflowID == "" || w.StepID == "" || w.EventName == "" {
		return fmt.Errorf("store: wait %q: id, workflow id, step id and event name are required", w.ID)
	}
	if w.Kind != WaitKindWait && w.Kind != WaitKindCancel {
		return fmt.Errorf("store: wait %q: kind %q is neither %q nor %q", w.ID, w.Kind, WaitKindWait, WaitKindCancel)
	}
	if w.ExpiresAt.IsZero() {
		return fmt.Errorf("store: wait %q: expires_at is required", w.ID)
	}
	if (w.MatchPath == "") != (w.MatchValue == "") {
		return fmt.Errorf("store: wait %q: match path and match value are set together or not at all", w.ID)
	}
	if len(w.TriggerEvent) > 0 && !json.Valid(w.TriggerEvent) {
		return fmt.Errorf("store: wait %q: trigger event is not valid JSON", w.ID)
	}
	return nil
}

// SortWaitsByKey returns waits ordered by (WorkflowID, Kind, StepID). Drivers
// insert in this order so that two transactions inserting overlapping waits
// take their locks in the same order and cannot deadlock.
func SortWaitsByKey(waits []Wait) []Wait {
	out := append([]Wait(nil), waits...)
	sort.SliceStable(out, func(i, j int) bool {
		a, b := &out[i], &out[j]
		if a.WorkflowID != b.WorkflowID {
			return a.WorkflowID < b.WorkflowID
		}
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		return a.StepID < b.StepID
	})
	return out
}

// CandidateKeys returns the lookups CandidateWaits performs: each key once,
// and for each name the key (name, "", "") that selects its non-indexable
// waits (ValidateWait guarantees an empty MatchPath goes with an empty
// MatchValue). Keys with an empty EventName select nothing and are dropped.
func CandidateKeys(names []string, keys []WaitKey) []WaitKey {
	seen := make(map[WaitKey]struct{}, len(keys)+len(names))
	out := make([]WaitKey, 0, len(keys)+len(names))
	add := func(k WaitKey) {
		if k.EventName == "" {
			return
		}
		if _, dup := seen[k]; dup {
			return
		}
		seen[k] = struct{}{}
		out = append(out, k)
	}
	for _, k := range keys {
		add(k)
	}
	for _, n := range names {
		add(WaitKey{EventName: n})
	}
	return out
}

// ClaimResolutions returns the resolutions of claim that a driver applies:
// only those of waits the claim's CandidateWaits returned (candidate reports
// whether it did), and for each wait only the first. It fails on a
// resolution without an event.
func ClaimResolutions(resolved []WaitResolution, candidate func(waitID string) bool) ([]WaitResolution, error) {
	out := make([]WaitResolution, 0, len(resolved))
	done := make(map[string]bool, len(resolved))
	for _, r := range resolved {
		if r.EventID == "" {
			return nil, fmt.Errorf("store: resolution of wait %q names no event", r.WaitID)
		}
		if done[r.WaitID] || !candidate(r.WaitID) {
			continue
		}
		done[r.WaitID] = true
		out = append(out, r)
	}
	return out, nil
}

// DataPath returns the field names of a match path inside an event's data
// ("data.user.id" gives [user id]), or nil when the path is not in data.
func DataPath(matchPath string) []string {
	rest, ok := strings.CutPrefix(matchPath, "data.")
	if !ok || rest == "" {
		return nil
	}
	return strings.Split(rest, ".")
}
