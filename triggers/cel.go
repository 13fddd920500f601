package triggers

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/ext"
)

const (
	// MaxExprLen is the longest expression Compile accepts, in bytes.
	MaxExprLen = 4096

	// CostLimit bounds the runtime cost of one evaluation, in CEL cost units
	// (roughly one unit per operation, more for string and list work). An
	// evaluation that exceeds it stops with an error instead of stalling the
	// router. Compile rejects expressions whose smallest possible cost is
	// already above it.
	CostLimit = 1_000_000

	// interruptCheckFrequency is how many comprehension iterations run
	// between checks of the evaluation context, so a cancelled or expired
	// ctx stops a long loop promptly.
	interruptCheckFrequency = 100

	// DefaultCacheSize is how many compiled expressions [Env.Cached] keeps.
	DefaultCacheSize = 10_000
)

// Env is the CEL environment for trigger expressions. It declares one
// variable, event, a map with the fields name (string), data (map), id
// (string), ts (int, milliseconds since the Unix epoch) and v (string), as
// built by [EventActivation]. It offers the standard CEL library and macros
// (has, all, exists, exists_one, map, filter) and the cel-go string
// extensions (lowerAscii, upperAscii, split, join, replace, substring,
// indexOf, trim, format, ...). It has no function that reaches the
// network, the file system or the clock.
//
// Evaluation is bounded, whatever the expression and the event, in every
// kind of program (Compile, CompileKey, CompileInt, CompileAs, and NewWaitEnv
// conditions):
//
//   - Cost: at most [CostLimit] units. Operations that build strings, bytes,
//     lists or maps, compare lists and maps, or match regular expressions are
//     charged by the work they do (about one unit per 10 bytes built), so the
//     limit bounds what one evaluation builds to about 10 MB and its garbage
//     to a few tens of megabytes.
//   - Size: no operation builds a string or bytes value over [MaxStringSize]
//     bytes or a list over [MaxListSize] elements; replace, join, format, +,
//     strings.quote and split compute the size of their result and refuse
//     before allocating it. ==, != and in refuse deep comparisons over
//     [MaxCompareSize] values.
//   - Regular expressions: matches accepts patterns of up to [MaxRegexLen]
//     bytes compiling to at most [MaxRegexProgramSize] instructions (a
//     constant pattern over that does not compile), and refuses a call whose
//     work, program size × input length, exceeds [MaxRegexWork].
//   - Time: comprehensions stop at the context's deadline (checked every
//     100 iterations). Each operation is bounded by the limits above (one
//     matches or comparison at its limit takes some 10-25ms) and charged
//     roughly by its running time, so CostLimit also bounds an evaluation
//     to about a tenth of a second of work, whatever its deadline.
//
// An operation refused by a limit makes the evaluation fail with a
// [*LimitError] (or, when it is the cost limit, cel-go's error); both match
// [ErrLimit]. Their messages give sizes and limits, never event data.
//
// An Env is safe for concurrent use.
type Env struct {
	env   *cel.Env
	cache *programCache
}

// NewEnv builds the trigger environment. Building one costs a few
// milliseconds, so build it once and share it.
func NewEnv() (*Env, error) {
	return newEnv("event")
}

// NewWaitEnv returns the environment of waitForEvent and cancelOn
// conditions: `event` is the run's triggering event and `async` the candidate
// event. Evaluate its programs with EvalWait.
func NewWaitEnv() (*Env, error) {
	return newEnv("event", "async")
}

func newEnv(vars ...string) (*Env, error) {
	decls := make([]cel.EnvOption, 0, len(vars))
	for _, v := range vars {
		decls = append(decls, cel.Variable(v, cel.MapType(cel.StringType, cel.DynType)))
	}
	return NewEnvWith(decls...)
}

// NewEnvWith builds an environment with Herald's CEL library and limits (as
// described on Env) and the given variable declarations, for expressions
// over other inputs, such as webhook transforms. Compile their programs with
// CompileAs and evaluate them with Value.
func NewEnvWith(decls ...cel.EnvOption) (*Env, error) {
	guarded, err := guardedStrings()
	if err != nil {
		return nil, fmt.Errorf("triggers: build CEL environment: %w", err)
	}
	opts := append(slices.Clone(decls), ext.Strings())
	// After ext.Strings, so that the checked overloads replace the library's.
	opts = append(opts, guarded...)
	env, err := cel.NewEnv(append(opts,
		// Lets `1.5 < 2` type-check; values read from event data are dyn and
		// already compare across int and double at run time.
		cel.CrossTypeNumericComparisons(true),
		// Timestamp accessors such as getHours() default to UTC rather than
		// the host's zone, so results do not depend on the machine.
		cel.DefaultUTCTimeZone(true),
		cel.ParserExpressionSizeLimit(MaxExprLen),
	)...)
	if err != nil {
		return nil, fmt.Errorf("triggers: build CEL environment: %w", err)
	}
	return &Env{env: env, cache: newProgramCache(DefaultCacheSize)}, nil
}

