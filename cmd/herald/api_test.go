package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// apiCase is one command line of the REST API commands, run against a stub
// of the API that checks the request the command sends and answers with a
// canned reply of the API's contract.
type apiCase struct {
	args   []string   // the command line, without --url and --signing-key
	route  string     // "METHOD /path" the command must call
	query  url.Values // the query it must send, if any
	body   string     // the JSON body it must send; "" for none
	status int        // the reply's status; 200 when 0
	reply  string     // the reply's JSON body
	code   int        // the exit code
	out    []string   // what stdout must contain
	errOut []string   // what stderr must contain
}

const stubSigningKey = "sign-me"

// apiStub serves one canned reply per call, in order, checking each request
// against c; it returns its URL and how many calls it answered.
func apiStub(t *testing.T, c apiCase, replies ...string) (string, func() int) {
	t.Helper()
	var (
		mu    sync.Mutex
		calls int
	)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		assert.Equal(t, c.route, r.Method+" "+r.URL.EscapedPath())
		assert.Equal(t, "Bearer "+stubSigningKey, r.Header.Get("Authorization"))
		if c.query != nil {
			assert.Equal(t, c.query, r.URL.Query())
		}
		if c.body == "" || r.Method == http.MethodGet {
			assert.Empty(t, body, "the command sent a body")
		} else {
			assert.Equal(t, "application/json", r.Header.Get("Content-Type"))
			assert.JSONEq(t, c.body, string(body))
		}
		mu.Lock()
		reply := c.reply
		if calls < len(replies) {
			reply = replies[calls]
		}
		calls++
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if c.status != 0 {
			w.WriteHeader(c.status)
		}
		_, _ = io.WriteString(w, reply)
	}))
	t.Cleanup(hs.Close)
	return hs.URL, func() int { mu.Lock(); defer mu.Unlock(); return calls }
}

func runAPICases(t *testing.T, cases map[string]apiCase) {
	t.Helper()
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			u, calls := apiStub(t, c)
			r := runCLI(t, context.Background(), append(c.args, "--url", u, "--signing-key", stubSigningKey)...)
			require.Equal(t, c.code, r.code, r.stderr)
			for _, s := range c.out {
				require.Contains(t, r.stdout, s)
			}
			for _, s := range c.errOut {
				require.Contains(t, r.stderr, s)
			}
			if c.code != 2 {
				require.Equal(t, 1, calls(), "one API call")
			} else {
				require.Zero(t, calls(), "a usage error calls nothing")
			}
		})
	}
}

const (
	runFailed = `{"run_id":"run_1","app_id":"demo","function_id":"flaky-charge","event_id":"ev_1","workflow_id":"wf_1",` +
		`"status":"Failed","output":null,"error":"card declined","started_at":"2026-12-04T10:00:00Z","ended_at":"2026-12-04T10:00:02Z"}`
	runReplayed = `{"run_id":"run_9","app_id":"demo","function_id":"flaky-charge","event_id":"ev_1","workflow_id":"wf_9",` +
		`"status":"Running","output":null,"started_at":"2026-12-04T11:00:00Z","ended_at":null,"replay_of":"run_1","replay_id":"rp_1"}`
)

