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
// is then cheap, bounded in cost and safe for concurrent use.
package triggers
