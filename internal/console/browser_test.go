package console_test

import (
	"net/url"
	"os"
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
		// Script errors and CSP violations from here on are collected.
		chromedp.Evaluate[chromedp.Void](`window.heraldProblems = [];
			window.addEventListener("error", e => window.heraldProblems.push("error: " + e.message));
			document.addEventListener("securitypolicyviolation", e => window.heraldProblems.push("csp: " + e.violatedDirective))`),
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
	problems, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`window.heraldProblems`))
	require.NoError(t, err)
	require.Empty(t, problems, "the stream and the send form raised script errors or CSP violations")

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

	if os.Getenv("HERALD_SCREENSHOTS") != "" {
		// A stream worth a picture: a few of the demo app's events.
		dev.send(t, "demo/payment.requested", map[string]any{"orderId": "o-1001", "amount": 4200})
		dev.send(t, "demo/user.signup", map[string]any{"userId": "u-ada", "email": "ada@example.com", "plan": "pro", "timeout_s": 600})
		dev.send(t, "demo/doc.updated", map[string]any{"docId": "d-7"})
		dev.send(t, "demo/sms.requested", map[string]any{"to": "+15550100", "text": "hello"})
		time.Sleep(3 * time.Second)
	}
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(dev.url+"/"), chromedp.WaitVisible(chromedp.CSS(row)),
		chromedp.Evaluate[chromedp.Void](`document.querySelector("#functions-panel").open = true`)))
	screenshot(t, ctx, "console-events.png")
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(dev.url+"/functions"), chromedp.WaitVisible(chromedp.CSS(`section[data-function="demo/welcome-email"]`))))
	text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`section[data-function="demo/nightly-report"]`)))
	require.NoError(t, err)
	require.Contains(t, text, "on the schedule TZ=UTC 0 3 * * *")
	require.Contains(t, text, "next: ")
}

// Event data is user input: markup in a name or a payload shows as text on
// the stream and the event page, and no script of it runs.
func TestBrowserEventDataIsText(t *testing.T) {
	const name = `demo/xss"><b>bold</b><img_src=x_onerror=alert(1)>`
	script := `<script>window.heraldInjected = "script"</script>`
	img := `"><img src=x onerror="window.heraldInjected='img'">`
	id := dev.send(t, name, map[string]any{"note": script, "attr": img, "html": "<iframe src=/functions></iframe>"})

	ctx := tab(t, 30*time.Second)
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(dev.url+"/?q="+url.QueryEscape(name)),
		chromedp.WaitVisible(chromedp.CSS(`#stream tr[data-id=`+js(id)+`]`)),
	))
	shown, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#stream tr[data-id=`+js(id)+`] a.event-name`)))
	require.NoError(t, err)
	require.Equal(t, name, strings.TrimSpace(shown))
	injected, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#stream b, #stream img, #stream script, #stream iframe").length`))
	require.NoError(t, err)
	require.Zero(t, injected, "markup from the event name became elements")

	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(dev.url+"/events/"+url.PathEscape(id)),
		chromedp.WaitVisible(chromedp.CSS("#payload")),
		// Give an injected script or image time to run.
		chromedp.Sleep(300*time.Millisecond),
	))
	payload, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#payload")))
	require.NoError(t, err)
	require.Contains(t, payload, `window.heraldInjected`)
	require.Contains(t, payload, `<script>`)
	require.Contains(t, payload, `<img src=x onerror=`)
	elements, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("main script, main img, main iframe, main b").length`))
	require.NoError(t, err)
	require.Zero(t, elements, "markup from the payload became elements")
	ran, err := chromedp.Run(ctx, chromedp.Evaluate[string](`typeof window.heraldInjected`))
	require.NoError(t, err)
	require.Equal(t, "undefined", ran, "a script from the event data ran")
	title, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("h1 .event-name")))
	require.NoError(t, err)
	require.Equal(t, name, strings.TrimSpace(title))
}

// An event the API refuses shows the API's rule next to the field at fault,
// and nothing is stored.
func TestBrowserRejectedEventShowsErrorAtField(t *testing.T) {
	ctx := tab(t, 30*time.Second)
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(dev.url+"/"),
		chromedp.Click(chromedp.CSS("#send-panel > summary")),
		chromedp.SetValue(chromedp.CSS("#send-name"), "herald/function.finished"),
		chromedp.SetValue(chromedp.CSS("#send-data"), `{"forged": true}`),
		chromedp.Click(chromedp.CSS("#send-submit")),
		chromedp.WaitVisible(chromedp.CSS("#error-name")),
	))
	msg, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#error-name")))
	require.NoError(t, err)
	require.Contains(t, msg, `must not start with "herald/"`)
	// Next to the field: in the same block as the name input, which keeps
	// what was typed.
	beside, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector("#error-name").parentElement.contains(document.querySelector("#send-name"))`))
	require.NoError(t, err)
	require.True(t, beside)
	typed, err := chromedp.Run(ctx, chromedp.Value(chromedp.CSS("#send-name")))
	require.NoError(t, err)
	require.Equal(t, "herald/function.finished", typed)

	// Data that is not an object: the error sits at the data field.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.SetValue(chromedp.CSS("#send-name"), "demo/console.rejected"),
		chromedp.SetValue(chromedp.CSS("#send-data"), `[1, 2]`),
		chromedp.Click(chromedp.CSS("#send-submit")),
		chromedp.WaitVisible(chromedp.CSS("#error-data")),
	))
	msg, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#error-data")))
	require.NoError(t, err)
	require.Contains(t, msg, "must be a JSON object")
	gone, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`!document.querySelector("#error-name")`))
	require.NoError(t, err)
	require.True(t, gone, "the old error stayed")

	// Not JSON at all.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.SetValue(chromedp.CSS("#send-data"), `{"unterminated": `),
		chromedp.Click(chromedp.CSS("#send-submit")),
		chromedp.Poll[chromedp.Void](`(document.querySelector("#error-data") || {}).textContent === "data is not valid JSON"`, chromedp.WithPollingTimeout(5*time.Second)),
	))
	status, raw := dev.api(t, "GET", "/v1/events?name=demo/console.rejected", nil)
	require.Equal(t, 200, status)
	require.Contains(t, string(raw), `"data":[]`)
}