func TestRunsCommands(t *testing.T) {
	t.Parallel()
	page := `{"data":[` + runReplayed + `,` + runFailed + `],"cursor":"c_2"}`
	runAPICases(t, map[string]apiCase{
		"ls": {
			args:  []string{"runs", "ls", "--function", "demo/flaky-charge", "--status", "Failed", "--limit", "2"},
			route: "GET /v1/runs", query: url.Values{"function_id": {"demo/flaky-charge"}, "status": {"Failed"}, "limit": {"2"}},
			reply: page,
			out: []string{"RUN ID", "run_9", "run_1", "demo/flaky-charge", "card declined",
				"more: herald runs ls --function demo/flaky-charge --status Failed --cursor c_2"},
		},
		"ls next page": {
			args:  []string{"runs", "ls", "--cursor", "c_2"},
			route: "GET /v1/runs", query: url.Values{"cursor": {"c_2"}, "limit": {"20"}},
			reply: `{"data":[],"cursor":""}`, out: []string{"RUN ID"},
		},
		"ls --json": {
			args: []string{"runs", "ls", "--json"}, route: "GET /v1/runs", reply: page, out: []string{`"cursor": "c_2"`},
		},
		"ls -o json": {
			args: []string{"runs", "ls", "-o", "json"}, route: "GET /v1/runs", reply: page, out: []string{`"replay_of": "run_1"`},
		},
		"ls -o yaml": {
			args: []string{"runs", "ls", "-o", "yaml"}, route: "GET /v1/runs", reply: page, code: 2,
			errOut: []string{`--output "yaml": use table or json`},
		},
		"get": {
			args: []string{"runs", "get", "run_9"}, route: "GET /v1/runs/run_9", reply: `{"data":` + runReplayed + `}`,
			out: []string{"run_9", "Running", "replay of    run_1", "replay       rp_1", "workflow id  wf_9"},
		},
		"get needs an id": {args: []string{"runs", "get"}, code: 2, errOut: []string{"the run id", "Usage: herald runs get [flags] ID"}},
		"get unknown": {
			args: []string{"runs", "get", "nope"}, route: "GET /v1/runs/nope",
			status: 404, reply: `{"status":404,"error":"no run with id \"nope\""}`,
			code: 1, errOut: []string{`herald runs get: 404 Not Found: no run with id "nope"`},
		},
		"rerun": {
			args: []string{"runs", "rerun", "run_1"}, route: "POST /v1/runs/run_1/rerun",
			reply: `{"data":` + runReplayed + `}`, out: []string{"run_9", "Running"},
		},
		"rerun from a step": {
			args: []string{"runs", "rerun", "run_1", "--from-step", "charge"}, route: "POST /v1/runs/run_1/rerun",
			body: `{"from_step":"charge"}`, reply: `{"data":` + runReplayed + `}`, out: []string{"run_9"},
		},
		"rerun from an unknown step": {
			args: []string{"runs", "rerun", "run_1", "--from-step", "nope"}, route: "POST /v1/runs/run_1/rerun",
			body: `{"from_step":"nope"}`, status: 400,
			reply: `{"status":400,"error":"run run_1 has no step \"nope\"; its steps are reserve, charge, notify"}`,
			code:  1, errOut: []string{`400 Bad Request: run run_1 has no step "nope"; its steps are reserve, charge, notify`},
		},
		"cancel": {
			args: []string{"runs", "cancel", "run_9"}, route: "DELETE /v1/runs/run_9",
			reply: `{"data":{"run_id":"run_9","status":"Cancelling"}}`, out: []string{"run_9", "Cancelling"},
		},
		"cancel a finished run": {
			args: []string{"runs", "cancel", "run_1"}, route: "DELETE /v1/runs/run_1", status: 409,
			reply: `{"status":409,"error":"run run_1 already ended with status Failed"}`,
			code:  1, errOut: []string{"409 Conflict: run run_1 already ended with status Failed"},
		},
		"no command":      {args: []string{"runs"}, code: 2, errOut: []string{"expected a command: ls, get, rerun, cancel"}},
		"unknown command": {args: []string{"runs", "lss"}, code: 2, errOut: []string{`unknown command "lss"; did you mean ls?`}},
	})
}

func TestRunsJSONIsTheAPIReply(t *testing.T) {
	t.Parallel()
	reply := `{"data":` + runFailed + `}`
	u, _ := apiStub(t, apiCase{route: "GET /v1/runs/run_1", reply: reply})
	r := runCLI(t, context.Background(), "runs", "get", "run_1", "--url", u, "--signing-key", stubSigningKey, "--json")
	require.Equal(t, 0, r.code, r.stderr)
	require.JSONEq(t, reply, r.stdout)
}

func TestFunctionsCommands(t *testing.T) {
	t.Parallel()
	paused := `{"id":"demo/flaky-charge","app_id":"demo","function_id":"flaky-charge","name":"Flaky charge","version":3,` +
		`"triggers":[{"event":"demo/payment.requested"}],"retries":3,"paused":true,"paused_at":"2026-12-04T10:30:00Z"}`
	running := `{"id":"demo/flaky-charge","app_id":"demo","function_id":"flaky-charge","name":"Flaky charge","version":3,` +
		`"triggers":[{"event":"demo/payment.requested"}],"retries":3,"paused":false,"paused_at":null}`
	nightly := `{"id":"demo/nightly","app_id":"demo","function_id":"nightly","name":"nightly","version":1,` +
		`"triggers":[{"cron":"0 3 * * *"}],"paused":false,"paused_at":null}`
	runAPICases(t, map[string]apiCase{
		"ls": {
			args: []string{"functions", "ls"}, route: "GET /v1/functions", reply: `{"data":[` + paused + `,` + nightly + `]}`,
			out: []string{"FUNCTION", "demo/flaky-charge", "demo/payment.requested", "since ", "demo/nightly", "cron 0 3 * * *"},
		},
		"pause": {
			args: []string{"functions", "pause", "demo/flaky-charge"}, route: "POST /v1/functions/demo/flaky-charge/pause",
			body: `{"cancel_running":false}`, reply: `{"data":` + paused + `}`, out: []string{"demo/flaky-charge", "since "},
		},
		"pause and cancel runs": {
			args: []string{"functions", "pause", "demo/flaky-charge", "--cancel-running"}, route: "POST /v1/functions/demo/flaky-charge/pause",
			body:  `{"cancel_running":true}`,
			reply: `{"data":` + paused + `,"cancellation":{"id":"cn_1","function_id":"demo/flaky-charge","status":"Running"}}`,
			out:   []string{"demo/flaky-charge", "cancelling its runs in progress: bulk cancellation cn_1"},
		},
		"resume": {
			args: []string{"functions", "resume", "demo/flaky-charge"}, route: "POST /v1/functions/demo/flaky-charge/resume",
			reply: `{"data":` + running + `}`, out: []string{"demo/flaky-charge", "no"},
		},
		"resume unknown": {
			args: []string{"functions", "resume", "demo/nope"}, route: "POST /v1/functions/demo/nope/resume",
			status: 404, reply: `{"status":404,"error":"no function \"demo/nope\""}`,
			code: 1, errOut: []string{`404 Not Found: no function "demo/nope"`},
		},
		"pause needs app/function": {
			args: []string{"functions", "pause", "flaky-charge"}, code: 2, errOut: []string{"use <app>/<function id>"},
		},
	})
}

