package triggers

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

func mustCompile(t testing.TB, expr string) *Program {
	t.Helper()
	p, err := setupEnv(t).Compile(expr)
	require.NoError(t, err)
	return p
}

func TestNewMatcherValidates(t *testing.T) {
	t.Parallel()
	_, err := NewMatcher([]Trigger{
		{FunctionKey: "app/ok", Pattern: "app/x"},
		{FunctionKey: "app/bad", Pattern: "app/us*", Index: 2},
		{FunctionKey: "", Pattern: "app/y", Index: 0},
	})
	require.Error(t, err)
	require.ErrorContains(t, err, `function "app/bad" trigger 2`)
	require.ErrorContains(t, err, "empty function key")

	m, err := NewMatcher(nil)
	require.NoError(t, err)
	require.Empty(t, m.Candidates("app/x"))
	keys, errs := m.Match(context.Background(), nil, "app/x")
	require.Empty(t, keys)
	require.Empty(t, errs)
}

func TestCandidates(t *testing.T) {
	t.Parallel()
	in := []Trigger{
		{FunctionKey: "f/exact", Pattern: "app/user.created"},
		{FunctionKey: "f/app", Pattern: "app/*"},
		{FunctionKey: "f/user", Pattern: "app/user.*"},
		{FunctionKey: "f/other", Pattern: "other/*"},
		{FunctionKey: "f/exact2", Pattern: "app/user.created", Index: 1},
		{FunctionKey: "f/deep", Pattern: "app/user.created.*"},
		{FunctionKey: "f/herald", Pattern: "herald/function.failed"},
	}
	m, err := NewMatcher(in)
	require.NoError(t, err)
	require.Equal(t, len(in), m.Len())

	keysOf := func(ts []Trigger) []string {
		var out []string
		for _, tr := range ts {
			out = append(out, tr.FunctionKey)
		}
		return out
	}
	// In NewMatcher order, exact and wildcard interleaved.
	require.Equal(t, []string{"f/exact", "f/app", "f/user", "f/exact2"}, keysOf(m.Candidates("app/user.created")))
	require.Equal(t, []string{"f/app", "f/user", "f/deep"}, keysOf(m.Candidates("app/user.created.v2")))
	require.Equal(t, []string{"f/app"}, keysOf(m.Candidates("app/order.paid")))
	require.Equal(t, []string{"f/app"}, keysOf(m.Candidates("app/user")))
	require.Empty(t, m.Candidates("app/"), "'*' needs at least one character")
	require.Empty(t, m.Candidates("app"))
	require.Empty(t, m.Candidates(""))
	require.Equal(t, []string{"f/herald"}, keysOf(m.Candidates("herald/function.failed")))

	// Candidates agrees with MatchName on every trigger.
	for _, name := range []string{"app/user.created", "app/user.created.v2", "app/x", "app/", "other/a.b", "app/user.", "app/user.c"} {
		var want []string
		for _, tr := range in {
			if MatchName(tr.Pattern, name) {
				want = append(want, tr.FunctionKey)
			}
		}
		require.Equal(t, want, keysOf(m.Candidates(name)), name)
	}

	// Candidates returns a copy.
	c := m.Candidates("app/user.created")
	c[0].FunctionKey = "mutated"
	require.Equal(t, "f/exact", m.Candidates("app/user.created")[0].FunctionKey)
}

func TestMatch(t *testing.T) {
	t.Parallel()
	ev := testEvent(t) // app/user.created, data.plan == "pro", data.amount == 12
	ctx := context.Background()

	tests := []struct {
		name     string
		triggers []Trigger
		event    string
		wantKeys []string
		wantErrs int
	}{
		{
			name:     "exact",
			triggers: []Trigger{{FunctionKey: "a/f", Pattern: "app/user.created"}},
			wantKeys: []string{"a/f"},
		},
		{
			name:     "exact other name",
			triggers: []Trigger{{FunctionKey: "a/f", Pattern: "app/user.deleted"}},
			wantKeys: nil,
		},
		{
			name:     "wildcard",
			triggers: []Trigger{{FunctionKey: "a/f", Pattern: "app/user.*"}},
			wantKeys: []string{"a/f"},
		},
		{
			name: "exact and wildcard, different functions",
			triggers: []Trigger{
				{FunctionKey: "b/wild", Pattern: "app/*"},
				{FunctionKey: "a/exact", Pattern: "app/user.created"},
			},
			wantKeys: []string{"a/exact", "b/wild"},
		},
		{
			name: "same function two matching triggers once",
			triggers: []Trigger{
				{FunctionKey: "a/f", Pattern: "app/user.created", Index: 0},
				{FunctionKey: "a/f", Pattern: "app/*", Index: 1},
			},
			wantKeys: []string{"a/f"},
		},
		{
			name: "if true and if false",
			triggers: []Trigger{
				{FunctionKey: "a/pro", Pattern: "app/user.created", If: mustCompile(t, `event.data.plan == "pro"`)},
				{FunctionKey: "a/free", Pattern: "app/user.created", If: mustCompile(t, `event.data.plan == "free"`)},
			},
			wantKeys: []string{"a/pro"},
		},
		{
			name: "if false matches nothing",
			triggers: []Trigger{
				{FunctionKey: "a/f", Pattern: "app/*", If: mustCompile(t, `event.data.amount > 100`)},
			},
			wantKeys: nil,
		},
		{
			name: "if error is a non-match and reported",
			triggers: []Trigger{
				{FunctionKey: "a/err", Pattern: "app/*", If: mustCompile(t, `event.data.missing == 1`), Index: 3},
				{FunctionKey: "a/ok", Pattern: "app/*"},
			},
			wantKeys: []string{"a/ok"},
			wantErrs: 1,
		},
		{
			name: "first trigger errors, second matches same function",
			triggers: []Trigger{
				{FunctionKey: "a/f", Pattern: "app/*", If: mustCompile(t, `event.data.missing == 1`)},
				{FunctionKey: "a/f", Pattern: "app/user.created", Index: 1},
			},
			wantKeys: []string{"a/f"},
			wantErrs: 1,
		},
		{
			name: "matched function skips its later triggers",
			triggers: []Trigger{
				{FunctionKey: "a/f", Pattern: "app/user.created"},
				{FunctionKey: "a/f", Pattern: "app/*", If: mustCompile(t, `event.data.missing == 1`), Index: 1},
			},
			wantKeys: []string{"a/f"},
			wantErrs: 0,
		},
		{
			name:     "system event",
			triggers: []Trigger{{FunctionKey: "a/onfail", Pattern: "herald/function.*"}},
			event:    "herald/function.failed",
			wantKeys: []string{"a/onfail"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, err := NewMatcher(tt.triggers)
			require.NoError(t, err)
			name := tt.event
			if name == "" {
				name = "app/user.created"
			}
			keys, errs := m.Match(ctx, ev, name)
			require.Equal(t, tt.wantKeys, keys)
			require.Len(t, errs, tt.wantErrs)
			for _, err := range errs {
				var ee *EvalError
				require.ErrorAs(t, err, &ee)
				require.Contains(t, err.Error(), "no such key: missing")
				require.Contains(t, err.Error(), fmt.Sprintf("function %q trigger %d", ee.FunctionKey, ee.TriggerIndex))
			}
		})
	}
}

