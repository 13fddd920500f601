package console_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
)

// reloadUntil loads u until the JavaScript predicate holds on the page.
func reloadUntil(t *testing.T, ctx context.Context, u, predicate string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(u)))
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](predicate))
		require.NoError(t, err)
		if ok {
			return
		}
		if time.Now().After(deadline) {
			text, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
			t.Fatalf("%s: %s did not hold within %s; the page shows:\n%s", u, predicate, timeout, text)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// submit clicks a form's button and waits until the page it leads to has
// loaded: a navigation started before then would abort the POST.
func submit(sel string) chromedp.Action[chromedp.Void] {
	loaded := chromedp.Evaluate[bool](`!window.heraldBeforeSubmit && document.readyState === "complete"`)
	return chromedp.Steps(
		chromedp.Evaluate[chromedp.Void](`window.heraldBeforeSubmit = true`),
		chromedp.Click(chromedp.CSS(sel)),
		chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			for {
				// While the page changes, evaluating fails: try again.
				if ok, err := loaded(ctx, t); err == nil && ok {
					return nil
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(50 * time.Millisecond):
				}
			}
		}),
	)
}

// Runs, waits and webhook sources as the API has them, and the actions on
// them: cancel, rerun, invoke, replay.
func TestBrowserRunsWaitsWebhooksAndActions(t *testing.T) {
	if missingRoute(t, dev, http.MethodGet, "/v1/runs") || missingRoute(t, dev, http.MethodGet, "/v1/waits") {
		t.Skip("this Herald's API has no GET /v1/runs or GET /v1/waits yet: these pages need them")
	}
	ctx := tab(t, 80*time.Second)

	// Webhook sources: name, scheme and URL; never the secret.
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	status, raw := dev.api(t, http.MethodPost, "/v1/webhooks", map[string]any{
		"name": "console-clerk", "verify": map[string]any{"scheme": "svix", "secret": secret}, "allow_events": []string{"clerk/*"},
	})
	require.Equal(t, http.StatusCreated, status, string(raw))
	var hook struct {
		ID string `json:"id"`
	}
	require.NoError(t, json.Unmarshal(raw, &hook))
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(dev.url+"/webhooks")))
	html, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
	require.NoError(t, err)
	require.Contains(t, html, "console-clerk")
	require.Contains(t, html, "svix")
	require.Contains(t, html, dev.url+"/w/"+hook.ID)
	require.NotContains(t, html, secret)
	require.NotContains(t, html, "MfKQ9r8")

	// A pro signup: onboarding waits for the activation.
	userID := "u-wait-" + strings.ToLower(t.Name()[len(t.Name())-6:])
	signup := dev.send(t, "demo/user.signup", map[string]any{"userId": userID, "email": "wait@example.com", "plan": "pro"})
	reloadUntil(t, ctx, dev.url+"/waits?function_id=demo/onboarding",
		// The cancel-on wait is there from the run's start; the step's wait
		// only once the run reaches await-activation: wait for both.
		`document.querySelector("main table") !== null && document.querySelector("main table").textContent.includes(`+js(`data.userId = "`+userID+`"`)+`) && document.querySelector("main table").textContent.includes("await-activation")`, 30*time.Second)
	text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main table")))
	require.NoError(t, err)
	require.Contains(t, text, "demo/onboarding")
	require.Contains(t, text, "demo/user.activated")
	require.Contains(t, text, "await-activation")
	// A wait links to its run.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`main table tbody tr td a`)),
		chromedp.WaitVisible(chromedp.CSS("#run-body")),
	))
	heading, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("h1")))
	require.NoError(t, err)
	require.Equal(t, "Run of demo/onboarding", strings.TrimSpace(heading))

	// Runs: filtered by function and status; cancel the waiting run.
	var onboarding runOut
	for _, r := range dev.runs(t, signup) {
		if r.FunctionID == "onboarding" {
			onboarding = r
		}
	}
	require.NotEmpty(t, onboarding.RunID)
	reloadUntil(t, ctx, dev.url+"/runs?"+url.Values{"function_id": {"demo/onboarding"}, "status": {"Running"}}.Encode(),
		`!!document.querySelector('tr[data-run=`+js(onboarding.RunID)+`]')`, 20*time.Second)
	statuses, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("#runs tr.run-row")).map(r => r.dataset.status)`))
	require.NoError(t, err)
	for _, s := range statuses {
		require.Equal(t, "Running", s, "the status filter let another status through")
	}
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`tr[data-run=`+js(onboarding.RunID)+`] td a`)),
		chromedp.WaitVisible(chromedp.CSS("#cancel-run")),
		submit("#cancel-run"),
	))
	// The page refreshes the run until it ends.
	_, err = chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelector(".run-status").textContent.trim() === "Cancelled"`, chromedp.WithPollingTimeout(30*time.Second)))
	require.NoError(t, err, "the run page did not show the run Cancelled")

	// Rerun a completed run: a new run that names the old one.
	var welcome runOut
	for _, r := range dev.runs(t, signup) {
		if r.FunctionID == "welcome-email" {
			welcome = r
		}
	}
	require.NotEmpty(t, welcome.RunID)
	reloadUntil(t, ctx, dev.url+"/runs/"+url.PathEscape(welcome.RunID), `document.querySelector(".run-status").textContent.trim() === "Completed"`, 30*time.Second)
	require.NoError(t, chromedp.Do(ctx,
		submit("#rerun"),
		chromedp.WaitVisible(chromedp.CSS("#replay-of")),
	))
	loc, err := chromedp.Run(ctx, chromedp.Location())
	require.NoError(t, err)
	require.NotContains(t, loc, url.PathEscape(welcome.RunID), "the rerun is a new run")
	of, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#replay-of")))
	require.NoError(t, err)
	require.Equal(t, welcome.RunID, strings.TrimSpace(of))
	reloadUntil(t, ctx, loc, `document.querySelector(".run-status").textContent.trim() === "Completed"`, 30*time.Second)

	// Invoke with data: the invocation's event page shows its run.
	section := `section[data-function="demo/welcome-email"]`
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(dev.url+"/functions"),
		chromedp.Click(chromedp.CSS(section+" details.invoke > summary")),
		chromedp.SetValue(chromedp.CSS(section+" details.invoke textarea"), `{"userId": "u-invoked", "email": "invoked@example.com"}`),
		submit(section+" button.invoke"),
		chromedp.WaitVisible(chromedp.CSS("#payload")),
		chromedp.Poll[chromedp.Void](`Array.from(document.querySelectorAll("#event-runs .run-status")).some(e => e.textContent.trim() === "Completed")`,
			chromedp.WithPollingTimeout(30*time.Second)),
	))
	name, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("h1 .event-name")))
	require.NoError(t, err)
	require.Equal(t, "herald/function.invoked", strings.TrimSpace(name))
	out, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#event-runs .run-output")))
	require.NoError(t, err)
	require.Contains(t, out, "invoked@example.com")

	// A replay of the last hour's cancelled runs of onboarding.
	section = `section[data-function="demo/onboarding"]`
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(dev.url+"/functions"),
		chromedp.Click(chromedp.CSS(section+" details.replay > summary")),
		chromedp.Click(chromedp.CSS(section+` details.replay input[value="Cancelled"]`)),
		submit(section+" button.replay"),
		chromedp.WaitVisible(chromedp.CSS("dl.facts")),
	))
	loc, err = chromedp.Run(ctx, chromedp.Location())
	require.NoError(t, err)
	require.Contains(t, loc, "/replays/")
	reloadUntil(t, ctx, loc, `document.querySelector("main").textContent.includes("Completed")`, 30*time.Second)
	text, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
	require.NoError(t, err)
	require.Contains(t, text, "Replay of demo/onboarding")
	require.Regexp(t, `Matched\s*[1-9]`, text)
}
