package triggers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// maxEvalAlloc is the most one refused evaluation may allocate in these
// tests. Without the limits, the expressions below ask for gigabytes.
const maxEvalAlloc = 64 << 20

// allocated returns the bytes the process allocated while f ran. Tests that
// use it must not run in parallel with others, whose allocations would count.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// amplify is the string that four chained replace() calls turn a 10-byte
// string at path into: 10^5 bytes, within the limits on its own.
func amplify(path string) string {
	return path + strings.Repeat(`.replace("a","aaaaaaaaaa")`, 4)
}

// replaceBomb is `X.replace("a", X) == ""` with X = amplify(path): 10^5
// replacements of 10^5 bytes, a 10 GB result.
func replaceBomb(path string) string {
	x := amplify(path)
	return x + `.replace("a", ` + x + `) == ""`
}

// doubling returns an expression that adds base to itself k times over,
// binding each sum in a comprehension so the expression stays short:
// 2^k times the size of base.
func doubling(base string, k int) string {
	expr := fmt.Sprintf("v%d + v%d", k-1, k-1)
	for i := k - 1; i > 0; i-- {
		expr = fmt.Sprintf("[v%d + v%d].map(v%d, %s)", i-1, i-1, i, expr)
	}
	return fmt.Sprintf("[%s].map(v0, %s).size() > 0", base, expr)
}

// tenAs is the event whose data.s the bombs amplify.
func tenAs(t testing.TB) map[string]any {
	t.Helper()
	ev, err := EventActivation("app/x", json.RawMessage(`{"s": "aaaaaaaaaa"}`), "id1", 1, "")
	require.NoError(t, err)
	return ev
}

// requireLimit checks that err is a *LimitError of op and returns it.
func requireLimit(t *testing.T, err error, op string) *LimitError {
	t.Helper()
	require.ErrorIs(t, err, ErrLimit)
	var le *LimitError
	require.ErrorAs(t, err, &le)
	require.Equal(t, op, le.Op, "%v", err)
	return le
}

// The repro of the out-of-memory crash: a 253-byte trigger whose one
// replace() asked for 10 GB, allocated before cel-go charged its cost.
func TestReplaceBombEval(t *testing.T) {
	expr := replaceBomb("event.data.s")
	require.Len(t, expr, 253)
	p, err := setupEnv(t).Compile(expr)
	require.NoError(t, err, "the estimate cannot see the amplification: it must be stopped at evaluation")
	ev := tenAs(t)
	var ok bool
	n := allocated(func() { ok, err = p.Eval(context.Background(), ev) })
	require.False(t, ok)
	le := requireLimit(t, err, "replace")
	require.Equal(t, "replace: result would be 10000000000 bytes, over the 1048576-byte limit", le.Error())
	require.Equal(t, int64(10_000_000_000), le.Size)
	require.Less(t, n, uint64(maxEvalAlloc), "allocated %d bytes", n)
}

func TestReplaceBombKeyAndInt(t *testing.T) {
	env := setupEnv(t)
	x := amplify("event.data.s")
	ev := tenAs(t)

	key, err := env.CompileKey(x + `.replace("a", ` + x + `)`)
	require.NoError(t, err)
	var got string
	n := allocated(func() { got, err = key.EvalKey(context.Background(), ev) })
	require.Empty(t, got)
	requireLimit(t, err, "replace")
	require.Less(t, n, uint64(maxEvalAlloc), "allocated %d bytes", n)

	prio, err := env.CompileInt(`size(` + x + `.replace("a", ` + x + `))`)
	require.NoError(t, err)
	var i int64
	n = allocated(func() { i, err = prio.EvalInt(context.Background(), ev, 0, 100) })
	require.Zero(t, i)
	requireLimit(t, err, "replace")
	require.Less(t, n, uint64(maxEvalAlloc), "allocated %d bytes", n)
}

func TestReplaceBombWait(t *testing.T) {
	env, err := NewWaitEnv()
	require.NoError(t, err)
	p, err := env.Compile(amplify("async.data.s") + `.replace("a", ` + amplify("event.data.s") + `) == ""`)
	require.NoError(t, err)
	ev := tenAs(t)
	var ok bool
	n := allocated(func() { ok, err = p.EvalWait(context.Background(), ev, ev) })
	require.False(t, ok)
	requireLimit(t, err, "replace")
	require.Less(t, n, uint64(maxEvalAlloc), "allocated %d bytes", n)
}

