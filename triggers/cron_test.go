package triggers

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseCron(t *testing.T) {
	t.Parallel()
	valid := []struct {
		in, expr, zone string
	}{
		{"0 3 * * *", "0 3 * * *", ""},
		{"  */15   9-17 * * MON-FRI ", "*/15 9-17 * * MON-FRI", ""},
		{"0 0 1 JAN,JUL *", "0 0 1 JAN,JUL *", ""},
		{"5,10 0 ? * 0", "5,10 0 ? * 0", ""},
		{"0 0 29 2 *", "0 0 29 2 *", ""}, // fires only in leap years
		{"@daily", "@daily", ""},
		{"@hourly", "@hourly", ""},
		{"@weekly", "@weekly", ""},
		{"@monthly", "@monthly", ""},
		{"@yearly", "@yearly", ""},
		{"@annually", "@annually", ""},
		{"@midnight", "@midnight", ""},
		{"TZ=Europe/Paris 0 3 * * *", "0 3 * * *", "Europe/Paris"},
		{"CRON_TZ=America/New_York 30 8 * * 1", "30 8 * * 1", "America/New_York"},
		{"TZ=UTC @daily", "@daily", "UTC"},
		{"TZ=UTC\n@daily", "@daily", "UTC"},
	}
	for _, tt := range valid {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			c, err := ParseCron(tt.in)
			require.NoError(t, err)
			require.Equal(t, tt.expr, c.Expr)
			require.Equal(t, tt.zone, c.TimeZone)
			// String round-trips through ParseCron.
			again, err := ParseCron(c.String())
			require.NoError(t, err)
			require.Equal(t, c.Expr, again.Expr)
			require.Equal(t, c.TimeZone, again.TimeZone)
		})
	}

	invalid := []struct {
		in, wantErr string
	}{
		{"", "empty schedule"},
		{"   ", "empty schedule"},
		{"@every 5m", "@every is not supported"},
		{"TZ=UTC @every 1h", "@every is not supported"},
		{"@reboot", "unknown descriptor"},
		{"@daily 0", "unknown descriptor"},
		{"0 3 * *", "want 5 fields"},
		{"0 0 3 * * *", "want 5 fields"}, // seconds field is not standard
		{"60 * * * *", "above maximum"},
		{"* 24 * * *", "above maximum"},
		{"* * 0 * *", "below minimum"},
		{"* * * 13 *", "above maximum"},
		{"* * * * 8", "above maximum"},
		{"*/0 * * * *", "step"},
		{"a * * * *", "failed to parse"},
		{"5-1 * * * *", "beyond end"},
		{"0 0 31 2 *", "never fires"},
		{"TZ=Mars/Olympus 0 3 * * *", `unknown time zone "Mars/Olympus"`},
		{"TZ=Local 0 3 * * *", "depends on the host"},
		{"TZ= 0 3 * * *", "empty time zone"},
		{"TZ=../../etc/passwd 0 3 * * *", "unknown time zone"},
		{"TZ=Europe/Paris", "needs a zone and then a schedule"},
		{"TZ=UTC TZ=Europe/Paris 0 3 * * *", "more than one time zone"},
		{"TZ=UTC CRON_TZ=UTC @daily", "more than one time zone"},
	}
	for _, tt := range invalid {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			c, err := ParseCron(tt.in)
			require.Error(t, err)
			require.Contains(t, err.Error(), tt.wantErr)
			require.Contains(t, err.Error(), "triggers: cron ", "names the expression")
			require.Equal(t, CronSpec{}, c)
		})
	}
}

func TestCronNext(t *testing.T) {
	t.Parallel()
	paris, err := time.LoadLocation("Europe/Paris")
	require.NoError(t, err)

	c, err := ParseCron("TZ=Europe/Paris 0 3 * * *")
	require.NoError(t, err)
	// 2024-06-01 12:00 UTC is 14:00 in Paris (CEST, UTC+2): next 03:00 Paris
	// is the following day, 01:00 UTC.
	after := time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC)
	next := c.Next(after)
	require.Equal(t, time.Date(2024, 6, 2, 1, 0, 0, 0, time.UTC), next.UTC())
	require.Equal(t, time.UTC, next.Location(), "returned in after's location")
	require.Equal(t, 3, next.In(paris).Hour())
	// In winter (CET, UTC+1) the same schedule is 02:00 UTC.
	require.Equal(t, time.Date(2024, 1, 16, 2, 0, 0, 0, time.UTC),
		c.Next(time.Date(2024, 1, 15, 12, 0, 0, 0, time.UTC)).UTC())

	// Without a prefix the zone is UTC, whatever the host's zone.
	u, err := ParseCron("0 3 * * *")
	require.NoError(t, err)
	require.Equal(t, time.Date(2024, 6, 2, 3, 0, 0, 0, time.UTC), u.Next(after).UTC())

	// Strictly after: an activation instant is not returned again.
	require.Equal(t, time.Date(2024, 6, 3, 3, 0, 0, 0, time.UTC), u.Next(time.Date(2024, 6, 2, 3, 0, 0, 0, time.UTC)).UTC())

	d, err := ParseCron("TZ=America/New_York @daily")
	require.NoError(t, err)
	require.Equal(t, time.Date(2024, 6, 2, 4, 0, 0, 0, time.UTC), d.Next(after).UTC())

	require.True(t, CronSpec{}.Next(after).IsZero(), "zero CronSpec never fires")
}
