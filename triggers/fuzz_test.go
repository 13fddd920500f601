package triggers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// The fuzz targets below run their seeds in every `go test`; `make fuzz`
// explores from them for a bounded time, one target after another.

// fuzzEvent is the activation every fuzzed expression is evaluated against:
// each JSON kind, nesting, and numbers on both sides of the int64/float64
// convention of EventActivation.
func fuzzEvent(t testing.TB) map[string]any {
	t.Helper()
	ev, err := EventActivation("app/user.created", json.RawMessage(`{
		"amount": 12, "price": 12.5, "big": 1e300, "neg": -9223372036854775808,
		"plan": "pro", "email": "Ada@Example.com", "empty": "", "uni": "żółw ✓ 😀",
		"tags": ["a", "b", "vip"], "user": {"id": "u_42", "age": 36, "admin": false},
		"items": [{"sku": "x", "qty": 2}, {"sku": "y", "qty": 5}],
		"matrix": [[1, 2], [3, 4]], "flag": true, "nothing": null, "obj": {},
		"s": "aaaaaaaaaa"
	}`), "01J0", 1700000000000, "2024-01")
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// evalGrace is how long past its context deadline an evaluation may take to
// return before the target reports it as stuck. It only catches hangs; it is
// far above any healthy evaluation.
const evalGrace = 5 * time.Second

// FuzzCompile feeds arbitrary expressions to Compile, CompileKey and
// CompileInt. Invariants: no panic; compiling is deterministic (the same
// error text, or success, every time) and Cached agrees with Compile; every
// failure is a *CompileError for that expression with a position inside it
// (or none); expressions that are empty or over MaxExprLen never compile; and
// a program that compiles evaluates against a fixed event without panicking,
// returns by its context deadline, allocates less than maxEvalAlloc while
// evaluating, honours the result contract of Eval, EvalKey or EvalInt, and
// leaves the shared activation unchanged.
func FuzzCompile(f *testing.F) {
	// Expressions that build far more than they are long, each stopped by
	// a limit before it allocates: amplifying string and list functions,
	// deep comparisons of lists holding the same list many times, large
	// regular expressions. (Those stopped by the cost limit take tens of
	// milliseconds each, which slows fuzzing down: their unit tests are in
	// limits_test.go.)
	for _, s := range []string{
		replaceBomb("event.data.s"), amplify("event.data.s") + `.replace("a", ` + amplify("event.data.s") + `)`,
		`size(` + amplify("event.data.s") + `.replace("a", ` + amplify("event.data.s") + `))`,
		doubling(amplify("event.data.s"), 6), doubling("event.data.tags", 20), doubling(`bytes(`+amplify("event.data.s")+`)`, 5),
		`[` + amplify("event.data.s") + `].map(x, [x, x, x, x, x, x, x, x, x, x, x, x].join()).size() > 0`,
		`[` + amplify("event.data.s") + `].map(x, "%s%s%s%s%s%s%s%s%s%s%s".format([x, x, x, x, x, x, x, x, x, x, x])) != []`,
		`[` + amplify("event.data.s") + `].map(x, "%s".format([[x, x, x, x, x, x, x, x, x, x, x]])) != []`,
		`[` + amplify("event.data.s") + `].map(x, (x + x + x + x + x).split("")).size() > 0`,
		`[` + amplify("event.data.s") + `.replace("a", "\n")].map(x, strings.quote(x + x + x + x + x + x)) != []`,
		nest(7, "=="),
		`event.data.s.matches("` + alternation(3300) + `")`,
		`event.data.s.matches(event.data.s + "[a-z]{1000}[a-z]{1000}[a-z]{1000}[a-z]{1000}[a-z]{1000}")`,
		// Bool, key and int expressions that compile.
		`true`, `event.data.amount > 10`, `event.data.plan == "pro"`,
		`event.data.tags.exists(t, t == "vip")`, `"vip" in event.data.tags`,
		`event.data.items.map(i, i.qty).filter(q, q > 3).size() == 1`,
		`event.data.email.lowerAscii().split("@")[1] == "example.com"`,
		`event.data.user.id`, `event.data.amount * 2`, `event.ts / 1000`, `event.data.price`,
		`event.data.big`, `event.data.neg`, `-event.data.neg`, `event.data.flag`, `event.name`,
		`uint(event.data.amount)`, `double("NaN")`, `1.0 / 0.0`, `-1.0 / 0.0`, `18446744073709551615u`,
		`event.data.matrix.all(r, r.all(x, x > 0))`, `has(event.data.user.id)`,
		`event.data.nothing == null`, `size(event.data.uni) == 6`, `event.data.obj.size() == 0`,
		`event.data.user.map(k, k).size() == 3`, `"%s-%d".format([event.name, event.data.amount])`,
		`timestamp("2024-01-01T00:00:00Z").getHours() == 0`, `duration("1h") > duration("1m")`,
		`event.name.matches("^app/.*$")`, `event.data.user.age >= 18 ? event.data.user.id : "minor"`,
		// Expressions that fail at evaluation: missing keys, overflow,
		// division by zero, out of range, wrong result type, cost.
		`event.data.missing == 1`, `event.data.amount / 0 == 1`, `event.data.tags[99] == "x"`,
		`int("9223372036854775808") > 0`, `event.data.neg - 1 < 0`, `event.data.user`,
		`[1,2,3].map(x, [1,2,3].map(y, x*y)).size() > 0`,
		`"%s".format([event.data]) == ""`, `event.data.tags`,
		`[0,1,2,3,4,5,6,7,8,9].map(a, [0,1,2,3,4,5,6,7,8,9].map(b, [0,1,2,3,4,5,6,7,8,9].map(c, [0,1,2,3,4,5,6,7,8,9].map(d, a+b+c+d)))).size() > 0`,
		`"x".repeat(1000000) == ""`, `event.data.email.split("").join("x").size() > 0`,
		// Expressions that do not compile.
		`event.name.matches("(")`, `)(`, ``, ` `, `1 +`, "\x00", `foo`, `event.data.`, `1 == "a"`,
		`"unterminated`, "line\n2 +", strings.Repeat("(", 300) + "1" + strings.Repeat(")", 300),
		strings.Repeat("a", MaxExprLen+1), "\xff\xfe", `event.data.amount ? 1 : 2`,
	} {
		f.Add(s)
	}
	env, err := NewEnv()
	if err != nil {
		f.Fatal(err)
	}
	ev := fuzzEvent(f)
	pristine := fuzzEvent(f)

	kinds := []struct {
		name    string
		compile func(string) (*Program, error)
		cached  func(string) (*Program, error)
		// eval runs the program and checks the result contract of its kind,
		// returning what is wrong, if anything.
		eval func(ctx context.Context, p *Program) error
	}{
		{"Compile", env.Compile, env.Cached, func(ctx context.Context, p *Program) error {
			if ok, err := p.Eval(ctx, ev); err != nil && ok {
				return fmt.Errorf("Eval returned true with error %v", err)
			}
			return nil
		}},
		{"CompileKey", env.CompileKey, env.CachedKey, func(ctx context.Context, p *Program) error {
			if key, err := p.EvalKey(ctx, ev); err != nil && key != "" {
				return fmt.Errorf("EvalKey returned %q with error %v", key, err)
			}
			return nil
		}},
		{"CompileInt", env.CompileInt, env.CachedInt, func(ctx context.Context, p *Program) error {
			const lo, hi = -7, 1000
			n, err := p.EvalInt(ctx, ev, lo, hi)
			if err != nil && n != 0 {
				return fmt.Errorf("EvalInt returned %d with error %v", n, err)
			}
			if err == nil && (n < lo || n > hi) {
				return fmt.Errorf("EvalInt returned %d, outside [%d, %d]", n, lo, hi)
			}
			return nil
		}},
	}

	f.Fuzz(func(t *testing.T, expr string) {
		for _, k := range kinds {
			p, err := k.compile(expr)
			p2, err2 := k.compile(expr)
			if errText(err) != errText(err2) {
				t.Fatalf("%s(%q) is not deterministic: %v, then %v", k.name, expr, err, err2)
			}
			if _, cerr := k.cached(expr); errText(cerr) != errText(err) {
				t.Fatalf("%s(%q): Cached gives %v, Compile %v", k.name, expr, cerr, err)
			}
			if err != nil {
				if p != nil || p2 != nil {
					t.Fatalf("%s(%q): a program and an error", k.name, expr)
				}
				checkCompileError(t, expr, err)
				continue
			}
			if len(expr) > MaxExprLen || strings.TrimSpace(expr) == "" {
				t.Fatalf("%s accepted an expression of %d bytes: %q", k.name, len(expr), expr)
			}
			if p == nil || p.Expr() != expr {
				t.Fatalf("%s(%q): program for %q", k.name, expr, p.Expr())
			}
			if n := allocated(func() { evalWithin(t, k.name, p, k.eval) }); n > maxEvalAlloc {
				t.Fatalf("%s(%q): evaluation allocated %d bytes, over %d", k.name, expr, n, maxEvalAlloc)
			}
			if !reflect.DeepEqual(ev, pristine) {
				t.Fatalf("%s(%q): evaluation changed the activation", k.name, expr)
			}
		}
	})
}

// evalWithin runs eval under a context deadline and fails if it reports a
// problem or has not returned evalGrace after the deadline.
func evalWithin(t *testing.T, kind string, p *Program, eval func(context.Context, *Program) error) {
	t.Helper()
	const deadline = 500 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- eval(ctx, p) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s(%q): %v", kind, p.Expr(), err)
		}
	case <-time.After(deadline + evalGrace):
		t.Fatalf("%s(%q): evaluation did not return %v after its context deadline", kind, p.Expr(), evalGrace)
	}
}

