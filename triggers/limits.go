package triggers

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common"
	"github.com/google/cel-go/common/functions"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/overloads"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	"github.com/google/cel-go/ext"
	"github.com/google/cel-go/interpreter"
)

// Limits on what one evaluation may build or do, on top of CostLimit and the
// caller's deadline. cel-go charges the cost of a function after the function
// has returned, so CostLimit alone cannot stop one call from allocating
// gigabytes or running for seconds; these limits are checked before the
// operation runs, from the sizes of its arguments, and an operation that would
// exceed one returns a *LimitError instead.
const (
	// MaxStringSize is the longest string or bytes value, in bytes, that an
	// operation may build: + (on strings and bytes), replace, join, format
	// and strings.quote compute the size of their result first and refuse to
	// build one longer than this. Values read from the event may be longer;
	// only what the expression builds is limited.
	MaxStringSize = 1 << 20

	// MaxListSize is the most elements a list built by split or by + (list
	// concatenation, including the results of the map and filter macros) may
	// hold.
	MaxListSize = 100_000

	// MaxCompareSize bounds the deep comparisons of ==, != and in, in values
	// (each list, map, map key and scalar counts as one). Equality compares
	// lists and maps element by element, and a list built by the expression
	// can hold the same large value many times, so a short expression could
	// otherwise ask for billions of comparisons. Before comparing, the left
	// operand's values are counted, and the right's if the left holds more
	// than MaxCompareSize; the comparison is refused when both do (for in,
	// with a list or map on the left: when the list too holds more). Each
	// value counted costs 4 units, so one comparison at the limit takes the
	// whole CostLimit.
	MaxCompareSize = CostLimit / compareCostPerValue

	// MaxRegexLen is the longest regular expression, in bytes, that matches
	// accepts.
	MaxRegexLen = MaxExprLen

	// MaxRegexProgramSize is the most instructions the compiled form of a
	// regular expression may have. A constant pattern over the limit is a
	// compile error; a pattern read from the event is refused when matched.
	MaxRegexProgramSize = 10_000

	// MaxRegexWork bounds one matches call, in steps: the program size of the
	// regular expression (instructions) times the length of the input (bytes,
	// plus one). Go's RE2 engine runs in time proportional to that product,
	// a few nanoseconds a step, so one call is refused up front rather than
	// run for longer than about 20ms; a call on a 500 KB input thus accepts
	// programs of up to 8 instructions (a short pattern such as `^[a-z]+@`).
	MaxRegexWork = 1 << 22
)

// Cost of the guarded operations, so that CostLimit bounds their total over
// one evaluation and not only each call.
const (
	// byteCostFactor is the cost of building one byte of a string, bytes or
	// formatted result; cel-go charges 0.1 a character for the same work.
	// With CostLimit it bounds what one evaluation builds to about 10 MB.
	byteCostFactor = 0.1

	// regexStepsPerCost is how many steps (see MaxRegexWork) of matching one
	// cost unit buys: every matches call of one evaluation together may take
	// at most CostLimit*regexStepsPerCost steps, the work of one call at
	// MaxRegexWork.
	regexStepsPerCost = 4

	// compareCostPerValue is the cost of each value counted before a deep
	// comparison (see MaxCompareSize): counting, comparing and charging visit
	// each value about three times, allocating as they go.
	compareCostPerValue = 4

	// zoneLookupCost is the cost of a timestamp accessor given a time zone
	// name, such as getHours("Europe/Paris"): cel-go loads the zone from the
	// zone database at each call, which takes microseconds and kilobytes.
	zoneLookupCost = 256

	// listElementCost and mapEntryCost are the cost of each element of a
	// list literal and each entry of a map literal built at evaluation, on
	// top of cel-go's fixed cost for creating the list or map: without them
	// a literal of a hundred elements costs as much as one of one, and a
	// comprehension can build tens of megabytes of them within CostLimit.
	listElementCost = 1
	mapEntryCost    = 8

	// regexCompileCost is the cost of each instruction of a regular
	// expression compiled at evaluation (a pattern read from the event).
	regexCompileCost = 16

	// matchesFunction names the guarded matches call in the plan. It is not
	// "matches", so that cel-go's own optimisation of constant patterns,
	// which looks for calls of that name, does not replace the guarded call
	// with an unguarded one.
	matchesFunction = "herald.matches"

	// listFunction and mapFunction name list and map literals in the plan,
	// once charged by size (see chargedLiteral).
	listFunction = "herald.list"
	mapFunction  = "herald.map"
)

// ErrLimit is matched (errors.Is) by the error of an evaluation that stopped
// at one of the limits: an operation refused by size (a *LimitError) or the
// cost limit.
var ErrLimit = errors.New("triggers: resource limit exceeded")

