package triggers

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

var pathPattern = regexp.MustCompile(`^(data(\.[A-Za-z_][A-Za-z0-9_]*)+|name|id|v|ts)$`)

// ValidatePath checks a match path such as "data.userId": "name", "id", "v",
// "ts", or "data" followed by one or more field names.
func ValidatePath(path string) error {
	if !pathPattern.MatchString(path) {
		return fmt.Errorf("match path %q: use a field of the event such as data.userId (data.<field>[.<field>...], name, id, v or ts)", path)
	}
	return nil
}

// PathValue returns the value at path in an event activation (as built by
// EventActivation) encoded as compact JSON, the form wait keys are stored in.
// ok is false when the event has no value there (or it is null).
func PathValue(act map[string]any, path string) (value string, ok bool) {
	var cur any = act
	for _, seg := range strings.Split(path, ".") {
		m, isMap := cur.(map[string]any)
		if !isMap {
			return "", false
		}
		if cur, ok = m[seg]; !ok {
			return "", false
		}
	}
	if cur == nil {
		return "", false
	}
	raw, err := json.Marshal(cur)
	if err != nil {
		return "", false
	}
	return string(raw), true
}