// CompileError is an expression that does not compile: a syntax error, an
// unknown identifier or function, a type error, a non-boolean result, an
// empty expression, one over MaxExprLen, one whose cost is certain to exceed
// CostLimit, or one with a constant regular expression that is invalid or
// over MaxRegexProgramSize. Line and Column are 1-based and locate the first
// problem; they are 0 when the problem concerns the whole expression.
type CompileError struct {
	Expr    string
	Message string
	Line    int
	Column  int
}

// Error returns a one-line description with the (possibly shortened)
// expression and, when known, the position.
func (e *CompileError) Error() string { return "triggers: expression " + e.Detail() }

// Detail is the error without its "triggers: expression " prefix: the
// (possibly shortened) expression, the position when known, the problem.
func (e *CompileError) Detail() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s: line %d, column %d: %s", shorten(e.Expr), e.Line, e.Column, e.Message)
	}
	return fmt.Sprintf("%s: %s", shorten(e.Expr), e.Message)
}

// shorten quotes s, cutting it to 120 runes so one bad expression cannot
// flood a log line.
func shorten(s string) string {
	const max = 120
	if utf8.RuneCountInString(s) <= max {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("%.*q…", max, s)
}

// Program is a compiled boolean expression. It is immutable and safe for
// concurrent use.
type Program struct {
	expr string
	prg  cel.Program
}

// Expr returns the source expression.
func (p *Program) Expr() string { return p.expr }

// Compile parses and type-checks expr against the environment and plans it
// for evaluation. It returns a *CompileError when expr is empty, longer
// than MaxExprLen, invalid, not of type bool (dyn is accepted and checked
// at evaluation), or certain to exceed CostLimit. Compile at registration
// time so users see the error when they sync, not at their first event.
func (e *Env) Compile(expr string) (*Program, error) {
	return e.compile(expr, kindIs(types.BoolKind), "bool")
}

// CompileKey compiles a key expression, such as `event.data.userId`: its
// value must be a string, a number or a bool (dyn is accepted and checked at
// evaluation). Evaluate it with EvalKey.
func (e *Env) CompileKey(expr string) (*Program, error) {
	return e.compile(expr, kindIs(types.StringKind, types.IntKind, types.UintKind, types.DoubleKind, types.BoolKind), "a string, number or bool")
}

// CompileInt compiles an integer expression, such as a priority. Evaluate it
// with EvalInt.
func (e *Env) CompileInt(expr string) (*Program, error) {
	return e.compile(expr, kindIs(types.IntKind, types.UintKind, types.DoubleKind), "a number")
}

// CompileAs compiles expr with the checks and limits of Compile, except that
// the result type is accepted when outputOK says so (dyn always is, and is
// the caller's to check at evaluation); want describes the accepted types in
// the error.
func (e *Env) CompileAs(expr string, outputOK func(*types.Type) bool, want string) (*Program, error) {
	return e.compile(expr, outputOK, want)
}

// kindIs accepts result types of the given kinds.
func kindIs(kinds ...types.Kind) func(*types.Type) bool {
	return func(t *types.Type) bool {
		for _, k := range kinds {
			if t.Kind() == k {
				return true
			}
		}
		return false
	}
}

func (e *Env) compile(expr string, outputOK func(*types.Type) bool, want string) (*Program, error) {
	if len(expr) > MaxExprLen {
		return nil, &CompileError{Expr: expr, Message: fmt.Sprintf("%d bytes is longer than the limit of %d", len(expr), MaxExprLen)}
	}
	if strings.TrimSpace(expr) == "" {
		return nil, &CompileError{Expr: expr, Message: "expression is empty"}
	}
	ast, iss := e.env.Compile(expr)
	if iss.Err() != nil {
		errs := iss.Errors()
		ce := &CompileError{Expr: expr, Message: "invalid expression"}
		if len(errs) > 0 {
			ce.Message = errs[0].Message
			ce.Line = errs[0].Location.Line()
			ce.Column = errs[0].Location.Column() + 1 // cel-go columns are 0-based
			if ce.Line <= 0 || ce.Column <= 0 {
				// Some macro errors carry no column: report no position
				// rather than a wrong one.
				ce.Line, ce.Column = 0, 0
			}
			if len(errs) > 1 {
				ce.Message += fmt.Sprintf(" (and %d more errors)", len(errs)-1)
			}
		}
		return nil, ce
	}
	if t := ast.OutputType(); t.Kind() != types.DynKind && !outputOK(t) {
		return nil, &CompileError{Expr: expr, Message: fmt.Sprintf("must evaluate to %s, not %s", want, ast.OutputType())}
	}
	// With event data unknown, the estimate's lower bound only counts work
	// the expression always does (literal lists and the like); if even that
	// is over the limit, every evaluation would fail, so say so now.
	if est, err := e.env.EstimateCost(ast, nilEstimator{}); err == nil && est.Min > CostLimit {
		return nil, &CompileError{Expr: expr, Message: fmt.Sprintf("estimated cost %d always exceeds the limit of %d", est.Min, CostLimit)}
	}
	prg, err := e.env.Program(ast, programOptions()...)
	if err != nil {
		// Constant regular expressions are compiled while planning, so a
		// bad pattern in matches(), or one over MaxRegexProgramSize,
		// surfaces here.
		return nil, &CompileError{Expr: expr, Message: err.Error()}
	}
	return &Program{expr: expr, prg: prg}, nil
}

// Cached is Compile with memoisation (each kind of program, Cached, CachedKey
// and CachedInt, under its own prefix, so the same text never shares an entry
// across kinds): each distinct expression is compiled
// once and the result, Program or *CompileError, is shared by all callers.
// Concurrent calls for the same expression wait for a single compilation.
// The cache holds up to DefaultCacheSize expressions; past that, an
// arbitrary entry is dropped and will be compiled again when next asked for.
func (e *Env) Cached(expr string) (*Program, error) {
	return e.cache.get("bool\x00"+expr, func(string) (*Program, error) { return e.Compile(expr) })
}

// CachedKey is CompileKey with the memoisation of Cached.
func (e *Env) CachedKey(expr string) (*Program, error) {
	return e.cache.get("key\x00"+expr, func(string) (*Program, error) { return e.CompileKey(expr) })
}

// CachedInt is CompileInt with the memoisation of Cached.
func (e *Env) CachedInt(expr string) (*Program, error) {
	return e.cache.get("int\x00"+expr, func(string) (*Program, error) { return e.CompileInt(expr) })
}

// ErrNotBool is returned (wrapped) by [Program.Eval] when a dyn expression
// produces a value that is not a bool.
var ErrNotBool = errors.New("triggers: expression did not evaluate to a bool")

// Eval runs the program against event, the map built by
// [EventActivation], and reports whether the expression is true.
//
// Any evaluation failure (a missing key, a type mismatch, a non-bool
// result, division by zero, the cost limit, or ctx being cancelled or past
// its deadline) returns false and an error; Eval never panics. Long
// comprehensions check ctx every few iterations, so give ctx a deadline to
// bound wall-clock time as well as cost. ctx must not be nil.
func (p *Program) Eval(ctx context.Context, event map[string]any) (ok bool, err error) {
	return p.eval(ctx, map[string]any{"event": event})
}

// EvalWait evaluates a program compiled in a NewWaitEnv environment, with the
// same contract as Eval.
func (p *Program) EvalWait(ctx context.Context, event, async map[string]any) (bool, error) {
	return p.eval(ctx, map[string]any{"event": event, "async": async})
}

func (p *Program) eval(ctx context.Context, vars map[string]any) (ok bool, err error) {
	out, err := p.value(ctx, vars)
	if err != nil {
		return false, err
	}
	b, isBool := out.(types.Bool)
	if !isBool {
		return false, fmt.Errorf("%w: %s gave %s", ErrNotBool, shorten(p.expr), out.Type())
	}
	return bool(b), nil
}

// value evaluates the program and returns its raw result; errors name the
// expression.
func (p *Program) value(ctx context.Context, vars map[string]any) (ref.Val, error) {
	out, err := p.Value(ctx, vars)
	if err != nil {
		return nil, fmt.Errorf("triggers: evaluate %s: %w", shorten(p.expr), err)
	}
	return out, nil
}

// Value evaluates the program with vars (one value per declared variable)
// and returns its raw result, for programs compiled with CompileAs. It stops
// at the limits documented on Env (its error then matches ErrLimit) and when
// ctx is done, and turns a panic of cel-go into an error; errors do not name
// the expression, so callers can say what it is.
func (p *Program) Value(ctx context.Context, vars map[string]any) (out ref.Val, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// cel-go converts arbitrary Go values lazily; a value of a kind it does
	// not expect must cost one evaluation an error, not the process.
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("panic: %v", r)
		}
	}()
	out, _, err = p.prg.ContextEval(ctx, vars)
	if err != nil {
		return nil, markLimit(err)
	}
	return out, nil
}