// LimitError is an operation refused before it ran because its result or its
// work would exceed one of the limits documented on [Env]. Its message names
// the operation, the size and the limit, never the values involved, so it can
// be shown to whoever sent the event.
type LimitError struct {
	Op       string // the function or operator, such as "replace" or "+"
	Quantity string // what was measured, such as "result" or "work"
	Size     int64  // the size the quantity would have had; 0 when only known to be over Limit
	Limit    int64  // the limit, in Unit
	Unit     string // the unit, singular: "byte", "element", "value", "instruction" or "step"
}

// Error returns, for example, "replace: result would be 10000000000 bytes,
// over the 1048576-byte limit".
func (e *LimitError) Error() string {
	if e.Size > 0 {
		return fmt.Sprintf("%s: %s would be %d %ss, over the %d-%s limit", e.Op, e.Quantity, e.Size, e.Unit, e.Limit, e.Unit)
	}
	return fmt.Sprintf("%s: %s would be over the %d-%s limit", e.Op, e.Quantity, e.Limit, e.Unit)
}

// Is reports whether target is ErrLimit.
func (e *LimitError) Is(target error) bool { return target == ErrLimit }

func limitErr(op, quantity string, size, limit int64, unit string) ref.Val {
	return types.WrapErr(&LimitError{Op: op, Quantity: quantity, Size: size, Limit: limit, Unit: unit})
}

// costLimitError is cel-go's cost limit error, also matched by ErrLimit. The
// message is cel-go's.
type costLimitError struct{ error }

func (e costLimitError) Unwrap() error { return e.error }

func (e costLimitError) Is(target error) bool { return target == ErrLimit }

// markLimit makes the cost limit error of an evaluation match ErrLimit.
func markLimit(err error) error {
	var ce interpreter.EvalCancelledError
	if errors.As(err, &ce) && ce.Cause == interpreter.CostLimitExceeded {
		return costLimitError{err}
	}
	return err
}

// ---- String extension functions: checked before the library's own code ----

// stringGuards maps overload ids of the cel-go string extensions that build
// strings or lists to the check run before them. A check returns nil to let
// the call run, or the error to return instead. Checks see the arguments
// before the library's type guards, so they let a call with unexpected types
// through for the library to reject.
var stringGuards = map[string]func(args []ref.Val) ref.Val{
	"string_replace_string_string":     checkReplace,
	"string_replace_string_string_int": checkReplace,
	"string_split_string":              checkSplit,
	"string_split_string_int":          checkSplit,
	"list_join":                        checkJoin,
	"list_join_string":                 checkJoin,
	"string_format":                    checkFormat,
	"strings_quote":                    checkQuote,
}

// extStringsBindings holds the declarations and implementations of the
// cel-go string extensions, read once from an environment holding only them,
// so that guardedStrings can redeclare the overloads it checks around the
// library's own implementations.
var extStringsBindings = sync.OnceValues(func() (*cel.Env, error) { return cel.NewEnv(ext.Strings()) })

// guardedStrings redeclares the overloads of stringGuards (same ids and
// signatures, which cel-go allows, replacing the implementation) with the
// check in front of the library's implementation.
func guardedStrings() ([]cel.EnvOption, error) {
	base, err := extStringsBindings()
	if err != nil {
		return nil, err
	}
	var opts []cel.EnvOption
	found := 0
	for name, fn := range base.Functions() {
		bindings, err := fn.Bindings()
		if err != nil {
			return nil, err
		}
		for _, o := range fn.OverloadDecls() {
			check, ok := stringGuards[o.ID()]
			if !ok {
				continue
			}
			var impl *functions.Overload
			for _, b := range bindings {
				if b.Operator == o.ID() {
					impl = b
				}
			}
			if impl == nil {
				return nil, fmt.Errorf("triggers: no implementation of %s", o.ID())
			}
			found++
			run := func(args ...ref.Val) ref.Val {
				if err := check(args); err != nil {
					return err
				}
				return invoke(impl, args)
			}
			var binding cel.OverloadOpt
			switch len(o.ArgTypes()) {
			case 1:
				binding = cel.UnaryBinding(func(a ref.Val) ref.Val { return run(a) })
			case 2:
				binding = cel.BinaryBinding(func(a, b ref.Val) ref.Val { return run(a, b) })
			default:
				binding = cel.FunctionBinding(run)
			}
			decl := cel.Overload
			if o.IsMemberFunction() {
				decl = cel.MemberOverload
			}
			opts = append(opts, cel.Function(name, decl(o.ID(), o.ArgTypes(), o.ResultType(), binding)))
		}
	}
	if found != len(stringGuards) {
		// A cel-go upgrade renamed an overload: fail loudly rather than run
		// it unchecked.
		return nil, fmt.Errorf("triggers: found %d of the %d string overloads to guard", found, len(stringGuards))
	}
	return opts, nil
}

// invoke calls an overload implementation with the form it provides.
func invoke(o *functions.Overload, args []ref.Val) ref.Val {
	switch {
	case len(args) == 1 && o.Unary != nil:
		return o.Unary(args[0])
	case len(args) == 2 && o.Binary != nil:
		return o.Binary(args[0], args[1])
	case o.Function != nil:
		return o.Function(args...)
	}
	return types.NoSuchOverloadErr()
}

