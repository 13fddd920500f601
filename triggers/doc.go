// Package triggers decides which functions an event starts.
//
// It owns the CEL environment that trigger, wait and cancel expressions are
// written against, the compilation and caching of those expressions, the
// index of event names and wildcard patterns, the [Matcher] that picks the
// functions for an event, and the validation of cron schedules.
//
// The package does no I/O beyond what [time.LoadLocation] needs to resolve a
// time zone name: it never reaches the network, never touches the database and
// never reads the clock, so every result depends only on its inputs. Compile
// expressions once, when an app is synced, and keep the [Program]; evaluation
// is then cheap and safe for concurrent use.
//
// # Limits
//
// Expressions come from apps and webhook sources, and events from anyone who
// can send them, so every evaluation is bounded in time and memory, whatever
// both hold:
//
//   - [CostLimit] (1,000,000 units) bounds the work of one evaluation; the
//     caller's context deadline is checked between comprehension iterations.
//   - [MaxStringSize] (1 MiB) bounds every string and bytes value an
//     expression builds, and [MaxListSize] (100,000 elements) every list
//     built by split or +. They are checked before allocating: cel-go
//     charges cost only after a function returns, so without them one
//     replace() in a 253-byte expression could ask for 10 GB.
//   - [MaxCompareSize] (250,000 values) bounds deep comparisons by ==, !=
//     and in.
//   - [MaxRegexLen] (4096 bytes), [MaxRegexProgramSize] (10,000
//     instructions) and [MaxRegexWork] (4,194,304 steps, program size ×
//     input bytes) bound matches(): RE2 runs in linear time, but a 3 KB
//     pattern over a 500 KB string is still seconds of work.
//   - [MaxExprLen] (4096 bytes) bounds the expression itself.
//
// An evaluation stopped by a limit returns an error matching [ErrLimit]
// whose message names the operation, the size and the limit, and never
// quotes event data.
package triggers
