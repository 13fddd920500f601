package webhooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common"
	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	"github.com/google/cel-go/parser"

	"github.com/herald-run/herald/triggers"
)

const (
	// maxEvents is the most events one delivery may produce.
	maxEvents = 100

	// maxDepth bounds the nesting of a transform's result; the ingest API
	// applies its own, smaller, limit to event data afterwards.
	maxDepth = 1000

	// maxSafeInt is the largest integer a float64 holds exactly (2^53).
	maxSafeInt = 1 << 53

	// minSecretLen is the length, in bytes, from which a string literal of
	// a transform is kept out of its evaluation errors (see
	// secretLiterals): shorter ones are names and keys, and make errors
	// readable; credentials are longer.
	minSecretLen = 8

	// redacted replaces a secret literal in an error message.
	redacted = "[redacted]"
)

// eventKeys are the keys an event map may have.
var eventKeys = map[string]bool{"name": true, "data": true, "id": true, "ts": true, "v": true}

func newEnv() (*Env, error) {
	// The library and limits of trigger expressions: a hostile transform
	// costs its own delivery an error, not the ingest API its CPU.
	env, err := triggers.NewEnvWith(
		cel.Variable("body", cel.DynType),
		cel.Variable("headers", cel.MapType(cel.StringType, cel.StringType)),
		cel.Variable("query", cel.MapType(cel.StringType, cel.StringType)),
	)
	if err != nil {
		return nil, fmt.Errorf("webhooks: build CEL environment: %w", err)
	}
	return &Env{env: env}, nil
}

// compileError is a transform that does not compile, as triggers reports
// it, named as a transform.
type compileError struct{ *triggers.CompileError }

func (e compileError) Error() string { return "webhooks: transform " + e.Detail() }