// Each operation that builds a string or a list checks the size of its
// result first; the refused ones allocate next to nothing.
func TestBuildLimits(t *testing.T) {
	env := setupEnv(t)
	ev, err := EventActivation("app/x", json.RawMessage(fmt.Sprintf(
		`{"s": "aaaaaaaaaa", "half": %q, "big": %q, "esc": %q, "l": [1, 2, 3]}`,
		strings.Repeat("a", MaxStringSize/2), strings.Repeat("a", 400_000), strings.Repeat("\n", 600_000))), "id1", 1, "")
	require.NoError(t, err)
	x := amplify("event.data.s") // 10^5 bytes

	for _, tc := range []struct {
		name, expr, op string
		size           int64 // 0: unknown
	}{
		{"doubling +", doubling(x, 4), "+", 1_600_000},
		{"+ over the limit by one byte", `size(event.data.half + event.data.half + "a") > 0`, "+", MaxStringSize + 1},
		{"bytes +", `size(bytes(event.data.half) + bytes(event.data.half) + b"a") > 0`, "+", MaxStringSize + 1},
		{"replace with a count", `size(event.data.big.replace("a", "aaaa", 300000)) > 0`, "replace", 1_300_000},
		{"replace of the empty string", `size(event.data.big.replace("", "ab")) > 0`, "replace", 1_200_002},
		{"join", `[event.data.big, event.data.big, event.data.big].join(",").size() > 0`, "join", 1_200_002},
		{"format", `"%s%s%s".format([event.data.big, event.data.big, event.data.big]).size() > 0`, "format", 0},
		{"format of a list", `"%s".format([[event.data.big, event.data.big, event.data.big]]).size() > 0`, "format", 0},
		{"quote", `strings.quote(event.data.esc).size() > 0`, "strings.quote", 1_200_002},
		{"split", `event.data.big.split("").size() > 0`, "split", 400_000},
		{"list +", doubling("event.data.l", 16), "+", 3 << 16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := env.Compile(tc.expr)
			require.NoError(t, err)
			var ok bool
			n := allocated(func() { ok, err = p.Eval(context.Background(), ev) })
			require.False(t, ok)
			le := requireLimit(t, err, tc.op)
			require.Equal(t, tc.size, le.Size, "%v", err)
			require.NotContains(t, le.Error(), "aaaa", "the message holds no event data")
			require.Less(t, n, uint64(maxEvalAlloc), "allocated %d bytes", n)
		})
	}
}

// Results up to the limits are built as before.
func TestBuildWithinLimits(t *testing.T) {
	env := setupEnv(t)
	half := strings.Repeat("a", MaxStringSize/2)
	ev, err := EventActivation("app/x", json.RawMessage(fmt.Sprintf(`{"half": %q, "csv": %q}`, half, strings.Repeat("x,", MaxListSize-1)+"x")), "id1", 1, "")
	require.NoError(t, err)
	// replace and join are also charged a unit a character of their result
	// (as cel-go's string library does), which keeps their results under
	// about 900 KB, below MaxStringSize.
	for _, expr := range []string{
		`size(event.data.half + event.data.half) == 1048576`,
		`size(bytes(event.data.half) + bytes(event.data.half)) == 1048576`,
		`size("%s%s".format([event.data.half, event.data.half])) == 1048576`,
		`size(event.data.half.replace("a", "bb", 100000)) == 624288`,
		`size([event.data.half, event.data.half.substring(0, 100000)].join("-")) == 624289`,
		`event.data.csv.split(",").size() == 100000`,
		`event.data.csv.split(",", 3).size() == 3`,
		`"a-b".replace("-", "+") == "a+b"`,
		`"%d items, %s".format([3, [1, "x", {"k": 2.5}]]) == "3 items, [1, x, {k: 2.5}]"`,
		`strings.quote("a\nb") == "\"a\\nb\""`,
		`[1, 2] + [3] == [1, 2, 3]`,
		`"ab" + "cd" == "abcd" && b"a" + b"b" == b"ab"`,
	} {
		p, err := env.Compile(expr)
		require.NoError(t, err, expr)
		ok, err := p.Eval(context.Background(), ev)
		require.NoError(t, err, expr)
		require.True(t, ok, expr)
	}
}

