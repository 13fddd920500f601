package triggers

import (
	"strings"

	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/operators"
)

// EqualityKey finds, among the top-level conjuncts of a wait condition
// (joined by &&), one of the form `async.<path> == event.<path>` (either
// way round). Binding the triggering event's value at eventPath turns it into
// an index key on asyncPath, so the router probes an index instead of
// evaluating the condition on every event. ok is false when there is none,
// or when expr does not parse (Compile reports that).
func (e *Env) EqualityKey(expr string) (asyncPath, eventPath string, ok bool) {
	parsed, iss := e.env.Parse(expr)
	if iss != nil && iss.Err() != nil {
		return "", "", false
	}
	return equality(parsed.NativeRep().Expr())
}

func equality(x celast.Expr) (string, string, bool) {
	if x.Kind() != celast.CallKind {
		return "", "", false
	}
	call := x.AsCall()
	args := call.Args()
	switch call.FunctionName() {
	case operators.LogicalAnd:
		for _, a := range args {
			if ap, ep, ok := equality(a); ok {
				return ap, ep, true
			}
		}
	case operators.Equals:
		if len(args) != 2 {
			return "", "", false
		}
		lr, lp := selectPath(args[0])
		rr, rp := selectPath(args[1])
		if lr == "event" && rr == "async" {
			lr, rr, lp, rp = rr, lr, rp, lp
		}
		if lr == "async" && rr == "event" && ValidatePath(lp) == nil && ValidatePath(rp) == nil {
			return lp, rp, true
		}
	}
	return "", "", false
}

// selectPath turns `root.a.b` into ("root", "a.b").
func selectPath(x celast.Expr) (root, path string) {
	var fields []string
	for x.Kind() == celast.SelectKind {
		s := x.AsSelect()
		if s.IsTestOnly() {
			return "", ""
		}
		fields = append([]string{s.FieldName()}, fields...)
		x = s.Operand()
	}
	if x.Kind() != celast.IdentKind || len(fields) == 0 {
		return "", ""
	}
	return x.AsIdent(), strings.Join(fields, ".")
}
