package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// runReply is a run as the REST API returns it.
type runReply struct {
	RunID      string          `json:"run_id"`
	AppID      string          `json:"app_id"`
	FunctionID string          `json:"function_id"`
	EventID    string          `json:"event_id"`
	WorkflowID string          `json:"workflow_id"`
	Status     string          `json:"status"`
	Output     json.RawMessage `json:"output"`
	Error      string          `json:"error"`
	StartedAt  *time.Time      `json:"started_at"`
	EndedAt    *time.Time      `json:"ended_at"`
	ReplayOf   string          `json:"replay_of"`
	ReplayID   string          `json:"replay_id"`
}

func (r runReply) function() string {
	if r.AppID == "" {
		return r.FunctionID
	}
	return r.AppID + "/" + r.FunctionID
}

// printRuns prints runs as a table, one run a row.
func printRuns(w io.Writer, runs ...runReply) error {
	fmt.Fprintln(w, "RUN ID\tFUNCTION\tSTATUS\tSTARTED\tENDED\tEVENT\tERROR")
	for _, r := range runs {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.RunID, r.function(), r.Status,
			localTime(r.StartedAt), localTime(r.EndedAt), orDash(r.EventID), orDash(truncate(r.Error, 60)))
	}
	return nil
}

func runsCommand() command {
	return command{
		name:    "runs",
		summary: "list runs (ls), show one (get ID), run one again (rerun ID), cancel one (cancel ID)",
		sub:     []command{runsLsCommand(), runsGetCommand(), runsRerunCommand(), runsCancelCommand()},
	}
}

func runsLsCommand() command {
	var (
		api                      apiFlags
		function, status, cursor *string
		limit                    *int
	)
	return command{
		name:    "ls",
		summary: "list runs, newest first",
		flags: func(fs *flagSet) {
			api = addAPIFlags(fs)
			function = fs.String("function", "", "", "only runs of this function, <app>/<function id> as 'herald functions ls' shows it")
			status = fs.String("status", "", "", "only runs with this status, or these comma-separated ones: Scheduled, Running, Completed, Failed, Cancelled, Skipped")
			limit = fs.Int("limit", "", 20, "runs per page, 1 to 100")
			cursor = fs.String("cursor", "", "", "continue from the cursor a previous page printed")
		},
		run: func(ctx context.Context, fs *flagSet, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Sprintf("unexpected arguments %q", args)}
			}
			q := url.Values{}
			for k, v := range map[string]string{"function_id": *function, "status": *status, "cursor": *cursor} {
				if v != "" {
					q.Set(k, v)
				}
			}
			q.Set("limit", fmt.Sprint(*limit))
			raw, err := api.do(ctx, http.MethodGet, "/v1/runs?"+q.Encode(), nil)
			if err != nil {
				return err
			}
			return api.out.print(fs.stdout, raw, func(w io.Writer) error {
				var page struct {
					Data   []runReply `json:"data"`
					Cursor string     `json:"cursor"`
				}
				if err := json.Unmarshal(raw, &page); err != nil {
					return err
				}
				_ = printRuns(w, page.Data...)
				if page.Cursor != "" {
					fmt.Fprintf(w, "\nmore: %s\n", moreHint("herald runs ls",
						[][2]string{{"function", *function}, {"status", *status}}, page.Cursor))
				}
				return nil
			})
		},
	}
}

func runsGetCommand() command {
	var api apiFlags
	return command{
		name:    "get",
		args:    "ID",
		summary: "show one run: its status, event, output or error, and the replay it came from",
		flags:   func(fs *flagSet) { api = addAPIFlags(fs) },
		run: func(ctx context.Context, fs *flagSet, args []string) error {
			if len(args) != 1 {
				return usageError{"expected exactly one argument: the run id"}
			}
			raw, err := api.do(ctx, http.MethodGet, "/v1/runs/"+url.PathEscape(args[0]), nil)
			if err != nil {
				return err
			}
			return api.out.print(fs.stdout, raw, func(w io.Writer) error {
				r, err := decodeData[runReply](raw)
				if err != nil {
					return err
				}
				for _, row := range [][2]string{
					{"run id", r.RunID},
					{"function", r.function()},
					{"status", r.Status},
					{"event", orDash(r.EventID)},
					{"workflow id", r.WorkflowID},
					{"started", localTime(r.StartedAt)},
					{"ended", localTime(r.EndedAt)},
					{"replay of", r.ReplayOf},
					{"replay", r.ReplayID},
					{"error", r.Error},
					{"output", string(r.Output)},
				} {
					if row[1] != "" && row[1] != "null" {
						fmt.Fprintf(w, "%s\t%s\n", row[0], row[1])
					}
				}
				return nil
			})
		},
	}
}

func runsRerunCommand() command {
	var (
		api      apiFlags
		fromStep *string
	)
	return command{
		name:    "rerun",
		args:    "ID",
		summary: "run a run's function again: from the start as a new run, or from a step on",
		about: "Run a run's function again for the same event(s). From the start, it is a new run with its own id;\n" +
			"with --from-step, the run is reset to that step and runs on from it, keeping the results of the steps\n" +
			"before it. Prints the run.",
		flags: func(fs *flagSet) {
			api = addAPIFlags(fs)
			fromStep = fs.String("from-step", "", "", "rerun from this step id on (default: from the start); an unknown id gets the run's step ids back")
		},
		run: func(ctx context.Context, fs *flagSet, args []string) error {
			if len(args) != 1 {
				return usageError{"expected exactly one argument: the run id"}
			}
			var body any
			if *fromStep != "" {
				body = map[string]string{"from_step": *fromStep}
			}
			raw, err := api.do(ctx, http.MethodPost, "/v1/runs/"+url.PathEscape(args[0])+"/rerun", body)
			if err != nil {
				return err
			}
			return api.out.print(fs.stdout, raw, func(w io.Writer) error {
				r, err := decodeData[runReply](raw)
				if err != nil {
					return err
				}
				return printRuns(w, r)
			})
		},
	}
}

func runsCancelCommand() command {
	var api apiFlags
	return command{
		name:    "cancel",
		args:    "ID",
		summary: "cancel a run in progress",
		flags:   func(fs *flagSet) { api = addAPIFlags(fs) },
		run: func(ctx context.Context, fs *flagSet, args []string) error {
			if len(args) != 1 {
				return usageError{"expected exactly one argument: the run id"}
			}
			raw, err := api.do(ctx, http.MethodDelete, "/v1/runs/"+url.PathEscape(args[0]), nil)
			if err != nil {
				return err
			}
			return api.out.print(fs.stdout, raw, func(w io.Writer) error {
				r, err := decodeData[runReply](raw)
				if err != nil {
					return err
				}
				fmt.Fprintf(w, "RUN ID\tSTATUS\n%s\t%s\n", r.RunID, r.Status)
				return nil
			})
		},
	}
}
