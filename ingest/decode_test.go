package ingest_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/stretchr/testify/require"

	"github.com/herald-run/herald/ingest"
	"github.com/herald-run/herald/store"
)

var (
	// now is the receive time handed to DecodeEvents: not UTC and not a whole
	// millisecond, so the tests see both normalizations.
	now = time.Date(2026, 5, 1, 12, 30, 45, 123_456_789, time.FixedZone("CEST", 2*60*60))
	// received is what DecodeEvents must record for now.
	received = time.Date(2026, 5, 1, 10, 30, 45, 123_000_000, time.UTC)

	minTS = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	maxTS = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
)

// sized returns a valid event of exactly n bytes of JSON (n >= 26).
func sized(n int) string {
	const head, tail = `{"name":"a","data":{"p":"`, `"}}`
	return head + strings.Repeat("x", n-len(head)-len(tail)) + tail
}

// repeatEvent returns a JSON array of n copies of event.
func repeatEvent(event string, n int) string {
	return "[" + strings.TrimSuffix(strings.Repeat(event+",", n), ",") + "]"
}

// withName returns an event whose name is the JSON string literal lit.
func withName(lit string) string { return `{"name":` + lit + `}` }

// nestedObjects returns a JSON object nested depth levels deep: {} is 1 level,
// {"a":{}} 2.
func nestedObjects(depth int) string {
	return strings.Repeat(`{"a":`, depth-1) + `{}` + strings.Repeat(`}`, depth-1)
}

// nestedArrays returns a JSON object holding arrays, depth levels deep in all:
// {"a":[]} is 2 levels.
func nestedArrays(depth int) string {
	return `{"a":` + strings.Repeat(`[`, depth-1) + strings.Repeat(`]`, depth-1) + `}`
}

// withData returns an event named "a" with data, a JSON literal.
func withData(data string) string { return `{"name":"a","data":` + data + `}` }