// shorten quotes s, cut to 120 runes so one bad expression cannot flood a
// log line.
func shorten(s string) string {
	const max = 120
	if utf8.RuneCountInString(s) <= max {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%.*q…", max, s)
}

// outputOK reports whether a checked result type can be an event or a list
// of events: a map with string keys, a list of such maps, or dyn (checked
// at evaluation).
func outputOK(t *types.Type) bool {
	switch t.Kind() {
	case types.DynKind, types.AnyKind, types.TypeParamKind:
		return true
	case types.MapKind:
		k := t.Parameters()[0].Kind()
		return k == types.StringKind || k == types.DynKind || k == types.AnyKind || k == types.TypeParamKind
	case types.ListKind:
		e := t.Parameters()[0]
		return e.Kind() != types.ListKind && outputOK(e)
	}
	return false
}

func (e *Env) compile(expr string) (*Transform, error) {
	prg, err := e.env.CompileAs(expr, outputOK, "a map (one event) or a list of maps (several)")
	var ce *triggers.CompileError
	if errors.As(err, &ce) {
		return nil, compileError{ce}
	}
	if err != nil {
		return nil, err
	}
	secrets, ok := secretLiterals(expr)
	return &Transform{prg: prg, secrets: secrets, hideDetail: !ok}, nil
}

// secretLiterals returns the string and bytes literals of expr that
// evaluation errors must not show: those of at least minSecretLen bytes that
// are not map keys or indexes, such as the token of
// `headers["authorization"] == "Bearer sk_live_..." ? ... : ...`, which an
// error could otherwise quote through a value computed from it. Keys and
// indexes (`{"customer_id": ...}`, `body["type"]`) name fields, which errors
// need to say where they went wrong. ok is false if expr does not parse.
func secretLiterals(expr string) (secrets []string, ok bool) {
	p, err := parser.NewParser()
	if err != nil {
		return nil, false
	}
	a, iss := p.Parse(common.NewTextSource(expr))
	if iss != nil && len(iss.GetErrors()) > 0 {
		return nil, false
	}
	keys := map[int64]bool{}
	visit := func(e ast.Expr) {
		switch e.Kind() {
		case ast.CallKind:
			c := e.AsCall()
			if c.FunctionName() == operators.Index && len(c.Args()) == 2 {
				keys[c.Args()[1].ID()] = true
			}
		case ast.MapKind:
			for _, entry := range e.AsMap().Entries() {
				keys[entry.AsMapEntry().Key().ID()] = true
			}
		case ast.LiteralKind:
			if keys[e.ID()] {
				return
			}
			var lit string
			switch v := e.AsLiteral().(type) {
			case types.String:
				lit = string(v)
			case types.Bytes:
				lit = string(v)
			}
			if len(lit) >= minSecretLen {
				secrets = append(secrets, lit)
			}
		}
	}
	ast.PreOrderVisit(a.Expr(), ast.NewExprVisitor(visit))
	// Longest first, so that a secret containing another is replaced whole.
	sort.Slice(secrets, func(i, j int) bool { return len(secrets[i]) > len(secrets[j]) })
	return secrets, true
}

func (t *Transform) apply(ctx context.Context, d Delivery) (events []map[string]any, err error) {
	if err := ctx.Err(); err != nil {
		return nil, t.errorf("%w", err)
	}
	headers, query := d.Headers, d.Query
	if headers == nil {
		headers = map[string]string{}
	}
	if query == nil {
		query = map[string]string{}
	}
	// cel-go converts Go values lazily and may panic on a kind it does not
	// expect (a Body not built by ParseDelivery); that must cost one
	// delivery an error, not the ingest API its process.
	defer func() {
		if r := recover(); r != nil {
			events, err = nil, t.errorf("panic: %v", r)
		}
	}()
	out, err := t.prg.Value(ctx, map[string]any{"body": d.Body, "headers": headers, "query": query})
	if err != nil {
		return nil, t.errorf("%w", err)
	}
	switch v := out.(type) {
	case traits.Mapper:
		ev, err := toEvent(v, newBudget())
		if err != nil {
			return nil, t.errorf("%w", err)
		}
		return []map[string]any{ev}, nil
	case traits.Lister:
		n, ok := v.Size().(types.Int)
		if !ok {
			return nil, t.errorf("list has no size")
		}
		if n > maxEvents {
			return nil, t.errorf("gave %d events, more than the limit of %d", n, maxEvents)
		}
		events = make([]map[string]any, 0, n)
		budget := newBudget()
		for i := types.Int(0); i < n; i++ {
			m, ok := v.Get(i).(traits.Mapper)
			if !ok {
				return nil, t.errorf("event %d is %s, not a map", i, typeName(v.Get(i)))
			}
			ev, err := toEvent(m, budget)
			if err != nil {
				return nil, t.errorf("event %d: %w", i, err)
			}
			events = append(events, ev)
		}
		return events, nil
	}
	return nil, t.errorf("gave %s, not a map (one event) or a list of maps (several)", typeName(out))
}

// errorf returns an evaluation error. Its message reaches whoever sent the
// delivery, so it says what went wrong without quoting the transform, whose
// literals may hold credentials, and with the transform's secret literals
// (see secretLiterals) removed from the cause. The cause stays available to
// errors.Is and errors.As.
func (t *Transform) errorf(format string, args ...any) error {
	cause := fmt.Errorf(format, args...)
	if t.hideDetail {
		return &evalError{msg: "webhooks: transform failed", cause: cause}
	}
	return &evalError{msg: "webhooks: transform failed: " + t.redact(cause.Error()), cause: cause}
}

// redact removes the transform's secret literals from msg, as they are and
// as strconv.Quote or %q escapes them.
func (t *Transform) redact(msg string) string {
	for _, s := range t.secrets {
		msg = strings.ReplaceAll(msg, s, redacted)
		if q := strconv.Quote(s); q[1:len(q)-1] != s {
			msg = strings.ReplaceAll(msg, q[1:len(q)-1], redacted)
		}
	}
	return msg
}

// evalError is a transform's evaluation error: a message fit for the sender
// of the delivery, and the cause.
type evalError struct {
	msg   string
	cause error
}

func (e *evalError) Error() string { return e.msg }

func (e *evalError) Unwrap() error { return e.cause }

func typeName(v ref.Val) string {
	if v == nil {
		return "nothing"
	}
	if types.IsError(v) {
		return fmt.Sprintf("error (%v)", v)
	}
	return v.Type().TypeName()
}

// resultBudget is what remains of MaxResultSize for the events of one
// delivery, in bytes as toJSON estimates them.
type resultBudget struct{ left int64 }

func newBudget() *resultBudget { return &resultBudget{left: MaxResultSize} }

// spend takes size bytes, at least minValueSize, for one value.
func (b *resultBudget) spend(size int64) error {
	b.left -= max(size, minValueSize)
	if b.left < 0 {
		return fmt.Errorf("result is larger than %d bytes as JSON", MaxResultSize)
	}
	return nil
}

// toEvent converts one event map, checking only its shape: string keys from
// the event's fields. The ingest API validates the values.
func toEvent(m traits.Mapper, budget *resultBudget) (map[string]any, error) {
	out := map[string]any{}
	it := m.Iterator()
	for it.HasNext() == types.True {
		k := it.Next()
		ks, ok := k.(types.String)
		if !ok {
			return nil, fmt.Errorf("event key %v is %s, not a string", k, typeName(k))
		}
		key := string(ks)
		if !eventKeys[key] {
			return nil, fmt.Errorf("unknown event key %s: an event has the keys name, data, id, ts and v", shorten(key))
		}
		val := m.Get(k)
		// A timestamp as the event's ts means the event's time, which Herald
		// keeps in milliseconds since the Unix epoch.
		if ts, ok := val.(types.Timestamp); ok && key == "ts" {
			out[key] = ts.Time.UnixMilli()
			continue
		}
		v, err := toJSON(val, 1, budget)
		if err != nil {
			var pe *pathError
			if errors.As(err, &pe) {
				return nil, fmt.Errorf("%s%s: %w", key, pe.path, pe.err)
			}
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		out[key] = v
	}
	return out, nil
}

// toJSON converts a CEL value into the Go value encoding/json would decode
// it from: map[string]any, []any, string, int64 or float64, bool or nil.
// Timestamps become RFC 3339 strings in UTC; bytes, durations, types and
// non-finite doubles are errors, as JSON has no form for them.
//
// Each value is charged to budget: a list built by the transform can hold
// the same large value many times over, so its converted form could be
// exponentially larger than anything the evaluation built.
func toJSON(v ref.Val, depth int, budget *resultBudget) (any, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("nested deeper than %d levels", maxDepth)
	}
	size := int64(len("false"))
	switch v := v.(type) {
	case types.String:
		size = int64(len(v)) + 2
	case types.Int, types.Uint, types.Double, types.Timestamp:
		size = 24
	}
	if err := budget.spend(size); err != nil {
		return nil, err
	}
	switch v := v.(type) {
	case types.Null:
		return nil, nil
	case types.Bool:
		return bool(v), nil
	case types.String:
		return string(v), nil
	case types.Int:
		return int64(v), nil
	case types.Uint:
		if uint64(v) > math.MaxInt64 {
			return nil, fmt.Errorf("unsigned integer %d is too large", uint64(v))
		}
		return int64(v), nil
	case types.Double:
		f := float64(v)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("%v is not a JSON number", f)
		}
		return f, nil
	case types.Timestamp:
		return v.Time.UTC().Format(time.RFC3339Nano), nil
	case traits.Mapper:
		out := map[string]any{}
		it := v.Iterator()
		for it.HasNext() == types.True {
			k := it.Next()
			ks, ok := k.(types.String)
			if !ok {
				return nil, fmt.Errorf("map key %v is %s, not a string", k, typeName(k))
			}
			if err := budget.spend(int64(len(ks)) + 3); err != nil {
				return nil, err
			}
			e, err := toJSON(v.Get(k), depth+1, budget)
			if err != nil {
				return nil, within(keyPath(string(ks)), err)
			}
			out[string(ks)] = e
		}
		return out, nil
	case traits.Lister:
		n, ok := v.Size().(types.Int)
		if !ok {
			return nil, errors.New("list has no size")
		}
		out := make([]any, 0, n)
		for i := types.Int(0); i < n; i++ {
			e, err := toJSON(v.Get(i), depth+1, budget)
			if err != nil {
				return nil, within(fmt.Sprintf("[%d]", i), err)
			}
			out = append(out, e)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s has no JSON form", typeName(v))
}

// pathError is a conversion error at a path inside a value, such as
// `.items[2].price`.
type pathError struct {
	path string
	err  error
}

func (e *pathError) Error() string { return e.path + ": " + e.err.Error() }

func (e *pathError) Unwrap() error { return e.err }

// within prefixes err's path with step.
func within(step string, err error) error {
	if pe, ok := err.(*pathError); ok {
		return &pathError{path: step + pe.path, err: pe.err}
	}
	return &pathError{path: step, err: err}
}

// keyPath is the path step of a map key: .key for an identifier, ["key"]
// otherwise.
func keyPath(k string) string {
	if k == "" || len(k) > 64 {
		return "[" + shorten(k) + "]"
	}
	for i, r := range k {
		if !(r == '_' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || i > 0 && '0' <= r && r <= '9') {
			return "[" + shorten(k) + "]"
		}
	}
	return "." + k
}

func parseDelivery(body []byte, headers http.Header, query map[string][]string) (Delivery, error) {
	d := Delivery{Headers: make(map[string]string, len(headers)), Query: make(map[string]string, len(query))}
	if len(bytes.TrimSpace(body)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return Delivery{}, fmt.Errorf("webhooks: body is not JSON: %w", err)
		}
		if _, err := dec.Token(); !errors.Is(err, io.EOF) {
			return Delivery{}, errors.New("webhooks: body is not JSON: data after the top-level value")
		}
		v, err := numbers(v)
		if err != nil {
			return Delivery{}, fmt.Errorf("webhooks: body is not JSON: %w", err)
		}
		d.Body = v
	}
	// Sorted, so that when a header arrives under two spellings the
	// canonical one ("X-Foo" sorts before "x-foo") wins every time.
	names := make([]string, 0, len(headers))
	for k := range headers {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		lk := strings.ToLower(k)
		if _, seen := d.Headers[lk]; !seen && len(headers[k]) > 0 {
			d.Headers[lk] = headers[k][0]
		}
	}
	for k, vs := range query {
		if len(vs) > 0 {
			d.Query[k] = vs[0]
		}
	}
	return d, nil
}

// numbers replaces the json.Numbers of v: an integer that fits int64 (or
// an integral value a float64 holds exactly, such as 1e3) becomes int64,
// so CEL sees an int; any other number becomes float64.
func numbers(v any) (any, error) {
	switch v := v.(type) {
	case json.Number:
		if i, err := strconv.ParseInt(string(v), 10, 64); err == nil {
			return i, nil
		}
		f, err := strconv.ParseFloat(string(v), 64)
		if err != nil {
			return nil, fmt.Errorf("number %s is out of range", shorten(string(v)))
		}
		if f == math.Trunc(f) && math.Abs(f) <= maxSafeInt {
			return int64(f), nil
		}
		return f, nil
	case map[string]any:
		for k, e := range v {
			n, err := numbers(e)
			if err != nil {
				return nil, err
			}
			v[k] = n
		}
	case []any:
		for i, e := range v {
			n, err := numbers(e)
			if err != nil {
				return nil, err
			}
			v[i] = n
		}
	}
	return v, nil
}
