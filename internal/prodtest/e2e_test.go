package prodtest

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herald-run/herald/internal/subproc"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
)

// The e2e subset runs the example app (examples/demo, its own process)
// through the balancer, so consecutive requests land on either replica: the
// replica that accepts an event, the one that dispatches it and the one the
// worker reports to are whichever the load balancer picks.

func uniq(prefix string) string { return fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano()) }

// waitRuns waits until the event has n runs, all finished.
func waitRuns(t *testing.T, api *API, eventID string, n int) []Run {
	t.Helper()
	var runs []Run
	var err error
	ok := subproc.WaitFor(90*time.Second, 200*time.Millisecond, func() bool {
		runs, err = api.Runs(eventID)
		if err != nil || len(runs) != n {
			return false
		}
		for _, r := range runs {
			switch r.Status {
			case "Completed", "Failed", "Cancelled", "Skipped":
			default:
				return false
			}
		}
		return true
	})
	require.Truef(t, ok, "event %s: want %d finished runs, have %+v (err %v)", eventID, n, runs, err)
	return runs
}

// waitStarted waits until the event has a run of fn that is not Scheduled.
func waitStarted(t *testing.T, api *API, eventID, fn string) {
	t.Helper()
	ok := subproc.WaitFor(60*time.Second, 100*time.Millisecond, func() bool {
		runs, _ := api.Runs(eventID)
		for _, r := range runs {
			if r.FunctionID == fn && r.Status != "Scheduled" {
				return true
			}
		}
		return false
	})
	require.Truef(t, ok, "event %s: no run of %s started", eventID, fn)
}

func byFunction(runs []Run) map[string]Run {
	m := map[string]Run{}
	for _, r := range runs {
		m[r.FunctionID] = r
	}
	return m
}

func TestEventToRun(t *testing.T) {
	api := NewAPI(topo.LB.URL)
	user := uniq("u")
	ids, err := api.Send(map[string]any{"name": "demo/user.signup", "data": map[string]any{"userId": user, "email": user + "@example.com", "plan": "free"}})
	require.NoError(t, err)
	r := waitRuns(t, api, ids[0], 1)[0]
	require.Equal(t, "welcome-email", r.FunctionID)
	require.Equal(t, "Completed", r.Status, r.Error)
	var out struct {
		Sent  bool   `json:"sent"`
		Email string `json:"email"`
	}
	require.NoError(t, json.Unmarshal(r.Output, &out))
	require.Equal(t, user+"@example.com", out.Email)
	require.True(t, out.Sent)

	// The run's history is on the real server, in its PostgreSQL.
	tc := temporalClient(t)
	desc, err := tc.DescribeWorkflowExecution(context.Background(), r.WorkflowID, "")
	require.NoError(t, err)
	require.Equal(t, enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED, desc.GetWorkflowExecutionInfo().GetStatus())
	require.Contains(t, desc.GetWorkflowExecutionInfo().GetSearchAttributes().GetIndexedFields(), "HeraldFunction",
		"Herald's search attributes, registered by herald migrate, are set on the run")
}

func TestWaitForEvent(t *testing.T) {
	api := NewAPI(topo.LB.URL)
	user := uniq("u-pro")
	ids, err := api.Send(map[string]any{"name": "demo/user.signup", "data": map[string]any{"userId": user, "email": user + "@example.com", "plan": "pro"}})
	require.NoError(t, err)
	waitStarted(t, api, ids[0], "onboarding")
	time.Sleep(500 * time.Millisecond)
	_, err = api.Send(
		map[string]any{"name": "demo/user.activated", "data": map[string]any{"userId": "someone-else"}},
		map[string]any{"name": "demo/user.activated", "data": map[string]any{"userId": user}},
	)
	require.NoError(t, err)
	runs := byFunction(waitRuns(t, api, ids[0], 2))
	require.Equal(t, "Completed", runs["welcome-email"].Status, runs["welcome-email"].Error)
	ob := runs["onboarding"]
	require.Equal(t, "Completed", ob.Status, ob.Error)
	require.JSONEq(t, `{"activated":true}`, string(ob.Output))
}

func TestCancelOn(t *testing.T) {
	api := NewAPI(topo.LB.URL)
	user := uniq("u-gone")
	ids, err := api.Send(map[string]any{"name": "demo/user.signup", "data": map[string]any{"userId": user, "email": user + "@example.com", "plan": "pro"}})
	require.NoError(t, err)
	waitStarted(t, api, ids[0], "onboarding")
	_, err = api.Send(map[string]any{"name": "demo/user.deleted", "data": map[string]any{"userId": user}})
	require.NoError(t, err)
	runs := byFunction(waitRuns(t, api, ids[0], 2))
	require.Equal(t, "Cancelled", runs["onboarding"].Status, runs["onboarding"].Error)
	require.Equal(t, "Completed", runs["welcome-email"].Status)
}