// ErrBadKey is returned (wrapped) by EvalKey when the value is not a string,
// number or bool, and by EvalInt when it is not a finite number.
var ErrBadKey = errors.New("triggers: expression gave a value of the wrong type")

// EvalKey evaluates a program compiled with CompileKey against event and
// returns its value as a key: a string as is, a number in its shortest
// decimal form (1 and 1.0 give "1"), a bool as "true" or "false". Failures
// are returned as by Eval.
func (p *Program) EvalKey(ctx context.Context, event map[string]any) (string, error) {
	out, err := p.value(ctx, map[string]any{"event": event})
	if err != nil {
		return "", err
	}
	switch v := out.(type) {
	case types.String:
		return string(v), nil
	case types.Bool:
		return strconv.FormatBool(bool(v)), nil
	case types.Int:
		return strconv.FormatInt(int64(v), 10), nil
	case types.Uint:
		return strconv.FormatUint(uint64(v), 10), nil
	case types.Double:
		f := float64(v)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return "", fmt.Errorf("%w: %s gave %v", ErrBadKey, shorten(p.expr), f)
		}
		if f == math.Trunc(f) && math.Abs(f) < 1e15 {
			return strconv.FormatInt(int64(f), 10), nil
		}
		return strconv.FormatFloat(f, 'g', -1, 64), nil
	}
	return "", fmt.Errorf("%w: %s gave %s, not a string, number or bool", ErrBadKey, shorten(p.expr), out.Type())
}

