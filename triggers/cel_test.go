package triggers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// sharedEnv is built once: environments are immutable and building one
// costs milliseconds.
var sharedEnv = sync.OnceValues(NewEnv)

func setupEnv(t testing.TB) *Env {
	t.Helper()
	env, err := sharedEnv()
	require.NoError(t, err)
	return env
}

func testEvent(t testing.TB) map[string]any {
	t.Helper()
	ev, err := EventActivation("app/user.created", json.RawMessage(`{
		"amount": 12, "price": 12.5, "big": 1e3, "whole": 12.0,
		"plan": "pro", "email": "Ada@Example.com",
		"tags": ["a", "b", "vip"], "user": {"id": "u_42", "age": 36},
		"items": [{"sku": "x", "qty": 2}, {"sku": "y", "qty": 5}],
		"flag": true, "nothing": null
	}`), "01J0", 1700000000000, "2024-01")
	require.NoError(t, err)
	return ev
}

func TestCompile(t *testing.T) {
	t.Parallel()
	env := setupEnv(t)
	ok := []string{
		`true`,
		`event.data.amount > 10`,
		`event.data.flag`, // dyn: checked at evaluation
		`has(event.data.plan) && event.data.plan == "pro"`,
		`event.data.tags.exists(t, t == "vip")`,
		`event.name.startsWith("app/")`,
		`event.data.email.lowerAscii().endsWith("@example.com")`,
		`timestamp("2024-01-01T00:00:00Z") < timestamp("2025-01-01T00:00:00Z")`,
	}
	for _, expr := range ok {
		t.Run(expr, func(t *testing.T) {
			t.Parallel()
			p, err := env.Compile(expr)
			require.NoError(t, err)
			require.Equal(t, expr, p.Expr())
		})
	}

	bad := []struct {
		name, expr, wantMsg string
		line, col           int
	}{
		{"syntax", `event.data.amount >`, "Syntax error", 1, 20},
		{"syntax line 2", "event.data.amount > 1 &&\n  event.data.plan = \"pro\"", "Syntax error", 2, 19},
		{"unknown variable", `evnt.name == "x"`, "undeclared reference to 'evnt'", 1, 1},
		{"unknown function", `event.name.shout()`, "undeclared reference to 'shout'", 1, 17},
		{"no clock", `now() > timestamp("2024-01-01T00:00:00Z")`, "undeclared reference to 'now'", 1, 4},
		{"type error", `1 + "a" == 2`, "found no matching overload", 1, 3},
		{"non-bool string", `"yes"`, "must evaluate to bool, not string", 0, 0},
		{"non-bool size", `size(event.name)`, "must evaluate to bool, not int", 0, 0},
		{"non-bool int", `1 + 2`, "must evaluate to bool, not int", 0, 0},
		{"non-bool list", `[true]`, "must evaluate to bool", 0, 0},
		{"empty", ``, "expression is empty", 0, 0},
		{"blank", " \n ", "expression is empty", 0, 0},
		{"too long", `true || ` + strings.Repeat(`true || `, 600) + `true`, "longer than the limit of 4096", 0, 0},
		{"bad regex", `event.name.matches("(")`, "missing closing )", 0, 0},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := env.Compile(tt.expr)
			require.Nil(t, p)
			var ce *CompileError
			require.ErrorAs(t, err, &ce)
			require.Equal(t, tt.expr, ce.Expr)
			require.Contains(t, ce.Message, tt.wantMsg)
			require.Equal(t, tt.line, ce.Line, "line")
			require.Equal(t, tt.col, ce.Column, "column")
			require.Contains(t, err.Error(), "triggers: expression ")
			if tt.line > 0 {
				require.Contains(t, err.Error(), fmt.Sprintf("line %d, column %d", tt.line, tt.col))
			}
		})
	}
}

