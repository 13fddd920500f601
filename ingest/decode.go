package ingest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/oklog/ulid/v2"

	"github.com/herald-run/herald/store"
)

// Limits bound what one request may carry. The zero value of a field means its
// default.
type Limits struct {
	// MaxEventsPerRequest is the largest number of events in one request.
	// Default 5,000.
	MaxEventsPerRequest int
	// MaxBodyBytes is the largest request body. Default 3 MiB.
	MaxBodyBytes int64
	// MaxEventBytes is the largest single event, as JSON. Default 512 KiB.
	MaxEventBytes int
}

// Default limits.
const (
	DefaultMaxEventsPerRequest = 5000
	DefaultMaxBodyBytes        = 3 << 20
	DefaultMaxEventBytes       = 512 << 10
)

func (l Limits) withDefaults() Limits {
	if l.MaxEventsPerRequest <= 0 {
		l.MaxEventsPerRequest = DefaultMaxEventsPerRequest
	}
	if l.MaxBodyBytes <= 0 {
		l.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if l.MaxEventBytes <= 0 {
		l.MaxEventBytes = DefaultMaxEventBytes
	}
	return l
}

// Rules on event fields.
const (
	MaxNameLen     = 256
	MaxIDLen       = 256
	ReservedPrefix = "herald/"

	// MaxDepth is how deeply an event's data may nest objects and arrays:
	// {} is 1 level and {"a":[{}]} 3. Everything that later reads data
	// (Postgres jsonb, trigger conditions, SDK decoders) recurses once per
	// level, so deeper data is refused while the body is scanned, before any
	// of it is decoded.
	MaxDepth = 64
)

var (
	minTS = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	maxTS = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
)

// ValidationError says which event, which field and which rule a request broke.
type ValidationError struct {
	// Index is the event's position in the request; -1 for the request as a whole.
	Index int
	// Field is the JSON field at fault, empty when the event as a whole is.
	Field string
	// Rule says what the field must be.
	Rule string
}

func (e *ValidationError) Error() string {
	switch {
	case e.Index < 0:
		return e.Rule
	case e.Field == "":
		return fmt.Sprintf("event %d: %s", e.Index, e.Rule)
	default:
		return fmt.Sprintf("event %d: %s: %s", e.Index, e.Field, e.Rule)
	}
}

// wireEvent is an event as a client sends it. Fields stay raw so that each can
// be checked for its JSON type and reported by name.
type wireEvent struct {
	Name json.RawMessage `json:"name"`
	Data json.RawMessage `json:"data"`
	ID   json.RawMessage `json:"id"`
	TS   json.RawMessage `json:"ts"`
	V    json.RawMessage `json:"v"`
}

var emptyObject = json.RawMessage(`{}`)

// DecodeEvents parses a request body holding one event object or an array of
// them, validates every event, and returns them ready to store, in request
// order. Events without an id get a new ULID; events without ts get now.
// Any invalid event fails the whole request with a *ValidationError.
func DecodeEvents(body []byte, limits Limits, now time.Time) ([]store.Event, error) {
	limits = limits.withDefaults()
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, &ValidationError{Index: -1, Rule: "request body is empty: send one event object or an array of events"}
	}
	received := now.UTC().Truncate(time.Millisecond)
	if events, ok := decodeFast(body, limits, received); ok {
		return events, nil
	}
	return decodeCareful(body, limits, received)
}

// decodeCareful keeps every element raw, so an error can say which event broke
// which rule, and each event's exact size is known.
func decodeCareful(body []byte, limits Limits, received time.Time) ([]store.Event, error) {
	// Data nested too deep is found by scanning the bytes, and its event is
	// refused before it is decoded; events before it are still checked first,
	// so the error is about the first invalid event, as for every other rule.
	deep := checkDepth(body, limits)
	var raws []json.RawMessage
	switch body[0] {
	case '{':
		raws = []json.RawMessage{body}
	case '[':
		if err := json.Unmarshal(body, &raws); err != nil {
			return nil, &ValidationError{Index: -1, Rule: "request body is not valid JSON: " + jsonErrorText(err)}
		}
		if len(raws) == 0 {
			return nil, &ValidationError{Index: -1, Rule: "request body is an empty array: send at least one event"}
		}
	default:
		return nil, &ValidationError{Index: -1, Rule: "request body must be a JSON object (one event) or an array of event objects"}
	}
	if len(raws) > limits.MaxEventsPerRequest {
		return nil, &ValidationError{Index: -1, Rule: fmt.Sprintf("request holds %d events; at most %d are allowed per request", len(raws), limits.MaxEventsPerRequest)}
	}
	events := make([]store.Event, len(raws))
	for i, raw := range raws {
		if deep != nil && deep.Index == i {
			return nil, deep
		}
		if err := decodeOne(raw, i, limits, received, &events[i]); err != nil {
			return nil, err
		}
	}
	return events, nil
}

