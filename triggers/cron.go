package triggers

import (
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/robfig/cron/v3"
)

// maxCronLen bounds a cron expression, zone prefix included, in bytes.
const maxCronLen = 256

// cronParser reads the standard five fields (minute hour day-of-month month
// day-of-week) and descriptors. @every is rejected before it gets here.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// cronDescriptors are the descriptors accepted: the ones that are shorthand
// for a cron line, which a Temporal schedule's cron string understands.
var cronDescriptors = map[string]bool{
	"@yearly": true, "@annually": true, "@monthly": true, "@weekly": true,
	"@daily": true, "@midnight": true, "@hourly": true,
}

// cronReference is a fixed instant used to check that a schedule ever
// fires; a fixed one keeps ParseCron independent of the clock.
var cronReference = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// CronSpec is a validated cron schedule. Build it with [ParseCron]; the zero
// value never fires.
type CronSpec struct {
	// Expr is the schedule without its zone prefix, with fields separated
	// by single spaces: "0 3 * * *" or "@daily".
	Expr string
	// TimeZone is the IANA zone name from a TZ= or CRON_TZ= prefix, or ""
	// when there was none, which means UTC.
	TimeZone string

	sched *cron.SpecSchedule
}

// ParseCron validates a cron expression: five standard fields (minute hour
// day-of-month month day-of-week, with ranges, lists, steps and month or
// day names) or one of @yearly, @annually, @monthly, @weekly, @daily,
// @midnight and @hourly, optionally preceded by "TZ=Zone " or
// "CRON_TZ=Zone " where Zone is an IANA name such as Europe/Paris. @every
// is rejected: cron triggers become Temporal schedules, which take cron
// lines. A schedule that can never fire (such as "0 0 31 2 *") is rejected
// too. Errors name the expression and the problem.
func ParseCron(expr string) (CronSpec, error) {
	fail := func(format string, args ...any) (CronSpec, error) {
		return CronSpec{}, fmt.Errorf("triggers: cron %s: %s", shorten(expr), fmt.Sprintf(format, args...))
	}
	if len(expr) > maxCronLen {
		return fail("%d bytes is longer than the limit of %d", len(expr), maxCronLen)
	}
	rest := strings.TrimSpace(expr)
	var zone string
	loc := time.UTC
	if p, ok := zonePrefix(rest); ok {
		sp := strings.IndexFunc(rest, unicode.IsSpace)
		if sp < 0 {
			return fail("%s needs a zone and then a schedule, as in \"TZ=Europe/Paris 0 3 * * *\"", p)
		}
		zone, rest = rest[len(p):sp], strings.TrimSpace(rest[sp:])
		if zone == "" {
			return fail("empty time zone after %s", p)
		}
		if zone == "Local" {
			return fail("time zone Local depends on the host; name an IANA zone such as UTC or Europe/Paris")
		}
		l, err := time.LoadLocation(zone)
		if err != nil {
			return fail("unknown time zone %q: %v", zone, err)
		}
		loc = l
	}
	if _, ok := zonePrefix(rest); ok {
		return fail("more than one time zone prefix")
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		return fail("empty schedule")
	}
	rest = strings.Join(fields, " ")
	if strings.HasPrefix(rest, "@") {
		if fields[0] == "@every" {
			return fail("@every is not supported; use a cron line such as \"*/5 * * * *\"")
		}
		if len(fields) != 1 || !cronDescriptors[rest] {
			return fail("unknown descriptor %q; use @yearly, @monthly, @weekly, @daily, @hourly or five cron fields", rest)
		}
	} else if len(fields) != 5 {
		return fail("want 5 fields (minute hour day-of-month month day-of-week), got %d", len(fields))
	}
	s, err := parseSpec(rest)
	if err != nil {
		return fail("%v", err)
	}
	s.Location = loc
	if s.Next(cronReference).IsZero() {
		return fail("the schedule never fires")
	}
	return CronSpec{Expr: rest, TimeZone: zone, sched: s}, nil
}

// parseSpec runs the robfig parser, turning a panic on odd input into an
// error so a bad expression from a user can never take down a sync.
func parseSpec(s string) (spec *cron.SpecSchedule, err error) {
	defer func() {
		if r := recover(); r != nil {
			spec, err = nil, fmt.Errorf("invalid schedule: %v", r)
		}
	}()
	sched, err := cronParser.Parse(s)
	if err != nil {
		return nil, err
	}
	spec, ok := sched.(*cron.SpecSchedule)
	if !ok {
		return nil, fmt.Errorf("unsupported schedule type %T", sched)
	}
	return spec, nil
}

func zonePrefix(s string) (string, bool) {
	for _, p := range []string{"TZ=", "CRON_TZ="} {
		if strings.HasPrefix(s, p) {
			return p, true
		}
	}
	return "", false
}

// Next returns the first activation strictly after after, computed in the
// schedule's zone and returned in after's location. It returns the zero
// time for the zero CronSpec.
func (c CronSpec) Next(after time.Time) time.Time {
	if c.sched == nil {
		return time.Time{}
	}
	return c.sched.Next(after)
}

// String returns the schedule with its zone prefix, if any, in the form
// ParseCron accepts: "TZ=Europe/Paris 0 3 * * *".
func (c CronSpec) String() string {
	if c.TimeZone == "" {
		return c.Expr
	}
	return "TZ=" + c.TimeZone + " " + c.Expr
}