func errText(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// checkCompileError checks the documented shape of a compile failure.
func checkCompileError(t *testing.T, expr string, err error) {
	t.Helper()
	var ce *CompileError
	if !errors.As(err, &ce) {
		t.Fatalf("%q: error %T is not a *CompileError: %v", expr, err, err)
	}
	if ce.Expr != expr {
		t.Fatalf("%q: CompileError.Expr is %q", expr, ce.Expr)
	}
	if ce.Message == "" || !strings.HasPrefix(err.Error(), "triggers: expression ") {
		t.Fatalf("%q: message %q", expr, err.Error())
	}
	lines := strings.Split(expr, "\n")
	switch {
	case ce.Line == 0 && ce.Column == 0: // the expression as a whole
	case ce.Line < 1 || ce.Line > len(lines) || ce.Column < 1 || ce.Column > utf8.RuneCountInString(lines[ce.Line-1])+1:
		t.Fatalf("%q: position line %d, column %d is not in the expression", expr, ce.Line, ce.Column)
	}
}

// FuzzPattern checks ValidateName, ValidatePattern and MatchName on
// arbitrary strings. Invariants: no panic; every rejection says what was
// wrong; a valid name is a valid pattern that matches itself; a valid
// pattern without '*' is a valid name and matches exactly itself; a valid
// wildcard is a valid name followed by '/*' or '.*' and matches exactly the
// names that extend its prefix; ValidatePattern accepts nothing else; and a
// pattern with a '*' that is not a well-formed wildcard matches nothing.
func FuzzPattern(f *testing.F) {
	for _, s := range [][2]string{
		{"app/user.created", "app/user.created"}, {"app/*", "app/user.created"}, {"app/user.*", "app/user.x"},
		{"app/*", "app/"}, {"app/*", "app"}, {"app.*", "app.a.b"}, {"herald/function.failed", "herald/function.failed"},
		{"*", "a"}, {"**", "a"}, {"/*", "/x"}, {".*", "."}, {"app/us*", "app/user"}, {"app/*/x", "app/a/x"},
		{"app/**", "app/x"}, {"app/*x", "app/ax"}, {"a/*", "a/*"}, {"", ""}, {" ", " "}, {"a b", "a b"},
		{"a\x00", "a\x00"}, {"\xff", "\xff"}, {"app/\u200b", "app/\u200b"}, {"ż/*", "ż/ó"}, {"a\u00a0b", "a\u00a0b"},
		{strings.Repeat("a", MaxNameLen), strings.Repeat("a", MaxNameLen)},
		{strings.Repeat("a", MaxNameLen-2) + "/*", strings.Repeat("a", MaxNameLen-2) + "/b"},
		{strings.Repeat("a", MaxNameLen-1) + "/*", strings.Repeat("a", MaxNameLen-1) + "/b"},
		{strings.Repeat("a", MaxNameLen+1), "a"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, p, n string) {
		perr, nerr := ValidatePattern(p), ValidateName(n)
		for _, err := range []error{perr, nerr, ValidateName(p), ValidatePattern(n)} {
			if err != nil && !strings.HasPrefix(err.Error(), "triggers: ") {
				t.Fatalf("error without the package prefix: %v", err)
			}
		}
		match := MatchName(p, n)

		if nerr == nil {
			if len(n) == 0 || !utf8.ValidString(n) || utf8.RuneCountInString(n) > MaxNameLen || strings.Contains(n, "*") {
				t.Fatalf("ValidateName accepted %q", n)
			}
			if !MatchName(n, n) {
				t.Fatalf("valid name %q does not match itself", n)
			}
			if err := ValidatePattern(n); err != nil {
				t.Fatalf("valid name %q is not a valid pattern: %v", n, err)
			}
		}

		// ValidatePattern accepts exactly the valid names and the valid
		// wildcards, restated here from its documentation.
		prefix, wild := wildcardShape(p)
		wantValid := ValidateName(p) == nil || (wild && utf8.RuneCountInString(p) <= MaxNameLen && ValidateName(prefix) == nil)
		if (perr == nil) != wantValid {
			t.Fatalf("ValidatePattern(%q) = %v, want valid %v", p, perr, wantValid)
		}

		switch {
		case perr == nil && !strings.Contains(p, "*"):
			if match != (p == n) {
				t.Fatalf("exact pattern %q: MatchName(%q) = %v", p, n, match)
			}
			if err := ValidateName(p); err != nil {
				t.Fatalf("exact pattern %q is not a valid name: %v", p, err)
			}
		case perr == nil:
			if !wild {
				t.Fatalf("ValidatePattern accepted %q, which is not a wildcard", p)
			}
			if want := len(n) > len(prefix) && strings.HasPrefix(n, prefix); match != want {
				t.Fatalf("wildcard %q: MatchName(%q) = %v, want %v", p, n, match, want)
			}
			if MatchName(p, prefix) || !MatchName(p, prefix+"x") || !MatchName(p, prefix+"x/y.z") {
				t.Fatalf("wildcard %q does not match one or more characters after %q", p, prefix)
			}
		case strings.Contains(p, "*") && !wild && match:
			// MatchName does not validate, but a misplaced '*' never matches.
			t.Fatalf("malformed wildcard %q matched %q", p, n)
		}
	})
}

// wildcardShape reports whether p has the shape of a wildcard: one '*', as
// its last character, right after '/' or '.'. It returns the prefix before
// the '*'.
func wildcardShape(p string) (prefix string, ok bool) {
	if len(p) < 2 || strings.Count(p, "*") != 1 || !strings.HasSuffix(p, "*") {
		return "", false
	}
	prefix = p[:len(p)-1]
	if last := prefix[len(prefix)-1]; last != '/' && last != '.' {
		return "", false
	}
	return prefix, true
}

// FuzzMatcher builds a Matcher from fuzzed patterns (one per line of
// patterns; only those ValidatePattern accepts, plus the name itself and
// its wildcard prefixes, so that matches are common) and compares it with
// brute force. Invariants: for the fuzzed name and names derived from the
// patterns, Candidates returns exactly the triggers whose pattern MatchName
// accepts, in the order given to NewMatcher; and Match returns the sorted,
// distinct keys of the candidates whose condition holds, evaluating the
// triggers of a function only until one matches and reporting each failed
// condition as an *EvalError.
func FuzzMatcher(f *testing.F) {
	for _, s := range [][2]string{
		{"app/user.created\napp/*\napp/user.*", "app/user.created"},
		{"app/*\napp/*\napp/user.created\napp/user.created", "app/user.created"},
		{"a/*\na/b/*\na/b.*\na/b.c", "a/b.c"},
		{"a.*\na./*\na/.*", "a./.x"},
		{"app/*\nother/*\napp/us*\n*\n\napp/ x", "app/"},
		{"ż/*\nż/ó.*", "ż/ó.w"},
		{"x", ""}, {"", "app/x"}, {"a/*", "a//"}, {"a/*", "a/\xff"},
	} {
		f.Add(s[0], s[1])
	}
	env, err := NewEnv()
	if err != nil {
		f.Fatal(err)
	}
	conds := make([]*Program, 4) // nil: no condition
	for i, expr := range []string{`true`, `false`, `event.data.missing == 1`} {
		if conds[i+1], err = env.Compile(expr); err != nil {
			f.Fatal(err)
		}
	}
	ev := fuzzEvent(f)

	f.Fuzz(func(t *testing.T, patterns, name string) {
		var ps []string
		for p := range strings.SplitSeq(patterns, "\n") {
			ps = append(ps, p)
		}
		ps = append(ps, name)
		for i := 0; i < len(name); i++ {
			if isSep(name[i]) {
				ps = append(ps, name[:i+1]+"*")
			}
		}
		var trigs []Trigger
		for _, p := range ps {
			if ValidatePattern(p) != nil || len(trigs) >= 64 {
				continue
			}
			i := len(trigs)
			trigs = append(trigs, Trigger{FunctionKey: fmt.Sprintf("fn/%d", i%5), Pattern: p, If: conds[(i/3)%len(conds)], Index: i})
		}
		given := slices.Clone(trigs)
		m, err := NewMatcher(given)
		if err != nil {
			t.Fatalf("NewMatcher rejected valid patterns: %v", err)
		}
		if m.Len() != len(trigs) {
			t.Fatalf("Len %d, want %d", m.Len(), len(trigs))
		}
		// The Matcher keeps its own copy of the slice.
		for i := range given {
			given[i].Pattern = "changed/*"
		}

		names := []string{name, name + "x", name + "/x", ""}
		for _, tr := range trigs {
			p := strings.TrimSuffix(tr.Pattern, "*")
			names = append(names, p, p+"x", p+"/x")
			if len(p) > 0 {
				names = append(names, p[:len(p)-1])
			}
		}
		for _, n := range names {
			var want []Trigger
			for _, tr := range trigs {
				if MatchName(tr.Pattern, n) {
					want = append(want, tr)
				}
			}
			got := m.Candidates(n)
			if !slices.EqualFunc(got, want, func(a, b Trigger) bool {
				return a.Index == b.Index && a.Pattern == b.Pattern && a.FunctionKey == b.FunctionKey && a.If == b.If
			}) {
				t.Fatalf("Candidates(%q) = %v\nbrute force    %v", n, indexes(got), indexes(want))
			}
			checkMatch(t, m, ev, n, want)
		}
	})
}

// checkMatch compares Match with the behaviour its documentation describes,
// given the candidates in order.
func checkMatch(t *testing.T, m *Matcher, ev map[string]any, name string, candidates []Trigger) {
	t.Helper()
	var wantKeys []string
	var wantErrs []string
	for _, tr := range candidates {
		if slices.Contains(wantKeys, tr.FunctionKey) {
			continue
		}
		if tr.If != nil {
			ok, err := tr.If.Eval(context.Background(), ev)
			if err != nil {
				wantErrs = append(wantErrs, fmt.Sprintf("%s/%d", tr.FunctionKey, tr.Index))
				continue
			}
			if !ok {
				continue
			}
		}
		wantKeys = append(wantKeys, tr.FunctionKey)
	}
	slices.Sort(wantKeys)
	keys, errs := m.Match(context.Background(), ev, name)
	var gotErrs []string
	for _, err := range errs {
		var ee *EvalError
		if !errors.As(err, &ee) {
			t.Fatalf("Match(%q): error %T is not an *EvalError: %v", name, err, err)
		}
		gotErrs = append(gotErrs, fmt.Sprintf("%s/%d", ee.FunctionKey, ee.TriggerIndex))
	}
	if !slices.Equal(keys, wantKeys) || !slices.Equal(gotErrs, wantErrs) {
		t.Fatalf("Match(%q) = %v, errors %v\nwant          %v, errors %v", name, keys, gotErrs, wantKeys, wantErrs)
	}
}

func indexes(ts []Trigger) []string {
	out := make([]string, len(ts))
	for i, tr := range ts {
		out[i] = fmt.Sprintf("%d:%s", tr.Index, tr.Pattern)
	}
	return out
}

// cronProbes are the instants FuzzCron calls Next with: several zones
// (Next must answer in the zone it is given), DST changes in both
// directions, leap days, and ends of years. All lie in 2000-2090, where
// every schedule ParseCron accepts fires within robfig/cron's five-year
// search horizon (the rarest, 29 February, fires every four years; 2100 is
// not a leap year).
func cronProbes(t testing.TB) []time.Time {
	t.Helper()
	load := func(name string) *time.Location {
		loc, err := time.LoadLocation(name)
		if err != nil {
			t.Fatal(err)
		}
		return loc
	}
	paris, ny, kolkata, lordHowe := load("Europe/Paris"), load("America/New_York"), load("Asia/Kolkata"), load("Australia/Lord_Howe")
	return []time.Time{
		time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC),
		time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2031, 12, 31, 23, 59, 59, 999_999_999, time.UTC),
		time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC),
		time.Date(2089, 3, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2024, 3, 31, 1, 59, 0, 0, paris),  // clocks go forward at 02:00
		time.Date(2024, 10, 27, 2, 30, 0, 0, paris), // 02:00-03:00 happens twice
		time.Date(2024, 3, 10, 1, 30, 0, 0, ny),
		time.Date(2024, 11, 3, 1, 30, 0, 0, ny),
		time.Date(2024, 6, 1, 5, 29, 30, 0, kolkata),
		time.Date(2024, 4, 7, 1, 45, 0, 0, lordHowe), // a 30-minute DST shift
	}
}