func TestCompileErrorMessage(t *testing.T) {
	t.Parallel()
	_, err := setupEnv(t).Compile(`event.data.amount >`)
	require.ErrorContains(t, err, `triggers: expression "event.data.amount >": line 1, column 20: Syntax error: mismatched input '<EOF>' expecting`)

	long := (&CompileError{Expr: strings.Repeat("x", 500), Message: "m"}).Error()
	require.Less(t, len(long), 200, "the expression is shortened in the message")
}

func TestEval(t *testing.T) {
	t.Parallel()
	env := setupEnv(t)
	ev := testEvent(t)
	tests := []struct {
		expr string
		want bool
	}{
		// top-level fields
		{`event.name == "app/user.created"`, true},
		{`event.id == "01J0" && event.v == "2024-01"`, true},
		{`event.ts == 1700000000000`, true},
		// ints and floats
		{`event.data.amount > 10`, true},
		{`event.data.amount == 12`, true},
		{`event.data.amount > 12`, false},
		{`event.data.amount >= 11.5`, true},
		{`event.data.amount == 12.0`, true},
		{`event.data.price > 10`, true},
		{`event.data.price < 13`, true},
		{`event.data.price == 12.5`, true},
		{`event.data.whole == 12`, true},
		{`event.data.big == 1000`, true},
		{`type(event.data.amount) == int`, true},
		{`type(event.data.price) == double`, true},
		{`event.data.amount + 1 == 13`, true},
		{`event.data.user.age / 2 == 18`, true},
		// strings and has
		{`event.data.plan == "pro"`, true},
		{`event.data.plan != "free"`, true},
		{`has(event.data.plan)`, true},
		{`has(event.data.missing)`, false},
		{`!has(event.data.missing) || event.data.missing == 1`, true},
		{`event.data.nothing == null`, true},
		{`event.data.flag`, true},
		{`event.data.user.id == "u_42"`, true},
		// in
		{`event.data.plan in ["pro", "team"]`, true},
		{`event.data.plan in ["free"]`, false},
		{`"vip" in event.data.tags`, true},
		{`"id" in event.data.user`, true},
		// macros
		{`event.data.tags.exists(t, t == "vip")`, true},
		{`event.data.tags.all(t, size(t) <= 3)`, true},
		{`event.data.tags.exists_one(t, t == "a")`, true},
		{`event.data.items.map(i, i.qty).filter(q, q > 3).size() == 1`, true},
		{`event.data.items.filter(i, i.sku == "y")[0].qty == 5`, true},
		// string extensions
		{`event.data.email.lowerAscii() == "ada@example.com"`, true},
		{`event.data.email.split("@")[1] == "Example.com"`, true},
		{`event.data.tags.join(",") == "a,b,vip"`, true},
		{`event.name.indexOf("/") == 3`, true},
		{`event.name.substring(0, 3) == "app"`, true},
		{`event.data.email.matches("^[A-Za-z]+@")`, true},
		// deterministic timestamps
		{`timestamp("2024-03-01T10:00:00Z").getHours() == 10`, true},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			t.Parallel()
			p, err := env.Compile(tt.expr)
			require.NoError(t, err)
			got, err := p.Eval(context.Background(), ev)
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestEvalErrors(t *testing.T) {
	t.Parallel()
	env := setupEnv(t)
	ev := testEvent(t)
	tests := []struct {
		name, expr, wantErr string
	}{
		{"missing field", `event.data.missing == 1`, "no such key: missing"},
		{"missing nested", `event.data.user.address.city == "Paris"`, "no such key: address"},
		{"missing top-level", `event.nope == 1`, "no such key: nope"},
		{"type mismatch", `event.data.plan > 3`, "no such overload"},
		{"dyn not bool", `event.data.plan`, "did not evaluate to a bool"},
		{"field of string", `event.data.plan.x == 1`, "no such key"},
		{"division by zero", `event.data.amount / 0 == 1`, "division by zero"},
		{"index out of range", `event.data.tags[10] == "x"`, "index out of bounds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := env.Compile(tt.expr)
			require.NoError(t, err)
			got, err := p.Eval(context.Background(), ev)
			require.False(t, got)
			require.ErrorContains(t, err, tt.wantErr)
		})
	}

	t.Run("not bool is ErrNotBool", func(t *testing.T) {
		t.Parallel()
		p, err := env.Compile(`event.data.amount`)
		require.NoError(t, err)
		_, err = p.Eval(context.Background(), ev)
		require.ErrorIs(t, err, ErrNotBool)
	})

	t.Run("nil event", func(t *testing.T) {
		t.Parallel()
		p, err := env.Compile(`event.name == "x"`)
		require.NoError(t, err)
		got, err := p.Eval(context.Background(), nil)
		require.False(t, got)
		require.Error(t, err)
	})

	t.Run("odd Go values do not panic", func(t *testing.T) {
		t.Parallel()
		p, err := env.Compile(`event.data.x == 1`)
		require.NoError(t, err)
		type opaque struct{ A chan int }
		got, err := p.Eval(context.Background(), map[string]any{"data": map[string]any{"x": opaque{}}})
		require.False(t, got)
		require.Error(t, err)
	})

	t.Run("cancelled context", func(t *testing.T) {
		t.Parallel()
		p, err := env.Compile(`true`)
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		got, err := p.Eval(ctx, ev)
		require.False(t, got)
		require.ErrorIs(t, err, context.Canceled)
	})
}

// bigList returns a CEL list literal [1, 2, ..., n].
func bigList(n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprint(i + 1)
	}
	return "[" + strings.Join(parts, ",") + "]"
}

