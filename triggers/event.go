package triggers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// EventActivation builds the value of the CEL variable event from an
// event's fields: {"name": name, "data": <data>, "id": id, "ts": ts, "v": v}.
//
// data must be a JSON object, or empty or null for an empty object. It is
// decoded into map[string]any, []any, string, bool and nil, with this number
// convention, because CEL does not treat 12 and 12.0 as the same kind of
// value: a JSON number written as an integer that fits in int64 ("12",
// "-3") becomes int64; any other number ("12.5", "1e3", "12.0", or an
// integer beyond int64) becomes float64. So `event.data.amount > 10` and
// `event.data.amount == 12` hold for {"amount": 12}, and CEL's run-time
// comparison across int and double keeps `event.data.amount > 10` working
// for {"amount": 12.5} too. A number beyond the range of float64 is an
// error.
func EventActivation(name string, data json.RawMessage, id string, ts int64, v string) (map[string]any, error) {
	m := map[string]any{}
	if trimmed := bytes.TrimSpace(data); len(trimmed) > 0 && !bytes.Equal(trimmed, []byte("null")) {
		if trimmed[0] != '{' {
			return nil, fmt.Errorf("triggers: event %q: data must be a JSON object", name)
		}
		dec := json.NewDecoder(bytes.NewReader(trimmed))
		dec.UseNumber()
		var raw map[string]any
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("triggers: event %q: decode data: %w", name, err)
		}
		if _, err := dec.Token(); !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("triggers: event %q: data has trailing content after the JSON object", name)
		}
		conv, err := convertNumbers(raw)
		if err != nil {
			return nil, fmt.Errorf("triggers: event %q: data: %w", name, err)
		}
		m = conv.(map[string]any)
	}
	return map[string]any{"name": name, "data": m, "id": id, "ts": ts, "v": v}, nil
}

// convertNumbers replaces every json.Number in a decoded JSON value with
// int64 or float64, following the convention of EventActivation.
func convertNumbers(v any) (any, error) {
	switch x := v.(type) {
	case json.Number:
		if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return i, nil
		}
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil {
			// Only overflow gets here; the decoder has checked the syntax.
			return nil, fmt.Errorf("a number (%d digits) beyond the range of a 64-bit float: %w", len(x), strconv.ErrRange)
		}
		return f, nil
	case map[string]any:
		for k, e := range x {
			c, err := convertNumbers(e)
			if err != nil {
				return nil, err
			}
			x[k] = c
		}
		return x, nil
	case []any:
		for i, e := range x {
			c, err := convertNumbers(e)
			if err != nil {
				return nil, err
			}
			x[i] = c
		}
		return x, nil
	default:
		return v, nil
	}
}