// EvalInt evaluates a program compiled with CompileInt against event and
// returns its value, truncated to an integer and clamped to [lo, hi].
func (p *Program) EvalInt(ctx context.Context, event map[string]any, lo, hi int64) (int64, error) {
	out, err := p.value(ctx, map[string]any{"event": event})
	if err != nil {
		return 0, err
	}
	var f float64
	switch v := out.(type) {
	case types.Int:
		return max(lo, min(hi, int64(v))), nil
	case types.Uint:
		if uint64(v) > uint64(hi) {
			return hi, nil
		}
		return max(lo, int64(v)), nil
	case types.Double:
		f = float64(v)
	default:
		return 0, fmt.Errorf("%w: %s gave %s, not a number", ErrBadKey, shorten(p.expr), out.Type())
	}
	if math.IsNaN(f) {
		return 0, fmt.Errorf("%w: %s gave NaN", ErrBadKey, shorten(p.expr))
	}
	return int64(max(float64(lo), min(float64(hi), math.Trunc(f)))), nil
}

// programCache memoises compilation. Entries are created under the mutex
// and filled outside it, so a slow compile blocks only callers of the same
// expression.
type programCache struct {
	mu      sync.Mutex
	max     int
	entries map[string]*cacheEntry
}

type cacheEntry struct {
	once sync.Once
	prg  *Program
	err  error
}

func newProgramCache(max int) *programCache {
	return &programCache{max: max, entries: make(map[string]*cacheEntry)}
}

func (c *programCache) get(expr string, compile func(string) (*Program, error)) (*Program, error) {
	c.mu.Lock()
	ent, ok := c.entries[expr]
	if !ok {
		if len(c.entries) >= c.max {
			for k := range c.entries { // map order makes this an arbitrary victim
				delete(c.entries, k)
				break
			}
		}
		ent = &cacheEntry{}
		c.entries[expr] = ent
	}
	c.mu.Unlock()
	ent.once.Do(func() { ent.prg, ent.err = compile(expr) })
	return ent.prg, ent.err
}

// nilEstimator knows nothing about input sizes, so cost estimates fall back
// to cel-go's defaults: unknown sizes range from 0 to unbounded.
type nilEstimator struct{}

func (nilEstimator) EstimateSize(checker.AstNode) *checker.SizeEstimate { return nil }

func (nilEstimator) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}