// Pausing a function from the console: its next event gets a Skipped run
// whose reason says paused; resuming runs the events after it again.
func TestBrowserPauseAndResume(t *testing.T) {
	if missingRoute(t, dev, "POST", "/v1/functions/demo/no-such-function/pause") {
		t.Skip("this Herald's API has no POST /v1/functions/{app}/{function}/pause yet: the pause scenario needs it")
	}
	const fn = "demo/welcome-email"
	section := `section[data-function="` + fn + `"]`
	ctx := tab(t, 60*time.Second)
	t.Cleanup(func() { dev.api(t, "POST", "/v1/functions/"+fn+"/resume", nil) })
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(dev.url+"/functions"),
		submit(section+" button.pause"),
		chromedp.WaitVisible(chromedp.CSS(section+" .status-paused")),
	))

	id := dev.send(t, "demo/user.signup", map[string]any{"userId": "u-paused", "email": "paused@example.com"})
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(dev.url+"/events/"+url.PathEscape(id)),
		chromedp.Poll[chromedp.Void](`Array.from(document.querySelectorAll("#event-runs .run-status")).some(e => e.textContent.trim() === "Skipped: paused")`,
			chromedp.WithPollingTimeout(20*time.Second)),
	))

	// The runs page lists it among the function's skipped runs, with why.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(dev.url+"/runs?"+url.Values{"function_id": {fn}, "status": {"Skipped"}}.Encode()),
		chromedp.WaitVisible(chromedp.CSS("#runs")),
	))
	skipped, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#runs tr[data-status="Skipped"] .run-status`)))
	require.NoError(t, err)
	require.Equal(t, "Skipped: paused", strings.TrimSpace(skipped))

	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(dev.url+"/functions"),
		submit(section+" button.resume"),
		chromedp.WaitVisible(chromedp.CSS(section+" button.pause")),
	))
	id = dev.send(t, "demo/user.signup", map[string]any{"userId": "u-resumed", "email": "resumed@example.com"})
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(dev.url+"/events/"+url.PathEscape(id)),
		chromedp.Poll[chromedp.Void](`Array.from(document.querySelectorAll("#event-runs .run-status")).some(e => e.textContent.trim() === "Completed")`,
			chromedp.WithPollingTimeout(40*time.Second)),
	))
}

// A filtered stream keeps its filter while it refreshes: a new matching
// event appears without a reload, another name does not.
func TestBrowserFilteredStreamUpdates(t *testing.T) {
	ctx := tab(t, 30*time.Second)
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(dev.url+"/?q="+url.QueryEscape("demo/filtered.*")),
		chromedp.WaitVisible(chromedp.CSS("#stream")),
		chromedp.Evaluate[chromedp.Void](`window.heraldTestMarker = "same page"`),
	))
	other := dev.send(t, "demo/unfiltered.thing", map[string]any{})
	id := dev.send(t, "demo/filtered.thing", map[string]any{})
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](`!!document.querySelector(`+js(`#stream tr[data-id=`+js(id)+`]`)+`)`, chromedp.WithPollingTimeout(10*time.Second)))
	require.NoError(t, err, "the new matching event did not appear")
	shown, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`!!document.querySelector(`+js(`#stream tr[data-id=`+js(other)+`]`)+`)`))
	require.NoError(t, err)
	require.False(t, shown, "the refreshed stream lost its filter")
	marker, err := chromedp.Run(ctx, chromedp.Evaluate[string](`window.heraldTestMarker || ""`))
	require.NoError(t, err)
	require.Equal(t, "same page", marker)
}
