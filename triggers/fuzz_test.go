package triggers

import (
	"context"
	"strings"
	"testing"
	"time"
)

func FuzzValidatePattern(f *testing.F) {
	for _, s := range []string{
		"app/user.created", "app/*", "app/user.*", "herald/function.failed",
		"*", "**", "app/us*", "app/*/x", "app/**", "", " ", "a b", "a\x00", "\xff",
		"app/\u200b", strings.Repeat("a", 257),
	} {
		f.Add(s, "app/user.created")
	}
	f.Fuzz(func(t *testing.T, pattern, name string) {
		err := ValidatePattern(pattern)
		if err == nil {
			if len(pattern) == 0 || len(pattern) > MaxNameLen {
				t.Fatalf("accepted pattern of length %d", len(pattern))
			}
			if i := strings.IndexByte(pattern, '*'); i >= 0 {
				if i != len(pattern)-1 || i == 0 || !isSep(pattern[i-1]) {
					t.Fatalf("accepted bad wildcard %q", pattern)
				}
			}
			// A valid exact pattern matches itself; a valid wildcard
			// matches its prefix plus one character.
			if p, ok := wildcardPrefix(pattern); ok {
				if !MatchName(pattern, p+"x") {
					t.Fatalf("%q does not match %q", pattern, p+"x")
				}
			} else if !MatchName(pattern, pattern) {
				t.Fatalf("%q does not match itself", pattern)
			}
			// Candidates and MatchName agree.
			m, err := NewMatcher([]Trigger{{FunctionKey: "f", Pattern: pattern}})
			if err != nil {
				t.Fatal(err)
			}
			if got, want := len(m.Candidates(name)) == 1, MatchName(pattern, name); got != want {
				t.Fatalf("pattern %q name %q: Candidates %v, MatchName %v", pattern, name, got, want)
			}
		} else if err.Error() == "" {
			t.Fatal("empty error message")
		}
		_ = ValidateName(pattern)
	})
}

func FuzzCompile(f *testing.F) {
	for _, s := range []string{
		`true`, `event.data.amount > 10`, `event.data.plan == "pro"`,
		`event.data.tags.exists(t, t == "vip")`, `"vip" in event.data.tags`,
		`event.data.items.map(i, i.qty).filter(q, q > 3).size() == 1`,
		`event.data.email.lowerAscii().split("@")[1] == "example.com"`,
		`event.data.missing == 1`, `event.data.amount / 0 == 1`, `event.name`,
		`[1,2,3].map(x, [1,2,3].map(y, x*y)).size() > 0`,
		`timestamp("2024-01-01T00:00:00Z").getHours() == 0`,
		`event.name.matches("(")`, `int("9223372036854775808") > 0`,
		`"%s".format([event.data])  == ""`, `event.data.tags[99] == "x"`,
		`)(`, ``, `1 +`, "\x00",
	} {
		f.Add(s)
	}
	env, err := NewEnv()
	if err != nil {
		f.Fatal(err)
	}
	ev := testEvent(f)
	f.Fuzz(func(t *testing.T, expr string) {
		p, err := env.Compile(expr)
		if err != nil {
			if _, ok := err.(*CompileError); !ok {
				t.Fatalf("Compile error is %T, not *CompileError", err)
			}
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		got, err := p.Eval(ctx, ev)
		if err != nil && got {
			t.Fatal("true with an error")
		}
	})
}

func FuzzParseCron(f *testing.F) {
	for _, s := range []string{
		"0 3 * * *", "*/15 9-17 * * MON-FRI", "@daily", "@every 5m",
		"TZ=Europe/Paris 0 3 * * *", "CRON_TZ=UTC @hourly", "TZ=", "TZ=Europe/Paris",
		"0 0 31 2 *", "60 * * * *", "5-1 * * * *", "*/0 * * * *", "1-2/3,4 * * * *",
		"0-59/99999999999999999999 * * * *", "", "@",
	} {
		f.Add(s)
	}
	after := time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, expr string) {
		c, err := ParseCron(expr)
		if err != nil {
			return
		}
		next := c.Next(after)
		// A valid schedule fires at least every four years, well within
		// robfig's five-year search horizon.
		if next.IsZero() || !next.After(after) {
			t.Fatalf("%q: Next(%v) = %v", expr, after, next)
		}
		again, err := ParseCron(c.String())
		if err != nil || again.Expr != c.Expr || again.TimeZone != c.TimeZone {
			t.Fatalf("%q: String %q does not round-trip: %v", expr, c.String(), err)
		}
	})
}
