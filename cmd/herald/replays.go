package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// replayReply is a replay as the REST API returns it.
type replayReply struct {
	ID         string     `json:"id"`
	FunctionID string     `json:"function_id"`
	Status     string     `json:"status"` // Running, Completed or Failed
	Matched    int        `json:"matched"`
	Started    int        `json:"started"`
	Skipped    int        `json:"skipped"`
	Error      string     `json:"error"`
	CreatedAt  *time.Time `json:"created_at"`
}

// printReplay prints a replay as a one-row table.
func printReplay(w io.Writer, r replayReply) error {
	fmt.Fprintln(w, "REPLAY ID\tFUNCTION\tSTATUS\tMATCHED\tSTARTED\tSKIPPED\tCREATED\tERROR")
	fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", r.ID, r.FunctionID, r.Status, r.Matched, r.Started, r.Skipped,
		localTime(r.CreatedAt), orDash(truncate(r.Error, 60)))
	return nil
}

// replayPollInterval is how often 'replay create --wait' asks how the
// replay is going.
const replayPollInterval = 500 * time.Millisecond

func replayCommand() command {
	return command{
		name:    "replay",
		summary: "run a function again for the runs or events of a time window (create APP/FUNCTION), and follow it (get ID)",
		sub:     []command{replayCreateCommand(), replayGetCommand()},
	}
}

func replayCreateCommand() command {
	var (
		api                     apiFlags
		from, to, statuses, cel *string
		events, wait            *bool
	)
	return command{
		name:    "create",
		args:    "APP/FUNCTION",
		summary: "replay a function's runs, or its events, of a time window",
		about: "Replay a function: start a new run for each of its runs in the window with one of --status, or, with\n" +
			"--events, for each stored event in the window that matches its triggers, whether or not it ran. Each\n" +
			"replayed run is a new run; the old one stays as it was. The replay runs in the background: this prints\n" +
			"its id, and 'herald replay get ID' (or --wait) follows it.",
		flags: func(fs *flagSet) {
			api = addAPIFlags(fs)
			from = fs.String("from", "", "", "start of the window (required): RFC 3339, milliseconds since the epoch, or a duration ago such as 2h")
			to = fs.String("to", "", "", "end of the window, as --from (default: now)")
			statuses = fs.String("status", "", "", "comma-separated statuses of the runs to replay, of Completed, Failed, Cancelled and Skipped (default: Failed,Cancelled,Skipped)")
			events = fs.Bool("events", "", false, "replay every matching stored event in the window instead of selected runs")
			cel = fs.String("if", "", "", "CEL expression over event: only events for which it is true")
			wait = fs.Bool("wait", "", false, "wait until the replay has started every run, then print it; exit 1 if it failed")
		},
		run: func(ctx context.Context, fs *flagSet, args []string) error {
			if len(args) != 1 {
				return usageError{"expected exactly one argument: the function, <app>/<function id>"}
			}
			if *from == "" {
				return usageError{"--from is required: the start of the window"}
			}
			req := map[string]any{"function_id": args[0]}
			if *from != "" {
				req["from"] = apiTime(*from)
			}
			if *to != "" {
				req["to"] = apiTime(*to)
			}
			if s := splitList(*statuses); len(s) > 0 {
				req["statuses"] = s
			}
			if *events {
				req["events"] = true
			}
			if *cel != "" {
				req["if"] = *cel
			}
			raw, err := api.do(ctx, http.MethodPost, "/v1/replays", req)
			if err != nil {
				return err
			}
			if *wait {
				var created struct {
					ID string `json:"id"`
				}
				if err := json.Unmarshal(raw, &created); err != nil {
					return err
				}
				return waitReplay(ctx, fs.stdout, api, created.ID)
			}
			return api.out.print(fs.stdout, raw, func(w io.Writer) error {
				r, err := decodeData[replayReply](raw)
				if err != nil {
					return err
				}
				return printReplay(w, r)
			})
		},
	}
}

// waitReplay polls the replay until it is no longer Running and prints it.
func waitReplay(ctx context.Context, stdout io.Writer, api apiFlags, id string) error {
	for {
		raw, err := api.do(ctx, http.MethodGet, "/v1/replays/"+url.PathEscape(id), nil)
		if err != nil {
			return err
		}
		r, err := decodeData[replayReply](raw)
		if err != nil {
			return err
		}
		if r.Status != "Running" {
			if err := api.out.print(stdout, raw, func(w io.Writer) error { return printReplay(w, r) }); err != nil {
				return err
			}
			if r.Status == "Failed" {
				return fmt.Errorf("replay %s failed: %s", id, r.Error)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.New("stopped waiting; the replay goes on: herald replay get " + id)
		case <-time.After(replayPollInterval):
		}
	}
}

func replayGetCommand() command {
	var api apiFlags
	return command{
		name:    "get",
		args:    "ID",
		summary: "show a replay: its status and how many runs it matched, started and skipped",
		flags:   func(fs *flagSet) { api = addAPIFlags(fs) },
		run: func(ctx context.Context, fs *flagSet, args []string) error {
			if len(args) != 1 {
				return usageError{"expected exactly one argument: the replay id"}
			}
			raw, err := api.do(ctx, http.MethodGet, "/v1/replays/"+url.PathEscape(args[0]), nil)
			if err != nil {
				return err
			}
			return api.out.print(fs.stdout, raw, func(w io.Writer) error {
				r, err := decodeData[replayReply](raw)
				if err != nil {
					return err
				}
				return printReplay(w, r)
			})
		},
	}
}