func TestReplayCommands(t *testing.T) {
	t.Parallel()
	running := `{"id":"rp_1","function_id":"demo/flaky-charge","status":"Running","matched":3,"started":1,"skipped":0,` +
		`"error":"","created_at":"2026-12-04T12:00:00Z","updated_at":"2026-12-04T12:00:01Z"}`
	runAPICases(t, map[string]apiCase{
		"create from runs": {
			args: []string{"replay", "create", "demo/flaky-charge", "--from", "2026-12-04T09:00:00Z", "--to", "1733310000000",
				"--status", "Failed, Cancelled", "--if", "event.data.amount > 10"},
			route: "POST /v1/replays",
			body: `{"function_id":"demo/flaky-charge","from":"2026-12-04T09:00:00Z","to":"1733310000000",` +
				`"statuses":["Failed","Cancelled"],"if":"event.data.amount > 10"}`,
			status: 202, reply: `{"id":"rp_1","data":` + running + `}`,
			out: []string{"REPLAY ID", "rp_1", "demo/flaky-charge", "Running"},
		},
		"create from events": {
			args: []string{"replay", "create", "demo/flaky-charge", "--events", "--from", "2026-12-04T09:00:00Z"}, route: "POST /v1/replays",
			body:   `{"function_id":"demo/flaky-charge","from":"2026-12-04T09:00:00Z","events":true}`,
			status: 202, reply: `{"id":"rp_1","data":` + running + `}`, out: []string{"rp_1"},
		},
		"create refused": {
			args: []string{"replay", "create", "demo/nope", "--status", "Failed", "--from", "1733310000000"}, route: "POST /v1/replays",
			body: `{"function_id":"demo/nope","statuses":["Failed"],"from":"1733310000000"}`, status: 400,
			reply: `{"status":400,"error":"function_id: no function \"demo/nope\""}`,
			code:  1, errOut: []string{`herald replay create: 400 Bad Request: function_id: no function "demo/nope"`},
		},
		"create needs a function": {args: []string{"replay", "create"}, code: 2, errOut: []string{"Usage: herald replay create [flags] APP/FUNCTION"}},
		"create needs --from":     {args: []string{"replay", "create", "demo/flaky-charge"}, code: 2, errOut: []string{"--from is required"}},
		"get": {
			args: []string{"replay", "get", "rp_1"}, route: "GET /v1/replays/rp_1", reply: `{"data":` + running + `}`,
			out: []string{"rp_1", "Running", "MATCHED"},
		},
	})
}

// TestReplayCreateWait follows the replay until it is done.
func TestReplayCreateWait(t *testing.T) {
	t.Parallel()
	replay := func(status, errMsg string) string {
		return `{"data":{"id":"rp_1","function_id":"demo/flaky-charge","status":"` + status + `","matched":3,"started":3,"skipped":0,"error":"` + errMsg + `"}}`
	}
	for _, c := range []struct {
		final, errMsg string
		code          int
	}{{"Completed", "", 0}, {"Failed", "the store went away", 1}} {
		t.Run(c.final, func(t *testing.T) {
			t.Parallel()
			mux := http.NewServeMux()
			mux.HandleFunc("POST /v1/replays", func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusAccepted)
				_, _ = io.WriteString(w, `{"id":"rp_1","data":{"id":"rp_1","status":"Running"}}`)
			})
			var gets atomic.Int32
			mux.HandleFunc("GET /v1/replays/rp_1", func(w http.ResponseWriter, r *http.Request) {
				if gets.Add(1) == 1 {
					_, _ = io.WriteString(w, replay("Running", ""))
					return
				}
				_, _ = io.WriteString(w, replay(c.final, c.errMsg))
			})
			hs := httptest.NewServer(mux)
			t.Cleanup(hs.Close)
			r := runCLI(t, context.Background(), "replay", "create", "demo/flaky-charge", "--from", "2h", "--status", "Failed", "--wait", "--url", hs.URL)
			require.Equal(t, c.code, r.code, r.stderr)
			require.EqualValues(t, 2, gets.Load())
			require.Contains(t, r.stdout, c.final)
			if c.errMsg != "" {
				require.Contains(t, r.stderr, "replay rp_1 failed: the store went away")
			}
		})
	}
}