// decodeFast decodes a well-formed body in one pass over the whole body
// instead of one per element. It gives up (ok false) on anything unusual: a
// JSON error, an element that is not an object, an event anywhere near the
// size limit, or any rule broken. The careful path then produces the precise
// error, so both paths accept and reject exactly the same bodies.
func decodeFast(body []byte, limits Limits, received time.Time) (_ []store.Event, ok bool) {
	if checkDepth(body, limits) != nil {
		return nil, false
	}
	var ws []wireEvent
	if body[0] == '[' {
		if json.Unmarshal(body, &ws) != nil || len(ws) == 0 || len(ws) > limits.MaxEventsPerRequest {
			return nil, false
		}
	} else {
		if len(body) > limits.MaxEventBytes {
			return nil, false
		}
		ws = make([]wireEvent, 1)
		if json.Unmarshal(body, &ws[0]) != nil {
			return nil, false
		}
	}
	events := make([]store.Event, len(ws))
	for i := range ws {
		w := &ws[i]
		// The fields' own bytes are a lower bound of the event's size; from half
		// the limit on, let the careful path measure it exactly.
		if 2*(len(w.Name)+len(w.Data)+len(w.ID)+len(w.TS)+len(w.V)) > limits.MaxEventBytes {
			return nil, false
		}
		// A null element decodes to an empty struct, which fails on its name.
		if validateWire(w, i, received, &events[i]) != nil {
			return nil, false
		}
	}
	return events, true
}

func decodeOne(raw json.RawMessage, i int, limits Limits, received time.Time, out *store.Event) error {
	if len(raw) > limits.MaxEventBytes {
		return &ValidationError{Index: i, Rule: fmt.Sprintf("event is %d bytes; at most %d are allowed", len(raw), limits.MaxEventBytes)}
	}
	if len(raw) == 0 || raw[0] != '{' {
		return &ValidationError{Index: i, Rule: "must be a JSON object"}
	}
	var w wireEvent
	if err := json.Unmarshal(raw, &w); err != nil {
		return &ValidationError{Index: i, Rule: "not valid JSON: " + jsonErrorText(err)}
	}
	return validateWire(&w, i, received, out)
}

// validateWire checks one decoded event against every field rule and fills out.
func validateWire(w *wireEvent, i int, received time.Time, out *store.Event) error {

	// name
	if isAbsent(w.Name) {
		return &ValidationError{Index: i, Field: "name", Rule: "is required"}
	}
	name, ok := jsonString(w.Name)
	if !ok {
		return &ValidationError{Index: i, Field: "name", Rule: "must be a string"}
	}
	if n := utf8.RuneCountInString(name); n == 0 || n > MaxNameLen {
		return &ValidationError{Index: i, Field: "name", Rule: fmt.Sprintf("must be 1 to %d characters", MaxNameLen)}
	}
	if hasControl(name) {
		return &ValidationError{Index: i, Field: "name", Rule: "must not contain control characters"}
	}
	if len(name) >= len(ReservedPrefix) && strings.EqualFold(name[:len(ReservedPrefix)], ReservedPrefix) {
		return &ValidationError{Index: i, Field: "name", Rule: `must not start with "herald/": that prefix is reserved for Herald's system events`}
	}
	out.Name = name

	// data
	switch {
	case isAbsent(w.Data):
		out.Data = emptyObject
	case w.Data[0] == '{':
		if hasNULEscape(w.Data) {
			return &ValidationError{Index: i, Field: "data", Rule: `must not contain the escape \u0000 (a NUL character cannot be stored)`}
		}
		out.Data = w.Data
	default:
		return &ValidationError{Index: i, Field: "data", Rule: "must be a JSON object"}
	}

	// id
	if !isAbsent(w.ID) {
		id, ok := jsonString(w.ID)
		if !ok {
			return &ValidationError{Index: i, Field: "id", Rule: "must be a string"}
		}
		if utf8.RuneCountInString(id) > MaxIDLen {
			return &ValidationError{Index: i, Field: "id", Rule: fmt.Sprintf("must be at most %d characters", MaxIDLen)}
		}
		if hasControl(id) {
			return &ValidationError{Index: i, Field: "id", Rule: "must not contain control characters"}
		}
		out.ID = id
	}
	if out.ID == "" {
		out.ID = ulid.Make().String()
		out.Fresh = true
	}

	// ts
	out.TS = received.UnixMilli()
	if !isAbsent(w.TS) {
		ts, err := strconv.ParseInt(string(w.TS), 10, 64)
		if err != nil {
			return &ValidationError{Index: i, Field: "ts", Rule: "must be an integer: milliseconds since the Unix epoch"}
		}
		if ts != 0 { // 0 is what many clients send for "unset"
			if ts < minTS || ts >= maxTS {
				return &ValidationError{Index: i, Field: "ts", Rule: fmt.Sprintf("must be between %d (1980-01-01) and %d (2100-01-01) milliseconds since the Unix epoch", minTS, maxTS)}
			}
			out.TS = ts
		}
	}

	// v
	if !isAbsent(w.V) {
		v, ok := jsonString(w.V)
		if !ok {
			return &ValidationError{Index: i, Field: "v", Rule: "must be a string"}
		}
		if utf8.RuneCountInString(v) > MaxIDLen || hasControl(v) {
			return &ValidationError{Index: i, Field: "v", Rule: fmt.Sprintf("must be at most %d characters, without control characters", MaxIDLen)}
		}
		out.V = v
	}
	out.ReceivedAt = received
	return nil
}