func TestMatchDeterministicOrder(t *testing.T) {
	t.Parallel()
	ev := testEvent(t)
	var trs []Trigger
	for i := range 50 {
		// Keys registered in descending order, half wildcards, half exact,
		// and more than the linear-scan threshold of the dedupe.
		p := "app/user.created"
		if i%2 == 0 {
			p = "app/*"
		}
		trs = append(trs, Trigger{FunctionKey: fmt.Sprintf("fn/%03d", 49-i), Pattern: p})
		trs = append(trs, Trigger{FunctionKey: fmt.Sprintf("fn/%03d", 49-i), Pattern: "app/user.*", Index: 1})
	}
	m, err := NewMatcher(trs)
	require.NoError(t, err)
	var want []string
	for i := range 50 {
		want = append(want, fmt.Sprintf("fn/%03d", i))
	}
	for range 20 {
		keys, errs := m.Match(context.Background(), ev, "app/user.created")
		require.Empty(t, errs)
		require.Equal(t, want, keys)
	}
}

func TestMatcherConcurrent(t *testing.T) {
	t.Parallel()
	ev := testEvent(t)
	m, err := NewMatcher([]Trigger{
		{FunctionKey: "a/1", Pattern: "app/*", If: mustCompile(t, `event.data.amount > 10`)},
		{FunctionKey: "a/2", Pattern: "app/user.created"},
	})
	require.NoError(t, err)
	done := make(chan []string)
	for range 8 {
		go func() {
			keys, _ := m.Match(context.Background(), ev, "app/user.created")
			done <- keys
		}()
	}
	for range 8 {
		require.Equal(t, []string{"a/1", "a/2"}, <-done)
	}
}

// BenchmarkMatch matches one event against 1000 triggers: 500 exact names
// (half with a condition), 250 name wildcards with a condition and 250
// others. The event's candidates are three (one exact, one exact with a
// condition, one wildcard with a condition), so the time is the index
// lookups plus two CEL evaluations; it must not grow with the trigger count.
func BenchmarkMatch(b *testing.B) {
	cond := mustCompile(b, `event.data.plan == "pro" && event.data.amount > 10`)
	var trs []Trigger
	for i := range 1000 {
		app := i % 10
		tr := Trigger{FunctionKey: fmt.Sprintf("app%d/fn%d", app, i)}
		switch i % 4 {
		case 0:
			tr.Pattern = fmt.Sprintf("app%d/event%d.created", app, i)
		case 1:
			tr.Pattern = fmt.Sprintf("app%d/event%d.created", (i-1)%10, i-1)
			tr.If = cond
		case 2:
			tr.Pattern = fmt.Sprintf("app%d/event%d.*", app, i)
			tr.If = cond
		default:
			tr.Pattern = fmt.Sprintf("app%d/event%d.updated", app, i)
		}
		if i == 3 {
			tr.Pattern, tr.If = "app0/*", cond
		}
		trs = append(trs, tr)
	}
	m, err := NewMatcher(trs)
	require.NoError(b, err)
	ev := testEvent(b)
	ctx := context.Background()
	const name = "app0/event0.created"
	require.Len(b, m.Candidates(name), 3)
	keys, errs := m.Match(ctx, ev, name)
	require.Empty(b, errs)
	require.Equal(b, []string{"app0/fn0", "app1/fn1", "app3/fn3"}, keys)

	b.ReportAllocs()
	for b.Loop() {
		m.Match(ctx, ev, name)
	}
}

func BenchmarkCandidates(b *testing.B) {
	var trs []Trigger
	for i := range 1000 {
		trs = append(trs, Trigger{FunctionKey: fmt.Sprint(i), Pattern: fmt.Sprintf("app/event%d.created", i)})
	}
	m, err := NewMatcher(trs)
	require.NoError(b, err)
	b.ReportAllocs()
	for b.Loop() {
		m.Candidates("app/event500.created")
	}
}