// stringArgs returns args as Go strings, or false if one is not a string.
func stringArgs(args []ref.Val) ([]string, bool) {
	out := make([]string, len(args))
	for i, a := range args {
		s, ok := a.(types.String)
		if !ok {
			return nil, false
		}
		out[i] = string(s)
	}
	return out, true
}

// intArg returns args[i] as an int64, or def if there is no such argument,
// and false if it is not an int.
func intArg(args []ref.Val, i int, def int64) (int64, bool) {
	if i >= len(args) {
		return def, true
	}
	n, ok := args[i].(types.Int)
	return int64(n), ok
}

// checkReplace computes the length of s.replace(old, new[, n]) as
// strings.Replace does, without building it.
func checkReplace(args []ref.Val) ref.Val {
	if len(args) < 3 {
		return nil
	}
	s, ok := stringArgs(args[:3])
	n, okN := intArg(args, 3, -1)
	if !ok || !okN || n == 0 {
		return nil
	}
	count := int64(strings.Count(s[0], s[1])) // for "", one more than the runes, as Replace
	if n > 0 && n < count {
		count = n
	}
	size := int64(len(s[0])) + count*(int64(len(s[2]))-int64(len(s[1])))
	if size > MaxStringSize {
		return limitErr("replace", "result", size, MaxStringSize, "byte")
	}
	return nil
}

// checkSplit computes the number of parts of s.split(sep[, n]) as
// strings.SplitN does, without building them.
func checkSplit(args []ref.Val) ref.Val {
	if len(args) < 2 {
		return nil
	}
	s, ok := stringArgs(args[:2])
	n, okN := intArg(args, 2, -1)
	if !ok || !okN || n == 0 {
		return nil
	}
	var parts int64
	if s[1] == "" {
		parts = int64(utf8.RuneCountInString(s[0]))
	} else {
		parts = int64(strings.Count(s[0], s[1])) + 1
	}
	if n > 0 && n < parts {
		parts = n
	}
	if parts > MaxListSize {
		return limitErr("split", "result", parts, MaxListSize, "element")
	}
	return nil
}

// checkJoin computes the length of list.join([sep]) without building it.
func checkJoin(args []ref.Val) ref.Val {
	list, ok := args[0].(traits.Lister)
	if !ok {
		return nil
	}
	sep := ""
	if len(args) > 1 {
		s, ok := args[1].(types.String)
		if !ok {
			return nil
		}
		sep = string(s)
	}
	n, ok := list.Size().(types.Int)
	if !ok {
		return nil
	}
	var size int64
	for i := types.Int(0); i < n; i++ {
		s, ok := list.Get(i).(types.String)
		if !ok {
			return nil // the library reports the element
		}
		if i > 0 {
			size += int64(len(sep))
		}
		size += int64(len(s))
	}
	if size > MaxStringSize {
		return limitErr("join", "result", size, MaxStringSize, "byte")
	}
	return nil
}

// checkQuote computes the length of strings.quote(s) as cel-go builds it:
// invalid UTF-8 becomes U+FFFD, nine control characters, \ and " are escaped.
func checkQuote(args []ref.Val) ref.Val {
	s, ok := args[0].(types.String)
	if !ok {
		return nil
	}
	if size := quotedSize(string(s)); size > MaxStringSize {
		return limitErr("strings.quote", "result", size, MaxStringSize, "byte")
	}
	return nil
}

func quotedSize(s string) int64 {
	size := int64(2)
	for _, r := range s {
		switch r {
		case '\a', '\b', '\f', '\n', '\r', '\t', '\v', '\\', '"':
			size += 2
		default:
			size += int64(utf8.RuneLen(r)) // an invalid byte reads as U+FFFD, 3 bytes
		}
	}
	return size
}

// checkFormat computes the length of fmt.format(args) before the library
// formats it. The %s form of a list or map is as long as all its elements
// together, and the list may hold the same large value many times, so the
// walk stops as soon as the length is over MaxStringSize.
func checkFormat(args []ref.Val) ref.Val {
	if size, ok := formatSize(args); ok && size > MaxStringSize {
		return limitErr("format", "result", 0, MaxStringSize, "byte")
	}
	return nil
}