func TestDecodeEventsRejects(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name   string
		body   string
		limits ingest.Limits
		index  int    // -1: the request as a whole
		field  string // "" for the event or request as a whole
		rule   string // part of the rule text
	}{
		// The request as a whole.
		{name: "body empty", body: "", index: -1, rule: "empty"},
		{name: "body only whitespace", body: " \n\t\r ", index: -1, rule: "empty"},
		{name: "body not JSON", body: "nope", index: -1, rule: "must be a JSON object"},
		{name: "array not JSON", body: `[{"name":"a"},`, index: -1, rule: "not valid JSON"},
		{name: "array with trailing garbage", body: `[{"name":"a"}] x`, index: -1, rule: "not valid JSON"},
		{name: "body is string", body: `"demo/x"`, index: -1, rule: "must be a JSON object"},
		{name: "body is number", body: `42`, index: -1, rule: "must be a JSON object"},
		{name: "body is null", body: `null`, index: -1, rule: "must be a JSON object"},
		{name: "body is bool", body: `true`, index: -1, rule: "must be a JSON object"},
		{name: "empty array", body: `[]`, index: -1, rule: "empty array"},
		{name: "empty array with spaces", body: " [ \n ] ", index: -1, rule: "empty array"},
		{
			name: "too many events", body: repeatEvent(`{"name":"a"}`, 4),
			limits: ingest.Limits{MaxEventsPerRequest: 3}, index: -1, rule: "request holds 4 events; at most 3",
		},
		{
			name: "too many events by default", body: repeatEvent(`{"name":"a"}`, ingest.DefaultMaxEventsPerRequest+1),
			index: -1, rule: fmt.Sprintf("at most %d", ingest.DefaultMaxEventsPerRequest),
		},

		// One event as a whole.
		{name: "single object not JSON", body: `{"name":"a"`, index: 0, rule: "not valid JSON"},
		{name: "two objects", body: `{"name":"a"} {"name":"b"}`, index: 0, rule: "not valid JSON"},
		{name: "event is number", body: `[1]`, index: 0, rule: "must be a JSON object"},
		{name: "event is null", body: `[null]`, index: 0, rule: "must be a JSON object"},
		{name: "event is string", body: `["demo/x"]`, index: 0, rule: "must be a JSON object"},
		{name: "event is array", body: `[[{"name":"a"}]]`, index: 0, rule: "must be a JSON object"},
		{name: "second event is bool", body: `[{"name":"a"}, true]`, index: 1, rule: "must be a JSON object"},
		{
			name: "event too large", body: "[" + sized(64) + "," + sized(65) + "]",
			limits: ingest.Limits{MaxEventBytes: 64}, index: 1, rule: "event is 65 bytes; at most 64",
		},
		{
			name: "single event too large", body: sized(65),
			limits: ingest.Limits{MaxEventBytes: 64}, index: 0, rule: "at most 64",
		},
		{
			name: "event too large by default", body: sized(ingest.DefaultMaxEventBytes + 1),
			index: 0, rule: fmt.Sprintf("at most %d", ingest.DefaultMaxEventBytes),
		},
		{name: "first invalid event is reported", body: `[{"name":"a"},{"name":""},{"name":1}]`, index: 1, field: "name"},

		// name
		{name: "name missing", body: `{"data":{}}`, index: 0, field: "name", rule: "is required"},
		{name: "name null", body: withName(`null`), index: 0, field: "name", rule: "is required"},
		{name: "name number", body: withName(`1`), index: 0, field: "name", rule: "must be a string"},
		{name: "name array", body: withName(`["a"]`), index: 0, field: "name", rule: "must be a string"},
		{name: "name object", body: withName(`{}`), index: 0, field: "name", rule: "must be a string"},
		{name: "name bool", body: withName(`true`), index: 0, field: "name", rule: "must be a string"},
		{name: "name empty", body: withName(`""`), index: 0, field: "name", rule: "1 to 256 characters"},
		{name: "name 257 ASCII", body: withName(`"` + strings.Repeat("a", 257) + `"`), index: 0, field: "name", rule: "1 to 256 characters"},
		{name: "name 257 two-byte runes", body: withName(`"` + strings.Repeat("ż", 257) + `"`), index: 0, field: "name", rule: "1 to 256 characters"},
		{name: "name 257 escaped runes", body: withName(`"` + strings.Repeat(`\u017c`, 257) + `"`), index: 0, field: "name", rule: "1 to 256 characters"},
		{name: "name tab", body: withName(`"a\tb"`), index: 0, field: "name", rule: "control characters"},
		{name: "name newline", body: withName(`"a\nb"`), index: 0, field: "name", rule: "control characters"},
		{name: "name NUL", body: withName(`"a\u0000b"`), index: 0, field: "name", rule: "control characters"},
		{name: "name unit separator", body: withName(`"a\u001fb"`), index: 0, field: "name", rule: "control characters"},
		{name: "name escaped DEL", body: withName(`"a\u007fb"`), index: 0, field: "name", rule: "control characters"},
		{name: "name raw DEL", body: withName("\"a\x7fb\""), index: 0, field: "name", rule: "control characters"},
		{name: "name herald prefix", body: withName(`"herald/x"`), index: 0, field: "name", rule: "reserved"},
		{name: "name HERALD prefix", body: withName(`"HERALD/x"`), index: 0, field: "name", rule: "reserved"},
		{name: "name Herald prefix", body: withName(`"Herald/x"`), index: 0, field: "name", rule: "reserved"},
		{name: "name mixed-case prefix only", body: withName(`"hErAlD/"`), index: 0, field: "name", rule: "reserved"},
		{name: "name escaped prefix", body: withName(`"\u0068erald/fn.finished"`), index: 0, field: "name", rule: "reserved"},
		{name: "name prefix in second event", body: `[{"name":"ok/x"},{"name":"herald/x"}]`, index: 1, field: "name", rule: "reserved"},

		// data
		{name: "data array", body: `{"name":"a","data":[]}`, index: 0, field: "data", rule: "must be a JSON object"},
		{name: "data array of objects", body: `{"name":"a","data":[{}]}`, index: 0, field: "data", rule: "must be a JSON object"},
		{name: "data string", body: `{"name":"a","data":"{}"}`, index: 0, field: "data", rule: "must be a JSON object"},
		{name: "data number", body: `{"name":"a","data":1}`, index: 0, field: "data", rule: "must be a JSON object"},
		{name: "data bool", body: `{"name":"a","data":false}`, index: 0, field: "data", rule: "must be a JSON object"},
		{name: "data NUL escape in value", body: `{"name":"a","data":{"s":"x\u0000y"}}`, index: 0, field: "data", rule: `\u0000`},
		{name: "data NUL escape in key", body: `{"name":"a","data":{"\u0000":1}}`, index: 0, field: "data", rule: `\u0000`},
		{name: "data NUL escape nested", body: `{"name":"a","data":{"a":[{"b":"\u0000"}]}}`, index: 0, field: "data", rule: `\u0000`},
		{name: "data NUL escape after escaped backslash", body: `{"name":"a","data":{"s":"\\\u0000"}}`, index: 0, field: "data", rule: `\u0000`},
		{name: "data NUL escape in second event", body: `[{"name":"a"},{"name":"b","data":{"s":"\u0000"}}]`, index: 1, field: "data"},

		// data nesting
		{name: "data 65 levels of objects", body: withData(nestedObjects(ingest.MaxDepth + 1)), index: 0, field: "data", rule: "more than 64 levels deep"},
		{name: "data 65 levels of arrays", body: withData(nestedArrays(ingest.MaxDepth + 1)), index: 0, field: "data", rule: "more than 64 levels deep"},
		{name: "data deeper than encoding/json allows", body: withData(nestedArrays(20_000)), index: 0, field: "data", rule: "more than 64 levels deep"},
		{name: "data too deep in an array body", body: "[" + withData(nestedObjects(ingest.MaxDepth+1)) + "]", index: 0, field: "data", rule: "levels deep"},
		{name: "data too deep in second event", body: "[" + withData(`{"s":"{[{["}`) + "," + withData(nestedArrays(ingest.MaxDepth+1)) + "]", index: 1, field: "data", rule: "levels deep"},
		{name: "data too deep after an invalid event", body: `[{"name":""},` + withData(nestedArrays(ingest.MaxDepth+1)) + "]", index: 0, field: "name", rule: "1 to 256"},
		{name: "data too deep before an invalid event", body: "[" + withData(nestedArrays(ingest.MaxDepth+1)) + `,{"name":""}]`, index: 0, field: "data", rule: "levels deep"},
		{name: "data too deep with a bad name", body: `{"name":"","data":` + nestedArrays(ingest.MaxDepth+1) + `}`, index: 0, field: "data", rule: "levels deep"},
		{name: "data key in capitals too deep", body: `{"name":"a","DATA":` + nestedObjects(ingest.MaxDepth+1) + `}`, index: 0, field: "data", rule: "levels deep"},
		{name: "data key escaped too deep", body: `{"name":"a","d\u0061ta":` + nestedObjects(ingest.MaxDepth+1) + `}`, index: 0, field: "data", rule: "levels deep"},
		{name: "data repeated, first too deep", body: `{"name":"a","data":` + nestedObjects(ingest.MaxDepth+1) + `,"data":{}}`, index: 0, field: "data", rule: "levels deep"},
		{name: "data array too deep", body: withData(strings.Repeat("[", ingest.MaxDepth+1) + strings.Repeat("]", ingest.MaxDepth+1)), index: 0, field: "data", rule: "levels deep"},
		{
			name: "too many events, one too deep", body: "[" + withData(nestedObjects(ingest.MaxDepth+1)) + "," + repeatEvent(`{"name":"a"}`, 3)[1:],
			limits: ingest.Limits{MaxEventsPerRequest: 3}, index: -1, rule: "request holds 4 events",
		},
		{
			name: "too deep and too large", body: withData(nestedObjects(ingest.MaxDepth + 1)),
			limits: ingest.Limits{MaxEventBytes: 64}, index: 0, field: "data", rule: "levels deep",
		},

		// id
		{name: "id number", body: `{"name":"a","id":1}`, index: 0, field: "id", rule: "must be a string"},
		{name: "id bool", body: `{"name":"a","id":true}`, index: 0, field: "id", rule: "must be a string"},
		{name: "id object", body: `{"name":"a","id":{}}`, index: 0, field: "id", rule: "must be a string"},
		{name: "id 257 ASCII", body: `{"name":"a","id":"` + strings.Repeat("i", 257) + `"}`, index: 0, field: "id", rule: "at most 256"},
		{name: "id 257 two-byte runes", body: `{"name":"a","id":"` + strings.Repeat("ż", 257) + `"}`, index: 0, field: "id", rule: "at most 256"},
		{name: "id control character", body: `{"name":"a","id":"a\nb"}`, index: 0, field: "id", rule: "control characters"},

		// Unicode control, format and separator characters (issue: accepted
		// before, and invisible or reordering text in logs and terminals).
		{name: "name NEL U+0085", body: "{\"name\":\"a\u0085b\"}", index: 0, field: "name", rule: "control characters"},
		{name: "name line separator U+2028", body: "{\"name\":\"a\u2028b\"}", index: 0, field: "name", rule: "line separators"},
		{name: "name right-to-left override U+202E", body: "{\"name\":\"a\u202eb\"}", index: 0, field: "name", rule: "format characters"},
		{name: "name zero width space U+200B", body: "{\"name\":\"a\u200bb\"}", index: 0, field: "name", rule: "format characters"},
		{name: "name raw U+202E", body: "{\"name\":\"a\u202eb\"}", index: 0, field: "name", rule: "format characters"},
		{name: "id U+2029", body: "{\"name\":\"a\",\"id\":\"x\u2029\"}", index: 0, field: "id", rule: "line separators"},
		{name: "v U+200B", body: "{\"name\":\"a\",\"v\":\"1\u200b\"}", index: 0, field: "v", rule: "format characters"},

		// data Herald could not store or evaluate
		{name: "data number beyond float64", body: withData(`{"x":1e400}`), index: 0, field: "data", rule: "64-bit float"},
		{name: "data negative number beyond float64", body: withData(`{"x":[-1.5E+309]}`), index: 0, field: "data", rule: "64-bit float"},
		{name: "data 401-digit number", body: withData(`{"x":1` + strings.Repeat("0", 400) + `}`), index: 0, field: "data", rule: "64-bit float"},
		{name: "data number underflowing float64", body: withData(`{"x":1e-20000}`), index: 0, field: "data", rule: "64-bit float"},
		{name: "data invalid UTF-8", body: withData("{\"s\":\"a\xffb\"}"), index: 0, field: "data", rule: "valid UTF-8"},
		{name: "data lone high surrogate", body: withData(`{"s":"\ud800"}`), index: 0, field: "data", rule: "surrogate"},
		{name: "data lone low surrogate", body: withData(`{"s":"x\uDC00"}`), index: 0, field: "data", rule: "surrogate"},
		{name: "data high surrogate then a letter", body: withData(`{"s":"\ud800\u0041"}`), index: 0, field: "data", rule: "surrogate"},
		{name: "data surrogate in a key", body: withData(`{"\ud83d":1}`), index: 0, field: "data", rule: "surrogate"},

		// ts
		{name: "ts float", body: `{"name":"a","ts":1714564800123.5}`, index: 0, field: "ts", rule: "must be an integer"},
		{name: "ts integral float", body: `{"name":"a","ts":1714564800123.0}`, index: 0, field: "ts", rule: "must be an integer"},
		{name: "ts exponent", body: `{"name":"a","ts":1.7e12}`, index: 0, field: "ts", rule: "must be an integer"},
		{name: "ts string", body: `{"name":"a","ts":"1714564800123"}`, index: 0, field: "ts", rule: "must be an integer"},
		{name: "ts bool", body: `{"name":"a","ts":true}`, index: 0, field: "ts", rule: "must be an integer"},
		{name: "ts overflows int64", body: `{"name":"a","ts":99999999999999999999}`, index: 0, field: "ts", rule: "must be an integer"},
		{name: "ts negative", body: `{"name":"a","ts":-1}`, index: 0, field: "ts", rule: "between"},
		{name: "ts seconds not ms", body: `{"name":"a","ts":1714564800}`, index: 0, field: "ts", rule: "between"},
		{name: "ts just before 1980", body: fmt.Sprintf(`{"name":"a","ts":%d}`, minTS-1), index: 0, field: "ts", rule: "between"},
		{name: "ts at 2100", body: fmt.Sprintf(`{"name":"a","ts":%d}`, maxTS), index: 0, field: "ts", rule: "between"},
		{name: "ts after 2100", body: fmt.Sprintf(`{"name":"a","ts":%d}`, maxTS+86_400_000), index: 0, field: "ts", rule: "between"},

		// v
		{name: "v number", body: `{"name":"a","v":1}`, index: 0, field: "v", rule: "must be a string"},
		{name: "v bool", body: `{"name":"a","v":false}`, index: 0, field: "v", rule: "must be a string"},
		{name: "v object", body: `{"name":"a","v":{"major":1}}`, index: 0, field: "v", rule: "must be a string"},
		{name: "v 257 characters", body: `{"name":"a","v":"` + strings.Repeat("v", 257) + `"}`, index: 0, field: "v", rule: "at most 256"},
		{name: "v control character", body: `{"name":"a","v":"1\t2"}`, index: 0, field: "v", rule: "control characters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			events, err := ingest.DecodeEvents([]byte(tt.body), tt.limits, now)
			require.Nil(t, events)
			var verr *ingest.ValidationError
			require.ErrorAs(t, err, &verr)
			require.Equal(t, tt.index, verr.Index, "index; error: %v", err)
			require.Equal(t, tt.field, verr.Field, "field; error: %v", err)
			require.Contains(t, verr.Rule, tt.rule)

			// The message a client reads names the event and the field.
			msg := err.Error()
			switch {
			case tt.index < 0:
				require.Equal(t, verr.Rule, msg)
				require.False(t, strings.HasPrefix(msg, "event "), msg)
			case tt.field == "":
				require.Equal(t, fmt.Sprintf("event %d: %s", tt.index, verr.Rule), msg)
			default:
				require.Equal(t, fmt.Sprintf("event %d: %s: %s", tt.index, tt.field, verr.Rule), msg)
			}
		})
	}
}