// alternation returns a regular expression of about n bytes: an
// alternation of distinct literals, which has no common prefix for RE2 to
// skip ahead with.
func alternation(n int) string {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		if i > 0 {
			b.WriteByte('|')
		}
		fmt.Fprintf(&b, "%c%cq%cz", 'a'+i%26, 'a'+(i/26)%26, 'a'+(i*7)%26)
	}
	return b.String()
}

// regexEvent holds a 500 KB string that none of alternation's literals
// matches.
func regexEvent(t testing.TB) map[string]any {
	t.Helper()
	ev, err := EventActivation("app/x", json.RawMessage(fmt.Sprintf(`{"s": %q}`, strings.Repeat("a", 500_000))), "id1", 1, "")
	require.NoError(t, err)
	return ev
}

// The repro of matches() ignoring the deadline: a 3.3 KB constant pattern
// over a 500 KB event string took 8 s. Now the call is refused before it
// runs; the test checks the kind of error, not the time.
func TestRegexLargeInput(t *testing.T) {
	re := alternation(3300)
	ev := regexEvent(t)
	for _, expr := range []string{
		`event.data.s.matches("` + re + `")`,
		`matches(event.data.s, "` + re + `")`,
		`event.data.s.matches(event.data.s.substring(0, 0) + "` + re + `")`, // compiled at evaluation
	} {
		p, err := setupEnv(t).Compile(expr)
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		ok, err := p.Eval(ctx, ev)
		cancel()
		require.False(t, ok)
		le := requireLimit(t, err, "matches")
		require.Greater(t, le.Size, int64(MaxRegexWork))
		require.Contains(t, err.Error(), "-step limit")
	}
}

func TestRegexLimits(t *testing.T) {
	env := setupEnv(t)
	ev, err := EventActivation("app/x", json.RawMessage(`{"s": "ada@example.com", "p": "(secret-pattern", "rep": "`+strings.Repeat("[a-z]{1000}", 11)+`"}`), "id1", 1, "")
	require.NoError(t, err)

	// A constant pattern over the program size limit does not compile.
	_, err = env.Compile(`event.data.s.matches("` + strings.Repeat("[a-z]{1000}", 11) + `")`)
	var ce *CompileError
	require.ErrorAs(t, err, &ce)
	require.Contains(t, ce.Message, "over the 10000-instruction limit")

	// One read from the event is refused at evaluation, and a bad one is
	// reported without quoting it.
	for path, want := range map[string]string{
		"rep": "matches: regular expression program would be over the 10000-instruction limit",
		"p":   "matches: invalid regular expression: missing closing )",
	} {
		p, err := env.Compile(`event.data.s.matches(event.data.` + path + `)`)
		require.NoError(t, err)
		_, err = p.Eval(context.Background(), ev)
		require.ErrorContains(t, err, want)
		require.NotContains(t, err.Error(), "secret")
	}

	// Ordinary patterns work as before.
	for _, expr := range []string{`event.data.s.matches("^[a-z]+@example\\.com$")`, `matches(event.data.s, "ada")`, `!event.data.s.matches("^x")`} {
		p, err := env.Compile(expr)
		require.NoError(t, err)
		ok, err := p.Eval(context.Background(), ev)
		require.NoError(t, err, expr)
		require.True(t, ok, expr)
	}
}

// nest returns an expression that compares (op: ==, != or in) two lists
// holding the same list 10 times, nested depth times: 10^depth leaves in a
// few hundred bytes of expression.
func nest(depth int, op string) string {
	ten := func(v string) string { return "[" + strings.TrimSuffix(strings.Repeat(v+",", 10), ",") + "]" }
	vars := "abcdefghijklmnop"
	v := vars[depth-1 : depth]
	expr := ten(v) + " " + op + " " + ten(v)
	if op == "in" {
		expr = ten(v) + " in [" + ten(v) + "]"
	}
	for i := depth - 1; i >= 0; i-- {
		src := "[" + ten("1") + "]"
		if i > 0 {
			src = "[" + ten(vars[i-1:i]) + "]"
		}
		expr = src + ".exists(" + vars[i:i+1] + ", " + expr + ")"
	}
	return expr
}