// formatSize returns the length of the result of string.format, exactly for
// %s and %d and as an upper bound for the other clauses, or a value over
// MaxStringSize as soon as it is known to be. ok is false when the arguments
// are not a string and a list (the library reports the error).
func formatSize(args []ref.Val) (size int64, ok bool) {
	if len(args) != 2 {
		return 0, false
	}
	f, okF := args[0].(types.String)
	list, okL := args[1].(traits.Lister)
	if !okF || !okL {
		return 0, false
	}
	format := string(f)
	n, _ := list.Size().(types.Int)
	arg := types.Int(0)
	for i := 0; i < len(format) && size <= MaxStringSize; i++ {
		if format[i] != '%' {
			size++
			continue
		}
		i++
		if i < len(format) && format[i] == '%' {
			size++
			continue
		}
		precision := int64(6)
		if i < len(format) && format[i] == '.' {
			j := i + 1
			for j < len(format) && format[j] >= '0' && format[j] <= '9' {
				j++
			}
			if p, err := strconv.ParseInt(format[i+1:j], 10, 64); err == nil {
				precision = p
			}
			i = j
		}
		if i >= len(format) || arg >= n {
			break // the library reports the malformed clause
		}
		size += clauseSize(format[i], precision, list.Get(arg), MaxStringSize-size)
		arg++
	}
	return size, true
}

// clauseSize bounds the length of one formatting clause.
func clauseSize(verb byte, precision int64, v ref.Val, budget int64) int64 {
	switch verb {
	case 's':
		return stringFormSize(v, budget)
	case 'd':
		return stringFormSize(v, budget) // ints and doubles print as with %s
	case 'f':
		return 320 + precision // 309 integer digits at most, a point and the decimals
	case 'e':
		return 10 + precision
	case 'b':
		return 65
	case 'o':
		return 23
	case 'x', 'X':
		switch v := v.(type) {
		case types.String:
			return 2 * int64(len(v))
		case types.Bytes:
			return 2 * int64(len(v))
		}
		return 17
	}
	return 0
}

// stringFormSize returns the length of the %s form of v as cel-go's
// formatter writes it, or a value over budget once the length exceeds it.
func stringFormSize(v ref.Val, budget int64) int64 {
	var buf [64]byte
	switch v := v.(type) {
	case types.Bool:
		return int64(len(strconv.AppendBool(buf[:0], bool(v))))
	case types.Int:
		return int64(len(strconv.AppendInt(buf[:0], int64(v), 10)))
	case types.Uint:
		return int64(len(strconv.AppendUint(buf[:0], uint64(v), 10)))
	case types.Double:
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return 9
		}
		return int64(len(strconv.AppendFloat(buf[:0], float64(v), 'f', -1, 64)))
	case types.String:
		return int64(len(v))
	case types.Bytes:
		return int64(len(v))
	case types.Duration:
		return int64(len(strconv.AppendFloat(buf[:0], v.Seconds(), 'f', -1, 64))) + 1
	case types.Timestamp:
		return int64(len(v.UTC().AppendFormat(buf[:0], time.RFC3339Nano)))
	case types.Null:
		return 4
	case traits.Lister:
		size := int64(2)
		n, _ := v.Size().(types.Int)
		for i := types.Int(0); i < n && size <= budget; i++ {
			if i > 0 {
				size += 2
			}
			size += stringFormSize(v.Get(i), budget-size)
		}
		return size
	case traits.Mapper:
		size := int64(2)
		first := true
		for it := v.Iterator(); it.HasNext() == types.True && size <= budget; {
			k := it.Next()
			if !first {
				size += 2
			}
			first = false
			size += 2 + stringFormSize(k, budget-size)
			if size <= budget {
				size += stringFormSize(v.Get(k), budget-size)
			}
		}
		return size
	}
	if t, ok := v.(ref.Type); ok {
		return int64(len(t.TypeName()))
	}
	return 0
}

// ---- Regular expressions ----

// compileRegex compiles pattern within MaxRegexLen and MaxRegexProgramSize
// and returns the regular expression and its program size. Its errors do
// not quote the pattern, which may come from the event.
func compileRegex(pattern string) (*regexp.Regexp, int64, error) {
	size, err := regexSize(pattern)
	if err != nil {
		return nil, 0, err
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, 0, regexError(err)
	}
	return re, size, nil
}

// regexSize returns the number of instructions of the compiled form of
// pattern, or an error if the pattern is invalid or over MaxRegexLen or
// MaxRegexProgramSize.
func regexSize(pattern string) (int64, error) {
	if len(pattern) > MaxRegexLen {
		return 0, &LimitError{Op: "matches", Quantity: "pattern", Size: int64(len(pattern)), Limit: MaxRegexLen, Unit: "byte"}
	}
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return 0, regexError(err)
	}
	// Repetition makes a short pattern a large program (x{1000}{1000} is a
	// million instructions): estimate the size from the parse tree before
	// compiling anything.
	if est := progSize(re); est > MaxRegexProgramSize {
		return 0, &LimitError{Op: "matches", Quantity: "regular expression program", Size: 0, Limit: MaxRegexProgramSize, Unit: "instruction"}
	}
	prog, err := syntax.Compile(re.Simplify())
	if err != nil {
		return 0, regexError(err)
	}
	size := int64(len(prog.Inst))
	if size > MaxRegexProgramSize {
		return 0, &LimitError{Op: "matches", Quantity: "regular expression program", Size: size, Limit: MaxRegexProgramSize, Unit: "instruction"}
	}
	return size, nil
}