func TestCostLimit(t *testing.T) {
	t.Parallel()
	env := setupEnv(t)

	t.Run("small nested comprehension runs", func(t *testing.T) {
		t.Parallel()
		l := bigList(10)
		p, err := env.Compile(l + `.map(x, ` + l + `.map(y, ` + l + `.map(z, x*y*z))).size() > 0`)
		require.NoError(t, err)
		got, err := p.Eval(context.Background(), testEvent(t))
		require.NoError(t, err)
		require.True(t, got)
	})

	t.Run("certain overrun is a compile error", func(t *testing.T) {
		t.Parallel()
		l := bigList(100)
		// map, unlike all or exists, cannot stop early, so its cost is known.
		expr := l + `.map(a, ` + l + `.map(b, ` + l + `.map(c, a*b*c))).size() > 0`
		_, err := env.Compile(expr)
		var ce *CompileError
		require.ErrorAs(t, err, &ce)
		require.Contains(t, ce.Message, "always exceeds the limit")
	})

	t.Run("overrun on event data stops with a cost error", func(t *testing.T) {
		t.Parallel()
		// The list comes from the event, so its size, and the cost, are
		// unknown until evaluation: 100^4 iterations if unbounded.
		items := make([]any, 100)
		for i := range items {
			items[i] = int64(i + 1)
		}
		ev := map[string]any{"name": "x", "data": map[string]any{"l": items}}
		p, err := env.Compile(`event.data.l.all(a, event.data.l.all(b, event.data.l.all(c, event.data.l.all(d, a*b*c*d > 0))))`)
		require.NoError(t, err)
		start := time.Now()
		got, err := p.Eval(context.Background(), ev)
		require.False(t, got)
		require.ErrorContains(t, err, "cost limit exceeded")
		t.Logf("stopped after %v", time.Since(start)) // informative only; no wall-clock assertion
	})

	t.Run("expired context stops a loop", func(t *testing.T) {
		t.Parallel()
		items := make([]any, 100)
		for i := range items {
			items[i] = int64(i)
		}
		ev := map[string]any{"data": map[string]any{"l": items}}
		p, err := env.Compile(`event.data.l.all(a, event.data.l.all(b, event.data.l.all(c, a+b+c >= 0)))`)
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
		defer cancel()
		<-ctx.Done()
		_, err = p.Eval(ctx, ev)
		require.ErrorIs(t, err, context.DeadlineExceeded)
	})
}

