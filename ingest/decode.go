package ingest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/oklog/ulid/v2"

	"github.com/herald-run/herald/internal/wire"
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
		return &ValidationError{Index: i, Field: "name", Rule: "must not contain control characters, Unicode format characters or line separators"}
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
		if rule := dataRule(w.Data); rule != "" {
			return &ValidationError{Index: i, Field: "data", Rule: rule}
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
			return &ValidationError{Index: i, Field: "id", Rule: "must not contain control characters, Unicode format characters or line separators"}
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
			return &ValidationError{Index: i, Field: "v", Rule: fmt.Sprintf("must be at most %d characters, without control characters, Unicode format characters or line separators", MaxIDLen)}
		}
		out.V = v
	}
	out.ReceivedAt = received
	return nil
}

// refuseDerivedIDs refuses events whose id is in the space Herald derives its
// own event ids in (wire.DerivedIDPrefix): a client that could send such an
// id first would suppress the system event or step event Herald stores under
// it. Only signed requests (workers) may use it.
func refuseDerivedIDs(events []store.Event) error {
	for i := range events {
		if !events[i].Fresh && strings.HasPrefix(events[i].ID, wire.DerivedIDPrefix) {
			return &ValidationError{Index: i, Field: "id", Rule: fmt.Sprintf("must not start with %q: that prefix is reserved for the ids Herald derives for its own events", wire.DerivedIDPrefix)}
		}
	}
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

// hasControl reports whether s holds a character that has no place in a name
// or id: an ASCII or Unicode control character (U+0000-U+001F, U+007F,
// U+0080-U+009F such as U+0085), a format character (Cf: U+200B, the
// bidirectional overrides such as U+202E, ...), or a line or paragraph
// separator (U+2028, U+2029). They are invisible or reorder text in logs,
// the console and terminals.
func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f {
			return true
		}
		if c >= utf8.RuneSelf {
			return hasUnicodeControl(s[i:])
		}
	}
	return false
}

func hasUnicodeControl(s string) bool {
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || unicode.Is(unicode.Zl, r) || unicode.Is(unicode.Zp, r) {
			return true
		}
	}
	return false
}

// dataRule returns the rule an event's data (syntactically valid JSON, as
// the decoder has checked) breaks, or "". Herald must be able to store and
// evaluate every event it accepts, so it refuses what Postgres or the
// expression evaluator cannot take: invalid UTF-8, the escape \u0000, a
// lone UTF-16 surrogate escape, and a number beyond the range of a 64-bit
// float. It is one pass over the bytes; only numbers with an exponent or
// more than 15 digits are parsed.
func dataRule(raw []byte) string {
	if !utf8.Valid(raw) {
		return "must be valid UTF-8"
	}
	inString := false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if inString {
			switch {
			case c == '"':
				inString = false
			case c == '\\' && i+5 < len(raw) && raw[i+1] == 'u':
				r := hex4(raw[i+2 : i+6])
				switch {
				case r == 0:
					return `must not contain the escape \u0000 (a NUL character cannot be stored)`
				case r >= 0xD800 && r < 0xDC00:
					// A high surrogate must be followed by a low one.
					if i+11 < len(raw) && raw[i+6] == '\\' && raw[i+7] == 'u' {
						if lo := hex4(raw[i+8 : i+12]); lo >= 0xDC00 && lo < 0xE000 {
							i += 11
							continue
						}
					}
					return "must not contain a lone UTF-16 surrogate escape (\\uD800 to \\uDFFF without its pair)"
				case r >= 0xDC00 && r < 0xE000:
					return "must not contain a lone UTF-16 surrogate escape (\\uD800 to \\uDFFF without its pair)"
				}
				i += 5
			case c == '\\':
				i++ // the escaped character, so "\\u0000" is not read as an escape
			}
			continue
		}
		switch {
		case c == '"':
			inString = true
		case c == '-' || c >= '0' && c <= '9':
			j, exp := i+1, false
			for ; j < len(raw); j++ {
				d := raw[j]
				if d == 'e' || d == 'E' {
					exp = true
				} else if !(d >= '0' && d <= '9' || d == '.' || d == '+' || d == '-') {
					break
				}
			}
			if exp || j-i > 15 {
				if !float64Representable(raw[i:j]) {
					return "must not hold a number a 64-bit float cannot represent (beyond about ±1.8e308, or nonzero below about 4.9e-324)"
				}
			}
			i = j - 1
		}
	}
	return ""
}

// float64Representable reports whether the JSON number num is within
// float64's range: neither too large (ParseFloat's range error) nor a nonzero
// number that rounds to zero (which PostgreSQL's numeric refuses past its
// scale, and which would not compare as the sender meant).
func float64Representable(num []byte) bool {
	f, err := strconv.ParseFloat(string(num), 64)
	if err != nil {
		return false
	}
	if f != 0 {
		return true
	}
	for _, d := range num {
		switch {
		case d == 'e' || d == 'E':
			return true // only zeros before the exponent: a true zero
		case d >= '1' && d <= '9':
			return false
		}
	}
	return true
}

// hex4 decodes four hex digits; the decoder has checked they are hex.
func hex4(b []byte) rune {
	var r rune
	for _, c := range b {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c-'a') + 10
		case c >= 'A' && c <= 'F':
			r |= rune(c-'A') + 10
		}
	}
	return r
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