// FuzzCron checks ParseCron on arbitrary strings. Invariants: no panic; a
// failure returns the zero CronSpec (which never fires) and an error naming
// the expression; a parsed schedule has a normalised Expr and a loadable
// zone, and for each probe instant t, Next(t) is strictly after t, on a whole
// minute, in t's location, and is also Next of every instant between t and
// it; and String() parses again to the same Expr, zone and Next.
func FuzzCron(f *testing.F) {
	for _, s := range []string{
		"0 3 * * *", "*/15 9-17 * * MON-FRI", "@daily", "@hourly", "@yearly", "@every 5m",
		"TZ=Europe/Paris 0 3 * * *", "CRON_TZ=UTC @hourly", "TZ=Australia/Lord_Howe 15 2 * * *",
		"TZ=America/New_York 30 2 * 3,11 SUN", "  0   3 *  * *  ", "0 0 29 2 *", "0 0 29 2 MON",
		"TZ= 0 3 * * *", "TZ=Europe/Paris", "TZ=Local 0 3 * * *", "TZ=UTC TZ=UTC 0 3 * * *",
		"TZ=../../etc/passwd 0 3 * * *", "0 0 31 2 *", "0 0 30 2 *", "0 0 31 4,6,9,11 *",
		"60 * * * *", "5-1 * * * *", "*/0 * * * *", "1-2/3,4 * * * *", "0 0 ? * *", "0 0 L * *",
		"0-59/99999999999999999999 * * * *", "0 0 * JAN-DEC/2 SUN-SAT", "0 0 1 1 7", "", "@", "* * * *",
		"* * * * * *", "0\t3\n*\v*\f*", "0 3 * * *\u00a0",
	} {
		f.Add(s)
	}
	probes := cronProbes(f)
	f.Fuzz(func(t *testing.T, expr string) {
		c, err := ParseCron(expr)
		if err != nil {
			if c != (CronSpec{}) {
				t.Fatalf("%q: failed (%v) but returned %+v", expr, err, c)
			}
			if !c.Next(probes[0]).IsZero() {
				t.Fatalf("%q: the zero CronSpec fires", expr)
			}
			if !strings.HasPrefix(err.Error(), "triggers: cron ") {
				t.Fatalf("%q: error %q does not name the expression", expr, err)
			}
			return
		}
		if c.Expr == "" || c.Expr != strings.Join(strings.Fields(c.Expr), " ") {
			t.Fatalf("%q: Expr %q is not normalised", expr, c.Expr)
		}
		if c.TimeZone != "" {
			if _, err := time.LoadLocation(c.TimeZone); err != nil || c.TimeZone == "Local" {
				t.Fatalf("%q: zone %q: %v", expr, c.TimeZone, err)
			}
		}
		again, err := ParseCron(c.String())
		if err != nil {
			t.Fatalf("%q: String() %q does not parse: %v", expr, c.String(), err)
		}
		if again.Expr != c.Expr || again.TimeZone != c.TimeZone || again.String() != c.String() {
			t.Fatalf("%q: String() %q parses to %+v, not %+v", expr, c.String(), again, c)
		}
		for _, at := range probes {
			next := c.Next(at)
			if next.IsZero() || !next.After(at) {
				t.Fatalf("%q: Next(%v) = %v, not after it", expr, at, next)
			}
			if next.Second() != 0 || next.Nanosecond() != 0 {
				t.Fatalf("%q: Next(%v) = %v is not on a whole minute", expr, at, next)
			}
			if next.Location() != at.Location() {
				t.Fatalf("%q: Next(%v) is in %v, not in %v", expr, at, next.Location(), at.Location())
			}
			// No activation lies between at and next.
			if mid := at.Add(next.Sub(at) / 2); !c.Next(mid).Equal(next) {
				t.Fatalf("%q: Next(%v) = %v but Next(%v) = %v", expr, at, next, mid, c.Next(mid))
			}
			if before := next.Add(-time.Nanosecond); !c.Next(before).Equal(next) {
				t.Fatalf("%q: Next(%v) = %v, not %v", expr, before, c.Next(before), next)
			}
			if got := again.Next(at); !got.Equal(next) {
				t.Fatalf("%q: Next(%v) = %v, but %v after String() round trip", expr, at, next, got)
			}
		}
	})
}