func TestCached(t *testing.T) {
	t.Parallel()
	env, err := NewEnv() // own cache, so counts are not disturbed by other tests
	require.NoError(t, err)

	const expr = `event.data.plan == "pro"`
	var wg sync.WaitGroup
	progs := make([]*Program, 16)
	for i := range progs {
		wg.Go(func() {
			p, err := env.Cached(expr)
			require.NoError(t, err)
			progs[i] = p
		})
	}
	wg.Wait()
	for _, p := range progs {
		require.Same(t, progs[0], p, "compiled once and shared")
	}

	_, err1 := env.Cached(`event.data.plan ==`)
	_, err2 := env.Cached(`event.data.plan ==`)
	var ce *CompileError
	require.ErrorAs(t, err1, &ce)
	require.Same(t, err1, err2, "compile errors are cached too")
}

func TestProgramCacheEvicts(t *testing.T) {
	t.Parallel()
	compiles := 0
	compile := func(expr string) (*Program, error) {
		compiles++
		return &Program{expr: expr}, nil
	}
	c := newProgramCache(2)
	for _, e := range []string{"a", "b", "a", "c", "d"} {
		p, err := c.get(e, compile)
		require.NoError(t, err)
		require.Equal(t, e, p.Expr())
	}
	require.Equal(t, 4, compiles)
	require.Len(t, c.entries, 2)
}

func TestEventActivation(t *testing.T) {
	t.Parallel()
	ev, err := EventActivation("app/x", json.RawMessage(`{"i": 12, "neg": -3, "f": 12.5, "e": 1e3, "w": 12.0,
		"huge": 99999999999999999999, "nested": {"n": [1, 2.5, {"k": 7}]}, "s": "12"}`), "id1", 42, "v1")
	require.NoError(t, err)
	require.Equal(t, "app/x", ev["name"])
	require.Equal(t, "id1", ev["id"])
	require.Equal(t, int64(42), ev["ts"])
	require.Equal(t, "v1", ev["v"])
	data := ev["data"].(map[string]any)
	require.Equal(t, int64(12), data["i"])
	require.Equal(t, int64(-3), data["neg"])
	require.Equal(t, 12.5, data["f"])
	require.Equal(t, 1000.0, data["e"])
	require.Equal(t, 12.0, data["w"])
	require.Equal(t, 1e20, data["huge"])
	require.Equal(t, "12", data["s"])
	require.Equal(t, []any{int64(1), 2.5, map[string]any{"k": int64(7)}}, data["nested"].(map[string]any)["n"])

	for _, empty := range []string{``, `null`, `  `, `{}`} {
		ev, err := EventActivation("app/x", json.RawMessage(empty), "", 0, "")
		require.NoError(t, err, empty)
		require.Equal(t, map[string]any{}, ev["data"], empty)
	}

	for _, bad := range []string{`[1]`, `"s"`, `12`, `{"a":`, `{"a":1} {}`, `{"a": 1e999}`} {
		_, err := EventActivation("app/x", json.RawMessage(bad), "", 0, "")
		require.Error(t, err, bad)
		require.Contains(t, err.Error(), `event "app/x"`, bad)
	}
}

func TestEvalErrorsWrap(t *testing.T) {
	t.Parallel()
	p, err := setupEnv(t).Compile(`event.data.x == 1`)
	require.NoError(t, err)
	_, err = p.Eval(context.Background(), map[string]any{"data": map[string]any{}})
	require.Error(t, err)
	require.False(t, errors.Is(err, ErrNotBool))
	require.Contains(t, err.Error(), `triggers: evaluate "event.data.x == 1"`)
}

