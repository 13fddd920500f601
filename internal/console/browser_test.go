package console_test

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
)

// Sending an event with the form: it appears in the stream without a
// reload, its page shows the run reaching Completed with its output, and
// the run links to its workflow in the Temporal UI.
func TestBrowserSendEventStreamAndRun(t *testing.T) {
	ctx := tab(t, 60*time.Second)
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(dev.url+"/"),
		chromedp.WaitVisible(chromedp.CSS("#stream")),
		// A page load would drop this global: it proves no reload happened.
		chromedp.Evaluate[chromedp.Void](`window.heraldTestMarker = "same page"`),
		chromedp.Click(chromedp.CSS("#send-panel > summary")),
		chromedp.SetValue(chromedp.CSS("#send-name"), "demo/user.signup"),
		chromedp.SetValue(chromedp.CSS("#send-data"), `{"userId": "u-console", "email": "console@example.com"}`),
		chromedp.Click(chromedp.CSS("#send-submit")),
		chromedp.WaitVisible(chromedp.CSS("#send-ok a")),
	))
	id, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#send-ok a")))
	require.NoError(t, err)
	id = strings.TrimSpace(id)
	require.NotEmpty(t, id)

	row := `#stream tr[data-id=` + js(id) + `]`
	_, err = chromedp.Run(ctx, chromedp.Poll[bool](`!!document.querySelector(`+js(row)+`)`, chromedp.WithPollingTimeout(15*time.Second)))
	require.NoError(t, err, "the sent event did not appear in the stream")
	marker, err := chromedp.Run(ctx, chromedp.Evaluate[string](`window.heraldTestMarker || ""`))
	require.NoError(t, err)
	require.Equal(t, "same page", marker, "the page reloaded")
	name, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(row+` a.event-name`)))
	require.NoError(t, err)
	require.Equal(t, "demo/user.signup", strings.TrimSpace(name))

	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(row+` a.event-name`)),
		chromedp.WaitVisible(chromedp.CSS("#payload")),
	))
	payload, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#payload")))
	require.NoError(t, err)
	require.Contains(t, payload, `"email": "console@example.com"`)

	// The runs refresh in place until they finish.
	_, err = chromedp.Run(ctx, chromedp.Poll[bool](
		`Array.from(document.querySelectorAll("#event-runs .run-status")).some(e => e.textContent.trim() === "Completed")`,
		chromedp.WithPollingTimeout(40*time.Second)))
	require.NoError(t, err, "the run did not reach Completed on the event page; herald log:\n%s", dev.logs.String())
	out, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#event-runs tr[data-status="Completed"] .run-output`)))
	require.NoError(t, err)
	require.Contains(t, out, `"sent": true`)
	require.Contains(t, out, `"email": "console@example.com"`)

	runs := dev.runs(t, id)
	require.Len(t, runs, 1)
	href, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(`#event-runs tr[data-status="Completed"] a.temporal-link`), "href"))
	require.NoError(t, err)
	require.Equal(t, temporalUI+"/namespaces/default/workflows/"+url.PathEscape(runs[0].WorkflowID), href.Value)
	require.Contains(t, href.Value, url.PathEscape(runs[0].WorkflowID))
	screenshot(t, ctx, "console-event.png")

	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(dev.url+"/"), chromedp.WaitVisible(chromedp.CSS(row))))
	screenshot(t, ctx, "console-events.png")
}