// regexError is a regexp error without the pattern it quotes.
func regexError(err error) error {
	var se *syntax.Error
	if errors.As(err, &se) {
		return fmt.Errorf("matches: invalid regular expression: %s", se.Code)
	}
	return errors.New("matches: invalid regular expression")
}

// progSize estimates, as an upper bound, the number of instructions of the
// compiled form of re, the way regexp/syntax's parser does. It saturates
// just above MaxRegexProgramSize.
func progSize(re *syntax.Regexp) int64 {
	const over = MaxRegexProgramSize + 1
	var size int64
	switch re.Op {
	case syntax.OpLiteral:
		size = int64(len(re.Rune))
	case syntax.OpCapture, syntax.OpStar:
		size = 2 + progSize(re.Sub[0])
	case syntax.OpPlus, syntax.OpQuest:
		size = 1 + progSize(re.Sub[0])
	case syntax.OpConcat:
		for _, sub := range re.Sub {
			size += progSize(sub)
		}
	case syntax.OpAlternate:
		for _, sub := range re.Sub {
			size += progSize(sub)
		}
		size += int64(len(re.Sub))
	case syntax.OpRepeat:
		sub := progSize(re.Sub[0])
		n := int64(re.Max)
		if n < 0 {
			n = int64(re.Min) + 1
		}
		size = n*sub + n + 2
	}
	return min(max(size, 1), over)
}

// matchWork is the number of steps (see MaxRegexWork) of matching input with
// a program of size instructions.
func matchWork(size int64, input string) int64 {
	return size * (int64(len(input)) + 1)
}

// match runs re on s unless that would exceed MaxRegexWork.
func match(re *regexp.Regexp, size int64, s string) ref.Val {
	if work := matchWork(size, s); work > MaxRegexWork {
		return limitErr("matches", "work (program size × input length)", work, MaxRegexWork, "step")
	}
	return types.Bool(re.MatchString(s))
}

// ---- Comparisons ----

// countValues counts the values of v: v itself and, recursively, the
// elements of a list and the keys and values of a map. It stops at limit+1.
func countValues(v ref.Val, limit int64) int64 {
	var n int64
	var walk func(v ref.Val)
	walk = func(v ref.Val) {
		n++
		switch v := v.(type) {
		case traits.Lister:
			size, _ := v.Size().(types.Int)
			for i := types.Int(0); i < size && n <= limit; i++ {
				walk(v.Get(i))
			}
		case traits.Mapper:
			for it := v.Iterator(); it.HasNext() == types.True && n <= limit; {
				k := it.Next()
				n++
				walk(v.Get(k))
			}
		}
	}
	walk(v)
	return min(n, limit+1)
}

func isAggregate(v ref.Val) bool {
	switch v.(type) {
	case traits.Lister, traits.Mapper:
		return true
	}
	return false
}

// compareWalk counts the values checked before comparing l and r: the
// left operand's, up to limit+1, and when those are over limit the right
// operand's too, for types.Equal never goes deeper than the smaller operand.
// ok reports whether one of them is within limit. Two scalars are not
// walked.
func compareWalk(l, r ref.Val, limit int64) (counted int64, ok bool) {
	if !isAggregate(l) && !isAggregate(r) {
		return 1, true
	}
	nl := countValues(l, limit)
	if nl <= limit {
		return nl, true
	}
	nr := countValues(r, limit)
	return nl + nr, nr <= limit
}

// inWalk is compareWalk for `l in list`, with a list or map l: each element
// is compared with l, so the work is at most the size of l for each element,
// and at most all the values of the list.
func inWalk(l ref.Val, list traits.Lister, limit int64) (counted int64, ok bool) {
	n, _ := list.Size().(types.Int)
	nl := countValues(l, limit)
	if nl*int64(n) <= limit {
		return nl, true
	}
	nList := countValues(list, limit)
	return nl + nList, nList <= limit
}

// ---- The per-program guard ----

// guard puts the size checks in front of the operators and functions cel-go
// does not let an environment redefine (+, ==, != and in, planned specially
// or bound once for all types, and matches), and charges the guarded
// operations by the work they do. There is one per program.
type guard struct {
	// regexSizes holds the program size of each constant pattern of the
	// program. It is written while the program is planned and only read
	// afterwards, so concurrent evaluations need no lock.
	regexSizes map[string]int64
}

// programOptions are the cel-go options that apply the guard, the cost
// limit and the interrupt checks to a program.
func programOptions() []cel.ProgramOption {
	g := &guard{regexSizes: map[string]int64{}}
	return []cel.ProgramOption{
		cel.EvalOptions(cel.OptOptimize),
		cel.CustomDecoratorV2(g.decorate),
		cel.CostTracking(g),
		cel.CostTrackerOptions(
			interpreter.OverloadCostTracker("string_format", formatCost),
			interpreter.OverloadCostTracker("strings_quote", builtCost),
			interpreter.OverloadCostTracker(overloads.StringToBytes, builtCost),
			interpreter.OverloadCostTracker(overloads.BytesToString, builtCost),
			// size() counts characters and double() reads every digit:
			// cel-go charges them 1 whatever the length.
			interpreter.OverloadCostTracker(overloads.SizeString, scanCost),
			interpreter.OverloadCostTracker(overloads.SizeStringInst, scanCost),
			interpreter.OverloadCostTracker(overloads.StringToDouble, scanCost),
		),
		cel.CostTrackerOptions(zoneCostTrackers()...),
		cel.CostLimit(CostLimit),
		cel.InterruptCheckFrequency(interruptCheckFrequency),
	}
}