// decodeOne decodes body with default limits and returns its only event.
func decodeOne(t *testing.T, body string) store.Event {
	t.Helper()
	events, err := ingest.DecodeEvents([]byte(body), ingest.Limits{}, now)
	require.NoError(t, err)
	require.Len(t, events, 1)
	return events[0]
}

func requireULID(t *testing.T, id string) {
	t.Helper()
	require.Len(t, id, 26)
	_, err := ulid.ParseStrict(id)
	require.NoError(t, err, "id %q is not a ULID", id)
}

func TestDecodeEventsAccepts(t *testing.T) {
	t.Parallel()

	// names are accepted when they are 1 to 256 runes of anything but control
	// characters, outside the reserved prefix.
	names := map[string]struct{ literal, want string }{
		"one character":           {`"a"`, "a"},
		"256 ASCII":               {`"` + strings.Repeat("a", 256) + `"`, strings.Repeat("a", 256)},
		"256 two-byte runes":      {`"` + strings.Repeat("ż", 256) + `"`, strings.Repeat("ż", 256)},
		"256 four-byte runes":     {`"` + strings.Repeat("😀", 256) + `"`, strings.Repeat("😀", 256)},
		"256 escaped runes":       {`"` + strings.Repeat(`\u017c`, 256) + `"`, strings.Repeat("ż", 256)},
		"escaped slash and quote": {`"a\/b \"c\""`, `a/b "c"`},
		"heraldx prefix":          {`"heraldx/y"`, "heraldx/y"},
		"herald without slash":    {`"herald"`, "herald"},
		"herald dot":              {`"herald.io/signup"`, "herald.io/signup"},
		"herald not at start":     {`"app/herald/x"`, "app/herald/x"},
		"spaces inside":           {`"user signed up"`, "user signed up"},
	}
	for name, tc := range names {
		t.Run("name "+name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, decodeOne(t, withName(tc.literal)).Name)
		})
	}

	t.Run("data absent is empty object", func(t *testing.T) {
		t.Parallel()
		require.Equal(t, `{}`, string(decodeOne(t, `{"name":"a"}`).Data))
	})
	t.Run("data null is empty object", func(t *testing.T) {
		t.Parallel()
		require.Equal(t, `{}`, string(decodeOne(t, `{"name":"a","data":null}`).Data))
	})
	t.Run("data kept verbatim", func(t *testing.T) {
		t.Parallel()
		data := `{ "b": [1, 2.5, "x", null, true], "a": {"nested": {}}, "u": "żółw \u2713 \n" }`
		require.Equal(t, data, string(decodeOne(t, `{"name":"a","data":`+data+`}`).Data))
	})
	t.Run("data numbers and strings a 64-bit float and UTF-8 can hold", func(t *testing.T) {
		t.Parallel()
		for _, data := range []string{
			`{"n":1.7976931348623157e308}`,
			`{"n":-1e308,"m":1e-300,"z":0e-99999,"w":0.000}`,
			`{"n":123456789012345678901234567890}`,
			`{"s":"\ud83d\ude00 paired surrogates"}`,
			`{"s":"\\ud800 is text here, not an escape"}`,
			`{"s":"1e400 in a string is not a number"}`,
			`{"e":"\u00e9","emoji":"😀","nel in data":"\u0085"}`,
		} {
			require.Equal(t, data, string(decodeOne(t, `{"name":"a","data":`+data+`}`).Data))
		}
	})
	t.Run("data escaped backslash before u0000", func(t *testing.T) {
		t.Parallel()
		for _, data := range []string{
			`{"s":"\\u0000"}`,
			`{"s":"\\\\u0000"}`,
			`{"\\u0000":"x"}`,
			`{"s":"\u005cu0000"}`,
			`{"s":"\u0001"}`,
		} {
			e := decodeOne(t, `{"name":"a","data":`+data+`}`)
			require.Equal(t, data, string(e.Data))
		}
	})

	t.Run("data nested 64 levels", func(t *testing.T) {
		t.Parallel()
		for _, data := range []string{
			nestedObjects(ingest.MaxDepth),
			nestedArrays(ingest.MaxDepth),
			`{"a":[` + nestedObjects(ingest.MaxDepth-2) + `,` + nestedArrays(ingest.MaxDepth-2) + `]}`,
		} {
			require.Equal(t, data, string(decodeOne(t, withData(data)).Data))
			events, err := ingest.DecodeEvents([]byte(repeatEvent(withData(data), 3)), ingest.Limits{}, now)
			require.NoError(t, err)
			require.Len(t, events, 3)
		}
	})
	t.Run("data brackets inside strings do not nest", func(t *testing.T) {
		t.Parallel()
		deep := strings.Repeat("[{", 100)
		for _, data := range []string{
			`{"s":"` + deep + `"}`,
			`{"` + deep + `":1}`,
			`{"s":"\"` + deep + `\\"}`,
			`{"s":"\\","t":"` + deep + `"}`,
		} {
			require.Equal(t, data, string(decodeOne(t, withData(data)).Data))
		}
	})
	t.Run("deep members other than data are ignored", func(t *testing.T) {
		t.Parallel()
		// Unknown members are dropped, never stored nor evaluated, so only
		// encoding/json's own limit (10,000 levels) applies to them.
		for _, member := range []string{`"extra"`, `"metadata"`, `"dat"`, `"datas"`, `"d\u0061t"`} {
			e := decodeOne(t, `{"name":"a",`+member+`:`+nestedArrays(1000)+`}`)
			require.Equal(t, `{}`, string(e.Data), member)
		}
	})

	t.Run("id absent is a fresh ULID per event", func(t *testing.T) {
		t.Parallel()
		events, err := ingest.DecodeEvents([]byte(repeatEvent(`{"name":"a"}`, 50)), ingest.Limits{}, now)
		require.NoError(t, err)
		seen := map[string]bool{}
		for _, e := range events {
			requireULID(t, e.ID)
			require.True(t, e.Fresh, "a generated id is fresh")
			require.False(t, seen[e.ID], "duplicate generated id %s", e.ID)
			seen[e.ID] = true
		}
	})
	t.Run("id empty or null is a ULID", func(t *testing.T) {
		t.Parallel()
		for _, body := range []string{`{"name":"a","id":""}`, `{"name":"a","id":null}`} {
			e := decodeOne(t, body)
			requireULID(t, e.ID)
			require.True(t, e.Fresh, body)
		}
	})
	t.Run("id kept verbatim", func(t *testing.T) {
		t.Parallel()
		// A client's id, even one shaped like a ULID, may repeat: never fresh.
		clientULID := decodeOne(t, `{"name":"a","id":"01J0000000000000000000000A"}`)
		require.Equal(t, "01J0000000000000000000000A", clientULID.ID)
		require.False(t, clientULID.Fresh)
		require.Equal(t, "order/42 ż", decodeOne(t, `{"name":"a","id":"order/42 \u017c"}`).ID)
		require.Equal(t, strings.Repeat("i", 256), decodeOne(t, `{"name":"a","id":"`+strings.Repeat("i", 256)+`"}`).ID)
		require.Equal(t, strings.Repeat("ż", 256), decodeOne(t, `{"name":"a","id":"`+strings.Repeat("ż", 256)+`"}`).ID)
	})

	tsCases := map[string]struct {
		literal string
		want    int64
	}{
		"absent":        {"", received.UnixMilli()},
		"null":          {`,"ts":null`, received.UnixMilli()},
		"zero":          {`,"ts":0`, received.UnixMilli()},
		"negative zero": {`,"ts":-0`, received.UnixMilli()},
		"1980 exactly":  {fmt.Sprintf(`,"ts":%d`, minTS), minTS},
		"just before 2100": {
			fmt.Sprintf(`,"ts":%d`, maxTS-1), maxTS - 1,
		},
		"client time": {`,"ts":1714564800123`, 1714564800123},
	}
	for name, tc := range tsCases {
		t.Run("ts "+name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, decodeOne(t, `{"name":"a"`+tc.literal+`}`).TS)
		})
	}

	vCases := map[string]struct{ literal, want string }{
		"absent":             {"", ""},
		"null":               {`,"v":null`, ""},
		"empty":              {`,"v":""`, ""},
		"date version":       {`,"v":"2024-01-01.1"`, "2024-01-01.1"},
		"256 characters":     {`,"v":"` + strings.Repeat("v", 256) + `"`, strings.Repeat("v", 256)},
		"256 two-byte runes": {`,"v":"` + strings.Repeat("ż", 256) + `"`, strings.Repeat("ż", 256)},
	}
	for name, tc := range vCases {
		t.Run("v "+name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, decodeOne(t, `{"name":"a"`+tc.literal+`}`).V)
		})
	}

	t.Run("unknown fields ignored", func(t *testing.T) {
		t.Parallel()
		e := decodeOne(t, `{"name":"a","user":{"id":1},"extra":[1,2]}`)
		require.Equal(t, "a", e.Name)
		require.Equal(t, `{}`, string(e.Data))
	})
	t.Run("whitespace around body", func(t *testing.T) {
		t.Parallel()
		require.Equal(t, "a", decodeOne(t, " \n\t{\"name\":\"a\"}\r\n ").Name)
		require.Equal(t, "a", decodeOne(t, " \n[ {\"name\":\"a\"} ]\n").Name)
	})
	t.Run("event exactly at size limit", func(t *testing.T) {
		t.Parallel()
		events, err := ingest.DecodeEvents([]byte("["+sized(64)+", "+sized(64)+"]"), ingest.Limits{MaxEventBytes: 64}, now)
		require.NoError(t, err)
		require.Len(t, events, 2)
		events, err = ingest.DecodeEvents([]byte(sized(ingest.DefaultMaxEventBytes)), ingest.Limits{}, now)
		require.NoError(t, err)
		require.Len(t, events, 1)
	})
	t.Run("events exactly at count limit", func(t *testing.T) {
		t.Parallel()
		events, err := ingest.DecodeEvents([]byte(repeatEvent(`{"name":"a"}`, 3)), ingest.Limits{MaxEventsPerRequest: 3}, now)
		require.NoError(t, err)
		require.Len(t, events, 3)
		events, err = ingest.DecodeEvents([]byte(repeatEvent(`{"name":"a"}`, ingest.DefaultMaxEventsPerRequest)), ingest.Limits{}, now)
		require.NoError(t, err)
		require.Len(t, events, ingest.DefaultMaxEventsPerRequest)
	})
}