// TestAPIFlagsFromEnvironment: --url and --signing-key read HERALD_URL and
// HERALD_SIGNING_KEY, and a flag wins over its variable. Not parallel: it
// sets the environment.
func TestAPIFlagsFromEnvironment(t *testing.T) {
	u, calls := apiStub(t, apiCase{route: "GET /v1/functions", reply: `{"data":[]}`})
	t.Setenv("HERALD_URL", u)
	t.Setenv("HERALD_SIGNING_KEY", stubSigningKey)
	r := runCLI(t, context.Background(), "functions", "ls")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "FUNCTION")

	t.Setenv("HERALD_SIGNING_KEY", "wrong")
	r = runCLI(t, context.Background(), "functions", "ls", "--signing-key", stubSigningKey)
	require.Equal(t, 0, r.code, r.stderr)
	// Go's flag syntax, one dash, as before cobra.
	r = runCLI(t, context.Background(), "functions", "ls", "-signing-key="+stubSigningKey)
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, 3, calls())
}

func TestCompletion(t *testing.T) {
	t.Parallel()
	for shell, want := range map[string]string{
		"bash": "# bash completion V2 for herald",
		"zsh":  "#compdef herald",
		"fish": "complete -c herald",
	} {
		r := runCLI(t, context.Background(), "completion", shell)
		require.Equal(t, 0, r.code, r.stderr)
		require.Contains(t, r.stdout, want)
		require.Empty(t, r.stderr)
	}
	// The script asks the binary for completions: nested commands complete.
	r := runCLI(t, context.Background(), "__complete", "runs", "")
	require.Equal(t, 0, r.code, r.stderr)
	for _, sub := range []string{"ls", "get", "rerun", "cancel"} {
		require.Contains(t, r.stdout, sub+"\t")
	}
}

// TestHelpOfEveryCommand walks the whole command tree: every command's
// --help names it, lists each of its flags with its environment variable,
// and never prints a secret's value.
func TestHelpOfEveryCommand(t *testing.T) {
	const secret = "super-secret-value"
	for _, env := range []string{"HERALD_SIGNING_KEY", "HERALD_EVENT_KEYS", "HERALD_EVENT_KEY", "HERALD_WEBHOOK_SECRET"} {
		t.Setenv(env, secret)
	}
	root := rootCommand(io.Discard, io.Discard)
	var walk func(c *cobra.Command)
	seen := 0
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			if !sub.IsAvailableCommand() {
				continue
			}
			path := strings.Fields(sub.CommandPath())[1:]
			h := runCLI(t, context.Background(), append(path, "--help")...)
			require.Equal(t, 0, h.code, sub.CommandPath())
			require.Contains(t, h.stderr, "Usage: "+sub.CommandPath())
			require.NotContains(t, h.stderr, secret, sub.CommandPath())
			require.Empty(t, h.stdout)
			sub.Flags().VisitAll(func(f *pflag.Flag) {
				if f.Name == "help" {
					return
				}
				require.Contains(t, h.stderr, "--"+f.Name, sub.CommandPath())
				if env := f.Annotations[annotationEnv]; len(env) > 0 {
					require.Contains(t, h.stderr, "[$"+env[0]+"]", sub.CommandPath())
				}
			})
			seen++
			walk(sub)
		}
	}
	walk(root)
	require.Greater(t, seen, 20)

	for _, c := range []string{"runs ls", "runs get", "runs rerun", "runs cancel", "functions ls", "functions pause", "functions resume", "replay create", "replay get"} {
		h := runCLI(t, context.Background(), append(strings.Fields(c), "--help")...)
		require.Contains(t, h.stderr, `(default "http://127.0.0.1:8288") [$HERALD_URL]`, c)
		require.Contains(t, h.stderr, "[$HERALD_SIGNING_KEY]", c)
		require.Contains(t, h.stderr, "-o, --output string", c)
	}
	// The API commands are listed with the rest.
	r := runCLI(t, context.Background(), "--help")
	for _, c := range []string{"runs", "functions", "replay", "completion"} {
		require.Contains(t, r.stderr, "\n  "+c+" ")
	}
}