// decorate replaces the plan of +, ==, !=, in and matches with a checked
// call. It runs before cel-go's own decorators (optimisation, cost
// tracking), which then see the checked call as an ordinary call.
func (g *guard) decorate(i interpreter.InterpretableV2) (interpreter.InterpretableV2, error) {
	if lit, ok := i.(interpreter.InterpretableConstructor); ok {
		return chargeLiteral(lit), nil
	}
	call, ok := i.(interpreter.InterpretableCall)
	if !ok || len(call.Args()) != 2 {
		return i, nil
	}
	c := &checkedCall{id: call.ID(), function: call.Function(), overload: call.OverloadID(), args: call.Args()}
	switch call.Function() {
	case operators.Add:
		c.op = c.add
	case operators.Equals:
		c.op = func(l, r ref.Val) ref.Val { return compare("==", l, r, false) }
	case operators.NotEquals:
		c.op = func(l, r ref.Val) ref.Val { return compare("!=", l, r, true) }
	case operators.In:
		c.op = in
	case overloads.Matches:
		c.function = matchesFunction
		c.op = matchDynamic
		if pat, ok := c.args[1].(interpreter.InterpretableConst); ok {
			if p, ok := pat.Value().(types.String); ok {
				re, size, err := compileRegex(string(p))
				if err != nil {
					return nil, err
				}
				g.regexSizes[string(p)] = size
				c.op = func(l, _ ref.Val) ref.Val {
					s, ok := l.(types.String)
					if !ok {
						return types.MaybeNoSuchOverloadErr(l)
					}
					return match(re, size, string(s))
				}
			}
		}
	default:
		return i, nil
	}
	return c, nil
}

// add is + with MaxStringSize and MaxListSize checked first, otherwise as
// cel-go's plan of it: the operand's Adder trait.
func (c *checkedCall) add(l, r ref.Val) ref.Val {
	switch l := l.(type) {
	case types.String:
		if r, ok := r.(types.String); ok {
			if size := int64(len(l)) + int64(len(r)); size > MaxStringSize {
				return limitErr("+", "result", size, MaxStringSize, "byte")
			}
		}
	case types.Bytes:
		if r, ok := r.(types.Bytes); ok {
			if size := int64(len(l)) + int64(len(r)); size > MaxStringSize {
				return limitErr("+", "result", size, MaxStringSize, "byte")
			}
		}
	case traits.Lister:
		if r, ok := r.(traits.Lister); ok {
			nl, _ := l.Size().(types.Int)
			nr, _ := r.Size().(types.Int)
			if size := int64(nl) + int64(nr); size > MaxListSize {
				return limitErr("+", "result", size, MaxListSize, "element")
			}
		}
	}
	if l.Type().HasTrait(traits.AdderType) {
		return l.(traits.Adder).Add(r)
	}
	if l.Type().HasTrait(traits.ReceiverType) {
		return l.(traits.Receiver).Receive(c.function, c.overload, []ref.Val{r})
	}
	return types.NewErrWithNodeID(c.id, "no such overload: %s", c.function)
}

// compare is == (or != when negate) with MaxCompareSize checked first.
func compare(op string, l, r ref.Val, negate bool) ref.Val {
	if _, ok := compareWalk(l, r, MaxCompareSize); !ok {
		return limitErr(op, "each operand", 0, MaxCompareSize, "value")
	}
	eq := types.Equal(l, r)
	if negate {
		return types.Bool(eq != types.True)
	}
	return eq
}

// in is the in operator with MaxCompareSize checked first, otherwise as
// cel-go's: the right operand's Container trait. Looking a scalar up in a
// list compares it once with each element, which the default cost already
// charges; only lists and maps looked up in a list are checked.
func in(l, r ref.Val) ref.Val {
	if list, ok := r.(traits.Lister); ok && isAggregate(l) {
		if _, ok := inWalk(l, list, MaxCompareSize); !ok {
			return limitErr("in", "comparison", 0, MaxCompareSize, "value")
		}
	}
	if r.Type().HasTrait(traits.ContainerType) {
		return r.(traits.Container).Contains(l)
	}
	return types.ValOrErr(r, "no such overload")
}