func TestDecodeEventsFullEvent(t *testing.T) {
	t.Parallel()
	e := decodeOne(t, `{"name":"demo/user.signup","data":{"plan":"pro"},"id":"evt-1","ts":1714564800123,"v":"2"}`)
	require.Equal(t, store.Event{
		ID:         "evt-1",
		Name:       "demo/user.signup",
		Data:       json.RawMessage(`{"plan":"pro"}`),
		TS:         1714564800123,
		V:          "2",
		ReceivedAt: received,
	}, e)
}

func TestDecodeEventsKeepsRequestOrder(t *testing.T) {
	t.Parallel()
	var parts []string
	for i := range 20 {
		if i%3 == 0 {
			parts = append(parts, fmt.Sprintf(`{"name":"order/%d","id":"id-%d"}`, i, i))
		} else {
			parts = append(parts, fmt.Sprintf(`{"name":"order/%d"}`, i))
		}
	}
	events, err := ingest.DecodeEvents([]byte("["+strings.Join(parts, ",")+"]"), ingest.Limits{}, now)
	require.NoError(t, err)
	require.Len(t, events, 20)
	for i, e := range events {
		require.Equal(t, fmt.Sprintf("order/%d", i), e.Name)
		if i%3 == 0 {
			require.Equal(t, fmt.Sprintf("id-%d", i), e.ID)
			require.False(t, e.Fresh)
		} else {
			requireULID(t, e.ID)
			require.True(t, e.Fresh)
		}
	}
}