// checkDepth walks body once, without decoding it, and returns the error for
// the first event whose data nests deeper than MaxDepth, or nil. Every member
// that encoding/json would read as data counts (names match case-insensitively
// and escapes are decoded), a repeated one too, although the decoder keeps
// only the last. It does not validate the JSON: what it cannot make sense of
// is left to the decoder to report. Events past MaxEventsPerRequest are not
// looked at, since the request is refused for holding too many.
func checkDepth(body []byte, limits Limits) *ValidationError {
	if len(body) == 0 || (body[0] != '{' && body[0] != '[') {
		return nil
	}
	base := 1 // depth inside an event object, where its members are
	if body[0] == '[' {
		base = 2
	}
	var (
		depth     int
		index     int    // event being scanned
		expectKey bool   // at depth base: the next string is a member name
		key       []byte // the last member name read at depth base, quoted
		dataDepth int    // depth at which the current data value opened; 0 outside data
	)
	for i := 0; i < len(body); i++ {
		switch body[i] {
		case '"':
			j := i + 1
			for j < len(body) && body[j] != '"' {
				if body[j] == '\\' {
					j++
				}
				j++
			}
			if depth == base && expectKey {
				key = body[i:min(j+1, len(body))]
				expectKey = false
			}
			i = j
		case '{', '[':
			depth++
			switch {
			case depth == base:
				expectKey = body[i] == '{'
				key = nil
			case depth == base+1 && dataDepth == 0 && isDataKey(key):
				dataDepth = depth
			}
			if dataDepth > 0 && depth-dataDepth+1 > MaxDepth {
				return &ValidationError{Index: index, Field: "data", Rule: fmt.Sprintf("must not nest objects and arrays more than %d levels deep", MaxDepth)}
			}
		case '}', ']':
			if depth == dataDepth {
				dataDepth = 0
			}
			depth--
		case ',':
			switch {
			case depth == base:
				expectKey = true
			case depth == 1 && base == 2:
				if index++; index >= limits.MaxEventsPerRequest {
					return nil
				}
			}
		}
	}
	return nil
}

// isDataKey reports whether the quoted member name key is one encoding/json
// decodes into wireEvent.Data.
func isDataKey(key []byte) bool {
	if len(key) == len(`"data"`) {
		return bytes.EqualFold(key, []byte(`"data"`))
	}
	if bytes.IndexByte(key, '\\') < 0 {
		// No letter outside ASCII folds to one of "data", so only escapes
		// make a longer name read as data.
		return false
	}
	name, ok := jsonString(key)
	return ok && strings.EqualFold(name, "data")
}

func isAbsent(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}

// jsonString decodes raw when it is a JSON string.
func jsonString(raw json.RawMessage) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	// Fast path: no escapes.
	if bytes.IndexByte(raw[1:len(raw)-1], '\\') < 0 {
		return string(raw[1 : len(raw)-1]), true
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// hasNULEscape reports whether raw JSON holds the escape \u0000, which neither
// Postgres jsonb nor text can store. An escaped backslash before "u0000" does
// not count.
func hasNULEscape(raw []byte) bool {
	for i := 0; i+5 < len(raw); i++ {
		if raw[i] != '\\' {
			continue
		}
		if raw[i+1] == 'u' && string(raw[i+2:i+6]) == "0000" {
			return true
		}
		i++ // skip the escaped character, so "\\u0000" is not read as an escape
	}
	return false
}

// jsonErrorText turns encoding/json's messages into something a client can act on.
func jsonErrorText(err error) string {
	var syn *json.SyntaxError
	if se, ok := err.(*json.SyntaxError); ok {
		syn = se
		return fmt.Sprintf("%s (at byte %d)", syn.Error(), syn.Offset)
	}
	return err.Error()
}