// matchDynamic is matches with a pattern known only at evaluation.
func matchDynamic(l, r ref.Val) ref.Val {
	s, ok := l.(types.String)
	if !ok {
		return types.MaybeNoSuchOverloadErr(l)
	}
	p, ok := r.(types.String)
	if !ok {
		return types.MaybeNoSuchOverloadErr(r)
	}
	re, size, err := compileRegex(string(p))
	if err != nil {
		return types.WrapErr(err)
	}
	return match(re, size, string(s))
}

// CallCost implements interpreter.ActualCostEstimator: it charges the
// operations checkedCall guards by the work they did, and leaves the others
// to cel-go's defaults (nil).
//
// An operation refused by a limit is charged the work of its check only, so
// that its error, not the cost limit's, ends the evaluation; a refused
// comparison still counts one unit a value it counted, so that refusals
// caught by || in a loop soon end it.
func (g *guard) CallCost(function, _ string, args []ref.Val, result ref.Val) *uint64 {
	var cost int64
	refused := isLimitErr(result)
	switch function {
	case operators.Add:
		if len(args) != 2 {
			return nil
		}
		var size int
		switch l := args[0].(type) {
		case types.String:
			r, _ := args[1].(types.String)
			size = len(l) + len(r)
		case types.Bytes:
			r, _ := args[1].(types.Bytes)
			size = len(l) + len(r)
		default:
			return nil
		}
		if refused {
			return nil // the check is two lengths
		}
		cost = builtBytesCost(int64(size))
	case operators.Equals, operators.NotEquals:
		if len(args) != 2 || !isAggregate(args[0]) && !isAggregate(args[1]) {
			return nil
		}
		counted, _ := compareWalk(args[0], args[1], MaxCompareSize)
		cost = compareCostPerValue * counted
		if refused {
			cost = counted
		}
	case operators.In:
		if len(args) != 2 {
			return nil
		}
		list, ok := args[1].(traits.Lister)
		if !ok || !isAggregate(args[0]) {
			return nil
		}
		n, _ := list.Size().(types.Int)
		counted, _ := inWalk(args[0], list, MaxCompareSize)
		cost = int64(n) + compareCostPerValue*counted
		if refused {
			cost = counted
		}
	case matchesFunction:
		if len(args) != 2 {
			return nil
		}
		s, okS := args[0].(types.String)
		p, okP := args[1].(types.String)
		if !okS || !okP {
			return nil
		}
		size, constant := g.regexSizes[string(p)]
		if !constant {
			// Compiled at evaluation: measure the program again and
			// charge the compilation, which is as long as the pattern and
			// allocates for every instruction.
			size, _ = regexSize(string(p))
			cost = int64(len(p)) + regexCompileCost*size
		}
		cost++
		if !refused {
			cost += matchWork(size, string(s)) / regexStepsPerCost
		}
	case listFunction:
		cost = common.ListCreateBaseCost + listElementCost*int64(len(args))
	case mapFunction:
		cost = common.MapCreateBaseCost + mapEntryCost*int64(len(args)/2)
	default:
		return nil
	}
	c := uint64(max(cost, 1))
	return &c
}

// isLimitErr reports whether v is the error of an operation refused by a
// limit.
func isLimitErr(v ref.Val) bool {
	err, ok := v.(*types.Err)
	var le *LimitError
	return ok && errors.As(err, &le)
}

// builtBytesCost is the cost of building size bytes.
func builtBytesCost(size int64) int64 {
	return 1 + int64(math.Ceil(float64(size)*byteCostFactor))
}

// builtCost charges a conversion or quote by the bytes of its argument and
// result, whichever is longer. cel-go charges them by characters, up to four
// times less a byte.
func builtCost(args []ref.Val, result ref.Val) *uint64 {
	size := max(byteLen(result), 0)
	if len(args) > 0 {
		size = max(size, byteLen(args[0]))
	}
	c := uint64(builtBytesCost(size))
	return &c
}

// scanCost charges a function that reads its string argument by its length
// in bytes.
func scanCost(args []ref.Val, _ ref.Val) *uint64 {
	var size int64
	if len(args) > 0 {
		size = max(byteLen(args[0]), 0)
	}
	c := uint64(builtBytesCost(size))
	return &c
}

// formatCost charges format by the length of its result (cel-go charges
// only the format string), or for a refused or failed call by the length
// checkFormat computed, which the call has walked.
func formatCost(args []ref.Val, result ref.Val) *uint64 {
	size := byteLen(result)
	if size < 0 {
		size, _ = formatSize(args)
		size = min(size, MaxStringSize+1)
	}
	if len(args) > 0 {
		size += max(byteLen(args[0]), 0)
	}
	c := uint64(builtBytesCost(size))
	return &c
}