// Comparing lists that hold the same list many times took seconds past the
// deadline (10^7 comparisons for this one). Now it is refused.
func TestCompareLimit(t *testing.T) {
	for _, op := range []string{"==", "!=", "in"} {
		p, err := setupEnv(t).Compile(nest(7, op))
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		ok, err := p.Eval(ctx, testEvent(t))
		cancel()
		require.False(t, ok)
		requireLimit(t, err, op)
	}

	// Comparing whole events, and looking lists up in lists, still works.
	ev := testEvent(t)
	for _, expr := range []string{
		`event.data == event.data`, `event.data.items[0] in event.data.items`, `!(event.data.tags != event.data.tags)`,
		`[[1, 2], [3]] == [[1, 2], [3]]`, `{"a": [1]} != {"a": [2]}`,
	} {
		p, err := setupEnv(t).Compile(expr)
		require.NoError(t, err, expr)
		ok, err := p.Eval(context.Background(), ev)
		require.NoError(t, err, expr)
		require.True(t, ok, expr)
	}
}

// The cost limit, like the size limits, matches ErrLimit.
func TestCostLimitIsErrLimit(t *testing.T) {
	items := make([]any, 100)
	for i := range items {
		items[i] = int64(i)
	}
	p, err := setupEnv(t).Compile(`event.data.l.all(a, event.data.l.all(b, event.data.l.all(c, event.data.l.all(d, a+b+c+d >= 0))))`)
	require.NoError(t, err)
	_, err = p.Eval(context.Background(), map[string]any{"data": map[string]any{"l": items}})
	require.ErrorIs(t, err, ErrLimit)
	require.ErrorContains(t, err, "cost limit exceeded")
	var le *LimitError
	require.False(t, errors.As(err, &le), "not an operation refused by size")
}

// Operations that cel-go charges a fixed cost, whatever they allocate, are
// charged by their work, so that a comprehension repeating them stops at the
// cost limit instead of building tens or hundreds of megabytes.
func TestChargedByWork(t *testing.T) {
	keys := make([]string, 100)
	for i := range keys {
		keys[i] = fmt.Sprintf(`"k%d": 0`, i)
	}
	l := bigList(100)
	for name, step := range map[string]string{
		"map literal":        "{" + strings.Join(keys, ", ") + `, "x": a}`,
		"list literal":       "[" + strings.Repeat("0, ", 100) + "a]",
		"time zone lookup":   `timestamp(a).getHours("Europe/Paris")`,
		"regular expression": `string(b).matches(string(a) + "a{500}")`,
		"deep comparison":    `event.data == event.data`,
	} {
		t.Run(name, func(t *testing.T) {
			p, err := setupEnv(t).Compile(l + `.map(a, ` + l + `.map(b, ` + step + `)).size() > 0`)
			require.NoError(t, err)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var ok bool
			n := allocated(func() { ok, err = p.Eval(ctx, testEvent(t)) })
			require.False(t, ok)
			require.ErrorIs(t, err, ErrLimit)
			require.ErrorContains(t, err, "cost limit exceeded")
			require.Less(t, n, uint64(maxEvalAlloc), "allocated %d bytes", n)
		})
	}
}

// BenchmarkRegexLargeInput evaluates the regular expression repro, which is
// refused before matching, and the largest match the limits allow: the time
// of one call at MaxRegexWork is what a deadline can be overrun by.
func BenchmarkRegexLargeInput(b *testing.B) {
	ev := regexEvent(b)
	env, err := NewEnv()
	require.NoError(b, err)
	re := alternation(3300)
	size, err := regexSize(re)
	require.NoError(b, err)
	at := MaxRegexWork/size - 1 // the longest input the limit allows this pattern
	atLimit, err := EventActivation("app/x", json.RawMessage(fmt.Sprintf(`{"s": %q}`, strings.Repeat("b", int(at)))), "id1", 1, "")
	require.NoError(b, err)
	for name, input := range map[string]map[string]any{"refused": ev, "at-limit": atLimit} {
		p, err := env.Compile(`event.data.s.matches("` + re + `")`)
		require.NoError(b, err)
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				_, _ = p.Eval(context.Background(), input)
			}
		})
	}
}