func TestDecodeEventsReceivedAt(t *testing.T) {
	t.Parallel()
	events, err := ingest.DecodeEvents([]byte(`[{"name":"a"},{"name":"b","ts":1714564800123}]`), ingest.Limits{}, now)
	require.NoError(t, err)
	for _, e := range events {
		require.Equal(t, received, e.ReceivedAt, "received_at is now, in UTC, truncated to the millisecond")
		require.Equal(t, time.UTC, e.ReceivedAt.Location())
		require.Zero(t, e.ReceivedAt.Nanosecond()%int(time.Millisecond))
		require.False(t, e.Dispatched)
	}
	require.Equal(t, received.UnixMilli(), events[0].TS, "ts defaults to the receive time")
	require.Equal(t, int64(1714564800123), events[1].TS)
}

func TestValidationErrorMessage(t *testing.T) {
	t.Parallel()
	require.Equal(t, "request body is empty", (&ingest.ValidationError{Index: -1, Rule: "request body is empty"}).Error())
	require.Equal(t, "event 3: must be a JSON object", (&ingest.ValidationError{Index: 3, Rule: "must be a JSON object"}).Error())
	require.Equal(t, "event 0: name: is required", (&ingest.ValidationError{Index: 0, Field: "name", Rule: "is required"}).Error())
}