// zoneCostTrackers charge the timestamp accessors given a time zone by
// zoneLookupCost when the zone is a name, which cel-go loads from the zone
// database at each call; a fixed offset such as "+01:00" is parsed cheaply.
func zoneCostTrackers() []interpreter.CostTrackerOption {
	charge := func(args []ref.Val, _ ref.Val) *uint64 {
		c := uint64(1)
		if len(args) == 2 {
			if tz, ok := args[1].(types.String); ok && !isOffset(string(tz)) {
				c = zoneLookupCost
			}
		}
		return &c
	}
	var opts []interpreter.CostTrackerOption
	for _, id := range []string{
		overloads.TimestampToYearWithTz, overloads.TimestampToMonthWithTz,
		overloads.TimestampToDayOfYearWithTz, overloads.TimestampToDayOfMonthZeroBasedWithTz,
		overloads.TimestampToDayOfMonthOneBasedWithTz, overloads.TimestampToDayOfWeekWithTz,
		overloads.TimestampToHoursWithTz, overloads.TimestampToMinutesWithTz,
		overloads.TimestampToSecondsWithTz, overloads.TimestampToMillisecondsWithTz,
	} {
		opts = append(opts, interpreter.OverloadCostTracker(id, charge))
	}
	return opts
}

// isOffset reports whether tz is a UTC offset such as "+01:00" or "-0530",
// which cel-go parses without the zone database.
func isOffset(tz string) bool {
	return tz != "" && (tz[0] == '+' || tz[0] == '-') && len(tz) <= len("+00:00")
}

// byteLen is the length in bytes of a string or bytes value, or -1.
func byteLen(v ref.Val) int64 {
	switch v := v.(type) {
	case types.String:
		return int64(len(v))
	case types.Bytes:
		return int64(len(v))
	}
	return -1
}

// checkedCall is a binary call planned by guard.decorate: its arguments are
// evaluated as cel-go evaluates a strict call (the first error wins, unknowns
// merge), then op runs. It implements interpreter.InterpretableCall, so cost
// tracking and the other decorators see an ordinary call.
type checkedCall struct {
	id       int64
	function string
	overload string
	args     []interpreter.InterpretableV2
	op       func(l, r ref.Val) ref.Val
}

// ID implements interpreter.Interpretable.
func (c *checkedCall) ID() int64 { return c.id }

// Eval implements interpreter.Interpretable.
func (c *checkedCall) Eval(vars interpreter.Activation) ref.Val {
	return c.Exec(interpreter.AsFrame(vars))
}

// Exec implements interpreter.InterpretableV2.
func (c *checkedCall) Exec(frame *interpreter.ExecutionFrame) ref.Val {
	l := c.args[0].Exec(frame)
	if types.IsError(l) {
		return l
	}
	r := c.args[1].Exec(frame)
	if types.IsError(r) {
		return r
	}
	var unk *types.Unknown
	unk, _ = types.MaybeMergeUnknowns(l, unk)
	unk, _ = types.MaybeMergeUnknowns(r, unk)
	if unk != nil {
		return unk
	}
	return types.LabelErrNode(c.id, c.op(l, r))
}

// Function implements interpreter.InterpretableCall.
func (c *checkedCall) Function() string { return c.function }

// OverloadID implements interpreter.InterpretableCall.
func (c *checkedCall) OverloadID() string { return c.overload }

// Args implements interpreter.InterpretableCall.
func (c *checkedCall) Args() []interpreter.InterpretableV2 { return c.args }

// chargedLiteral is a list or map literal whose elements are computed at
// evaluation, presented to cost tracking as a call of listFunction or
// mapFunction with the elements as arguments, so that guard.CallCost charges
// it by its size. It evaluates as the literal does.
type chargedLiteral struct {
	lit      interpreter.InterpretableConstructor
	function string
}

// chargeLiteral wraps the list and map literals that are built at each
// evaluation. Literals of constants are left alone: cel-go's optimiser builds
// them once, when planning.
func chargeLiteral(lit interpreter.InterpretableConstructor) interpreter.InterpretableV2 {
	var function string
	switch lit.Type() {
	case types.ListType:
		function = listFunction
	case types.MapType:
		function = mapFunction
	default:
		return lit
	}
	constant := true
	for _, v := range lit.InitVals() {
		if _, ok := v.(interpreter.InterpretableConst); !ok {
			constant = false
		}
	}
	if constant {
		return lit
	}
	return &chargedLiteral{lit: lit, function: function}
}

// ID implements interpreter.Interpretable.
func (c *chargedLiteral) ID() int64 { return c.lit.ID() }

// Eval implements interpreter.Interpretable.
func (c *chargedLiteral) Eval(vars interpreter.Activation) ref.Val { return c.lit.Eval(vars) }

// Exec implements interpreter.InterpretableV2.
func (c *chargedLiteral) Exec(frame *interpreter.ExecutionFrame) ref.Val { return c.lit.Exec(frame) }

// Function implements interpreter.InterpretableCall.
func (c *chargedLiteral) Function() string { return c.function }

// OverloadID implements interpreter.InterpretableCall.
func (c *chargedLiteral) OverloadID() string { return "" }

// Args implements interpreter.InterpretableCall: the elements, or keys and
// values in turn, in the order they are evaluated.
func (c *chargedLiteral) Args() []interpreter.InterpretableV2 { return c.lit.InitVals() }
