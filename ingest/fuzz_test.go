package ingest_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/herald-run/herald/ingest"
)

// fuzzLimits are small so the fuzzer reaches the limits with short inputs.
var fuzzLimits = ingest.Limits{MaxEventsPerRequest: 8, MaxEventBytes: 512}

// FuzzDecodeEvents checks the invariants every caller of DecodeEvents relies
// on: it never panics, a failure is always a *ValidationError, and an accepted
// event is always storable (id, name, object data without NUL, ts in range).
// The seeds below run in every `go test`; `go test -fuzz FuzzDecodeEvents
// ./ingest` explores from them.
func FuzzDecodeEvents(f *testing.F) {
	seeds := []string{
		// Valid.
		`{"name":"demo/user.signup"}`,
		`{"name":"demo/user.signup","data":{"plan":"pro"},"id":"evt-1","ts":1714564800123,"v":"2024-01-01.1"}`,
		`[{"name":"a"},{"name":"b","id":"x"},{"name":"c","data":{"n":[1,2.5,null,true,"s"]}}]`,
		` [ {"name":"a"} ] `,
		`{"name":"a","data":null,"id":null,"ts":null,"v":null}`,
		`{"name":"a","id":"","ts":0}`,
		`{"name":"a","ts":315532800000}`,
		`{"name":"a","ts":4102444799999}`,
		`{"name":"a","data":{"s":"\\u0000"}}`,
		`{"name":"a","data":{"s":"\u005cu0000"}}`,
		`{"name":"a","data":{"s":"\ud83d\ude00 \u2713"}}`,
		`{"name":"\u017c\u00f3\u0142w","id":"\u017c"}`,
		`{"name":"heraldx/y"}`,
		`{"name":"a","extra":{"deep":[[[]]]}}`,
		`{"NAME":"case/insensitive","Data":{}}`,
		`{"name":"a","name":"b"}`,
		`[{"name":"a","id":"same"},{"name":"b","id":"same"}]`,
		"[" + strings.TrimSuffix(strings.Repeat(`{"name":"a"},`, 8), ",") + "]",
		sized(512),
		// Invalid.
		``,
		`   `,
		`null`,
		`"x"`,
		`42`,
		`[]`,
		`[{"name":"a"},`,
		`{"name":"a"`,
		`{"name":"a"} {"name":"b"}`,
		"[" + strings.TrimSuffix(strings.Repeat(`{"name":"a"},`, 9), ",") + "]",
		sized(513),
		`[1]`,
		`[null]`,
		`[[]]`,
		`{}`,
		`{"name":""}`,
		`{"name":1}`,
		`{"name":"a\tb"}`,
		`{"name":"a\u0000b"}`,
		"{\"name\":\"a\x7f\"}",
		`{"name":"herald/x"}`,
		`{"name":"HERALD/x"}`,
		`{"name":"\u0048erald/x"}`,
		`{"name":"` + strings.Repeat("ż", 257) + `"}`,
		`{"name":"a","data":[]}`,
		`{"name":"a","data":"s"}`,
		`{"name":"a","data":{"s":"\u0000"}}`,
		`{"name":"a","data":{"\u0000":1}}`,
		`{"name":"a","data":{"s":"\\\u0000"}}`,
		`{"name":"a","id":1}`,
		`{"name":"a","id":"` + strings.Repeat("i", 257) + `"}`,
		`{"name":"a","ts":1.5}`,
		`{"name":"a","ts":"1"}`,
		`{"name":"a","ts":1e12}`,
		`{"name":"a","ts":-1}`,
		`{"name":"a","ts":315532799999}`,
		`{"name":"a","ts":4102444800000}`,
		`{"name":"a","ts":99999999999999999999}`,
		`{"name":"a","v":1}`,
		"{\"name\":\"\xff\xfe\"}",
		"\xef\xbb\xbf{\"name\":\"bom\"}",
		// Nesting: data at and over MaxDepth, deep members that are not
		// data, brackets inside strings, and a deep event past the count limit.
		withData(nestedArrays(ingest.MaxDepth)),
		withData(nestedArrays(ingest.MaxDepth + 1)),
		withData(nestedObjects(ingest.MaxDepth + 1)),
		withData(nestedArrays(3000)),
		`[{"name":"a"},` + withData(nestedArrays(ingest.MaxDepth+1)) + `]`,
		`[{"name":""},` + withData(nestedArrays(ingest.MaxDepth+1)) + `]`,
		`{"name":"a","DATA":` + nestedArrays(ingest.MaxDepth+1) + `}`,
		`{"name":"a","d\u0061ta":` + nestedArrays(ingest.MaxDepth+1) + `}`,
		`{"name":"a","data":` + nestedArrays(ingest.MaxDepth+1) + `,"data":{}}`,
		`{"name":"a","extra":` + nestedArrays(200) + `}`,
		`{"name":"a","data":{"s":"\"[[[[[[","t":"\\"}}`,
		`{"name":"a","data":` + strings.Repeat("[", 100),
		`[` + withData(nestedArrays(ingest.MaxDepth+1)) + `,` + strings.TrimPrefix(repeatEvent(`{"name":"a"}`, 8), "["),
		"[" + strings.Repeat(`{"name":"a"},`, 8) + withData(nestedArrays(ingest.MaxDepth+1)) + "]",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}

	f.Fuzz(func(t *testing.T, body []byte) {
		events, err := ingest.DecodeEvents(body, fuzzLimits, now)
		// The fast path and the careful one accept and reject the same bodies,
		// with the same result.
		if len(bytes.TrimSpace(body)) > 0 {
			careful, cerr := ingest.DecodeCareful(body, fuzzLimits, now)
			if err != nil {
				require.Error(t, cerr)
				require.Equal(t, err.Error(), cerr.Error())
			} else {
				require.NoError(t, cerr)
				require.Len(t, careful, len(events))
				for i := range events {
					require.Equal(t, events[i].Name, careful[i].Name)
					require.Equal(t, string(events[i].Data), string(careful[i].Data))
					require.Equal(t, events[i].TS, careful[i].TS)
					require.Equal(t, events[i].V, careful[i].V)
					require.Equal(t, events[i].Fresh, careful[i].Fresh)
					if !events[i].Fresh {
						require.Equal(t, events[i].ID, careful[i].ID)
					}
				}
			}
		}
		if err != nil {
			var verr *ingest.ValidationError
			require.ErrorAs(t, err, &verr)
			require.Nil(t, events)
			require.GreaterOrEqual(t, verr.Index, -1)
			require.Less(t, verr.Index, fuzzLimits.MaxEventsPerRequest)
			require.NotEmpty(t, verr.Rule)
			require.NotEmpty(t, err.Error())
			return
		}
		require.NotEmpty(t, events)
		require.LessOrEqual(t, len(events), fuzzLimits.MaxEventsPerRequest)
		if trimmed := bytes.TrimSpace(body); trimmed[0] == '{' {
			require.Len(t, events, 1, "an object body is one event")
		}
		for i, e := range events {
			msg := fmt.Sprintf("event %d of %q", i, body)
			require.NotEmpty(t, e.ID, msg)
			if e.Fresh {
				require.Len(t, e.ID, 26, "a fresh id is a generated ULID: %s", msg)
				require.NotContains(t, string(body), e.ID, "a fresh id is not the client's: %s", msg)
			}
			require.LessOrEqual(t, utf8.RuneCountInString(e.ID), ingest.MaxIDLen, msg)
			require.NotEmpty(t, e.Name, msg)
			require.LessOrEqual(t, utf8.RuneCountInString(e.Name), ingest.MaxNameLen, msg)
			for _, c := range []byte(e.Name) {
				require.False(t, c < 0x20 || c == 0x7f, "control character in name: %s", msg)
			}
			require.False(t, len(e.Name) >= len(ingest.ReservedPrefix) &&
				strings.EqualFold(e.Name[:len(ingest.ReservedPrefix)], ingest.ReservedPrefix), "reserved name: %s", msg)

			require.NotEmpty(t, e.Data, msg)
			require.Equal(t, byte('{'), e.Data[0], msg)
			require.True(t, json.Valid(e.Data), msg)
			require.LessOrEqual(t, jsonDepth(t, e.Data), ingest.MaxDepth, msg)
			requireNoNUL(t, e.Data)

			require.GreaterOrEqual(t, e.TS, minTS, msg)
			require.Less(t, e.TS, maxTS, msg)
			require.Equal(t, received, e.ReceivedAt, msg)
		}
	})
}

// jsonDepth measures how deeply valid JSON nests objects and arrays, with a
// token reader rather than the byte scan DecodeEvents uses.
func jsonDepth(t *testing.T, data []byte) int {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	depth, deepest := 0, 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return deepest
		}
		require.NoError(t, err)
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
			deepest = max(deepest, depth)
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
	}
}

// requireNoNUL decodes data independently of DecodeEvents' byte scan and fails
// if any key or string holds a NUL, which Postgres cannot store.
func requireNoNUL(t *testing.T, data []byte) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // numbers beyond float64 are still valid JSON
	var v any
	require.NoError(t, dec.Decode(&v))
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case string:
			require.NotContains(t, v, "\x00", "NUL in data %s", data)
		case []any:
			for _, x := range v {
				walk(x)
			}
		case map[string]any:
			for k, x := range v {
				require.NotContains(t, k, "\x00", "NUL in data %s", data)
				walk(x)
			}
		}
	}
	walk(v)
}