// TestCron checks that the app sync created the nightly report's Temporal
// Schedule on the real server, triggers it, and waits for its run.
func TestCron(t *testing.T) {
	tc := temporalClient(t)
	ctx := context.Background()
	h := tc.ScheduleClient().GetHandle(ctx, "herald-cron/demo/nightly-report/0")
	desc, err := h.Describe(ctx)
	require.NoError(t, err, "the sync of the demo app creates the cron's schedule")
	require.NotEmpty(t, desc.Info.NextActionTimes)
	next := desc.Info.NextActionTimes[0].UTC()
	require.Equal(t, []int{3, 0}, []int{next.Hour(), next.Minute()}, "the demo app's cron is TZ=UTC 0 3 * * *")
	before := completedCount(t, tc, "nightly-report")
	require.NoError(t, h.Trigger(ctx, client.ScheduleTriggerOptions{}))
	ok := subproc.WaitFor(90*time.Second, 500*time.Millisecond, func() bool { return completedCount(t, tc, "nightly-report") > before })
	require.True(t, ok, "the triggered nightly-report run did not complete")
}

func completedCount(t *testing.T, tc client.Client, workflowType string) int64 {
	t.Helper()
	resp, err := tc.CountWorkflow(context.Background(), &workflowservice.CountWorkflowExecutionsRequest{
		Query: fmt.Sprintf("WorkflowType = '%s' AND ExecutionStatus = 'Completed'", workflowType),
	})
	require.NoError(t, err)
	return resp.GetCount()
}

func TestDebounce(t *testing.T) {
	api := NewAPI(topo.LB.URL)
	doc := uniq("doc")
	var ids []string
	for seq := 1; seq <= 4; seq++ {
		got, err := api.Send(map[string]any{"name": "demo/doc.updated", "data": map[string]any{"docId": doc, "seq": seq}})
		require.NoError(t, err)
		ids = append(ids, got...)
		time.Sleep(150 * time.Millisecond)
	}
	r := waitRuns(t, api, ids[3], 1)[0]
	require.Equal(t, "Completed", r.Status, r.Error)
	require.JSONEq(t, fmt.Sprintf(`{"docId":%q,"seq":4}`, doc), string(r.Output), "one run, with the last update")
	for _, id := range ids[:3] {
		runs, err := api.Runs(id)
		require.NoError(t, err)
		require.Empty(t, runs, "event %s was debounced away", id)
	}
}

func TestBatch(t *testing.T) {
	api := NewAPI(topo.LB.URL)
	batch := uniq("b")
	events := make([]map[string]any, 10)
	for i := range events {
		events[i] = map[string]any{"name": "demo/import.row", "data": map[string]any{"batch": batch, "row": i}}
	}
	ids, err := api.Send(events...)
	require.NoError(t, err)
	total := 0
	seen := map[string]bool{}
	for _, id := range ids {
		for _, r := range waitRuns(t, api, id, 1) {
			require.Equal(t, "Completed", r.Status, r.Error)
			if !seen[r.RunID] {
				seen[r.RunID] = true
				var out struct {
					Count int `json:"count"`
				}
				require.NoError(t, json.Unmarshal(r.Output, &out))
				total += out.Count
			}
		}
	}
	require.Equal(t, 10, total, "every row inserted once, in %d run(s)", len(seen))
	require.LessOrEqual(t, len(seen), 2, "ten rows within the batch timeout make one run, two if they straddle a flush")
}

const svixSecret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// TestWebhook creates a Clerk-style source through one replica and delivers
// a signed webhook to the other.
func TestWebhook(t *testing.T) {
	a := NewAPI(topo.Replicas[0].URL)
	var created struct {
		ID string `json:"id"`
	}
	require.NoError(t, a.Do(http.MethodPost, "/v1/webhooks", map[string]any{
		"name":         uniq("clerk"),
		"verify":       map[string]any{"scheme": "svix", "secret": svixSecret},
		"transform":    `{"name": "clerk/" + body.type, "data": body.data, "id": headers["svix-id"]}`,
		"allow_events": []string{"clerk/*"},
	}, http.StatusCreated, &created))

	msg := uniq("msg")
	user := uniq("user")
	body := []byte(`{"type":"user.created","object":"event","data":{"id":"` + user + `","email_addresses":[{"email_address":"ada@example.com"}]}}`)
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(svixSecret, "whsec_"))
	require.NoError(t, err)
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(msg + "." + ts + "."))
	mac.Write(body)
	req, err := http.NewRequest(http.MethodPost, topo.Replicas[1].URL+"/w/"+created.ID, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Svix-Id", msg)
	req.Header.Set("Svix-Timestamp", ts)
	req.Header.Set("Svix-Signature", "v1,"+base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	raw, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, string(raw))

	r := waitRuns(t, NewAPI(topo.LB.URL), msg, 1)[0]
	require.Equal(t, "clerk-user-created", r.FunctionID)
	require.Equal(t, "Completed", r.Status, r.Error)
	require.JSONEq(t, `{"userId":"`+user+`","email":"ada@example.com"}`, string(r.Output))
}

// temporalClient is a client of the topology's Temporal server.
func temporalClient(t *testing.T) client.Client {
	t.Helper()
	c, err := client.NewLazyClient(client.Options{HostPort: topo.Temporal, Namespace: Namespace, Logger: quietLogger})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}