func BenchmarkEval(b *testing.B) {
	p := mustCompile(b, `event.data.plan == "pro" && event.data.amount > 10 && event.data.tags.exists(t, t == "vip")`)
	ev := testEvent(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if ok, err := p.Eval(ctx, ev); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

func BenchmarkEventActivation(b *testing.B) {
	data := json.RawMessage(`{"amount": 12, "plan": "pro", "tags": ["a", "b", "vip"], "user": {"id": "u_42", "age": 36}}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := EventActivation("app/user.created", data, "id", 1, ""); err != nil {
			b.Fatal(err)
		}
	}
}

func TestEvalKey(t *testing.T) {
	env, err := NewEnv()
	require.NoError(t, err)
	act, err := EventActivation("a/b", []byte(`{"s":"u_1","i":42,"f":1.5,"whole":2.0,"b":true,"m":{"x":1}}`), "id1", 5, "")
	require.NoError(t, err)
	for expr, want := range map[string]string{
		`event.data.s`:           "u_1",
		`event.data.i`:           "42",
		`event.data.f`:           "1.5",
		`event.data.whole`:       "2",
		`event.data.b`:           "true",
		`"user-" + event.data.s`: "user-u_1",
		`event.name + "/" + "x"`: "a/b/x",
		`string(event.data.i+1)`: "43",
	} {
		p, err := env.CachedKey(expr)
		require.NoError(t, err, expr)
		got, err := p.EvalKey(context.Background(), act)
		require.NoError(t, err, expr)
		require.Equal(t, want, got, expr)
	}
	p, err := env.CompileKey(`event.data.m`)
	require.NoError(t, err) // dyn: checked at evaluation
	_, err = p.EvalKey(context.Background(), act)
	require.ErrorIs(t, err, ErrBadKey)
	_, err = env.CompileKey(`[1, 2]`)
	require.ErrorContains(t, err, "must evaluate to a string, number or bool")
	_, err = env.CompileKey(`event.data.missing`)
	require.NoError(t, err)
}

func TestEvalInt(t *testing.T) {
	env, err := NewEnv()
	require.NoError(t, err)
	act, err := EventActivation("a/b", []byte(`{"p":900,"n":-5,"f":2.7,"s":"x"}`), "id1", 5, "")
	require.NoError(t, err)
	for expr, want := range map[string]int64{
		`event.data.p`: 600, `event.data.n`: -5, `event.data.f`: 2, `-1000`: -600,
		`event.data.s == "x" ? 100 : 0`: 100,
	} {
		p, err := env.CachedInt(expr)
		require.NoError(t, err, expr)
		got, err := p.EvalInt(context.Background(), act, -600, 600)
		require.NoError(t, err, expr)
		require.Equal(t, want, got, expr)
	}
	_, err = env.CompileInt(`"high"`)
	require.ErrorContains(t, err, "must evaluate to a number")
	p, err := env.CompileInt(`event.data.s`)
	require.NoError(t, err)
	_, err = p.EvalInt(context.Background(), act, -600, 600)
	require.ErrorIs(t, err, ErrBadKey)
}

// The same text cached as a condition, a key and an integer never shares an
// entry, whatever the text.
func TestCachedKindsDoNotCollide(t *testing.T) {
	env, err := NewEnv()
	require.NoError(t, err)
	// Texts that would have shared an entry with a key under other prefixes.
	for _, crafted := range []string{"\x00key\x00event.data.userId", "key\x00event.data.userId"} {
		_, err = env.Cached(crafted)
		require.Error(t, err)
	}
	p, err := env.CachedKey("event.data.userId")
	require.NoError(t, err)
	require.Equal(t, "event.data.userId", p.Expr())
	_, err = env.Cached(`"a" + "b"`)
	require.ErrorContains(t, err, "must evaluate to bool")
	_, err = env.CachedKey(`"a" + "b"`)
	require.NoError(t, err)
}

func TestCompileErrorWithoutColumn(t *testing.T) {
	env, err := NewEnv()
	require.NoError(t, err)
	_, err = env.Compile("a.exists(.,1)")
	var ce *CompileError
	require.ErrorAs(t, err, &ce)
	require.False(t, ce.Line == 1 && ce.Column == 0, "line %d column %d", ce.Line, ce.Column)
}
