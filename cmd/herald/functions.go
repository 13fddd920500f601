package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// functionReply is a function as the REST API returns it.
type functionReply struct {
	ID       string `json:"id"` // <app>/<function id>
	Name     string `json:"name"`
	Version  int    `json:"version"`
	Triggers []struct {
		Event string `json:"event"`
		Cron  string `json:"cron"`
	} `json:"triggers"`
	Paused   bool       `json:"paused"`
	PausedAt *time.Time `json:"paused_at"`
}

// printFunctions prints functions as a table, one function a row.
func printFunctions(w io.Writer, fns ...functionReply) error {
	fmt.Fprintln(w, "FUNCTION\tNAME\tVERSION\tTRIGGERS\tPAUSED")
	for _, f := range fns {
		var triggers []string
		for _, t := range f.Triggers {
			if t.Cron != "" {
				triggers = append(triggers, "cron "+t.Cron)
			} else {
				triggers = append(triggers, t.Event)
			}
		}
		paused := "no"
		if f.Paused {
			paused = "since " + localTime(f.PausedAt)
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\n", f.ID, f.Name, f.Version, orDash(truncate(strings.Join(triggers, ", "), 60)), paused)
	}
	return nil
}

func functionsCommand() command {
	return command{
		name:    "functions",
		summary: "list functions (ls), pause one (pause APP/FUNCTION) or resume it (resume APP/FUNCTION)",
		sub:     []command{functionsLsCommand(), functionsPauseCommand(), functionsResumeCommand()},
	}
}

func functionsLsCommand() command {
	var api apiFlags
	return command{
		name:    "ls",
		summary: "list the functions apps have synced, with their triggers and whether they are paused",
		flags:   func(fs *flagSet) { api = addAPIFlags(fs) },
		run: func(ctx context.Context, fs *flagSet, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Sprintf("unexpected arguments %q", args)}
			}
			raw, err := api.do(ctx, http.MethodGet, "/v1/functions", nil)
			if err != nil {
				return err
			}
			return api.out.print(fs.stdout, raw, func(w io.Writer) error {
				fns, err := decodeData[[]functionReply](raw)
				if err != nil {
					return err
				}
				return printFunctions(w, fns...)
			})
		},
	}
}

// functionPath is the API path of the function id APP/FUNCTION names.
func functionPath(id string) (string, error) {
	app, fn, ok := strings.Cut(id, "/")
	if !ok || app == "" || fn == "" {
		return "", usageError{fmt.Sprintf("function %q: use <app>/<function id> as 'herald functions ls' shows it", id)}
	}
	return "/v1/functions/" + url.PathEscape(app) + "/" + url.PathEscape(fn), nil
}

func functionsPauseCommand() command {
	var (
		api           apiFlags
		cancelRunning *bool
	)
	return command{
		name:    "pause",
		args:    "APP/FUNCTION",
		summary: "pause a function: its events are kept, as Skipped runs",
		about: "Pause a function: each event it matches then records a Skipped run, which a replay runs later\n" +
			"(herald replay create APP/FUNCTION --status Skipped). Its cron schedules pause too. Runs in progress\n" +
			"go on, unless --cancel-running.",
		flags: func(fs *flagSet) {
			api = addAPIFlags(fs)
			cancelRunning = fs.Bool("cancel-running", "", false, "also cancel the function's runs in progress")
		},
		run: func(ctx context.Context, fs *flagSet, args []string) error {
			if len(args) != 1 {
				return usageError{"expected exactly one argument: the function, <app>/<function id>"}
			}
			path, err := functionPath(args[0])
			if err != nil {
				return err
			}
			raw, err := api.do(ctx, http.MethodPost, path+"/pause", map[string]bool{"cancel_running": *cancelRunning})
			if err != nil {
				return err
			}
			return api.out.print(fs.stdout, raw, func(w io.Writer) error {
				var reply struct {
					Data         functionReply `json:"data"`
					Cancellation *struct {
						ID string `json:"id"`
					} `json:"cancellation"`
				}
				if err := json.Unmarshal(raw, &reply); err != nil {
					return err
				}
				_ = printFunctions(w, reply.Data)
				if reply.Cancellation != nil {
					fmt.Fprintf(w, "\ncancelling its runs in progress: bulk cancellation %s\n", reply.Cancellation.ID)
				}
				return nil
			})
		},
	}
}

func functionsResumeCommand() command {
	var api apiFlags
	return command{
		name:    "resume",
		args:    "APP/FUNCTION",
		summary: "resume a paused function; replay its Skipped runs to run the events it missed",
		flags:   func(fs *flagSet) { api = addAPIFlags(fs) },
		run: func(ctx context.Context, fs *flagSet, args []string) error {
			if len(args) != 1 {
				return usageError{"expected exactly one argument: the function, <app>/<function id>"}
			}
			path, err := functionPath(args[0])
			if err != nil {
				return err
			}
			raw, err := api.do(ctx, http.MethodPost, path+"/resume", nil)
			if err != nil {
				return err
			}
			return api.out.print(fs.stdout, raw, func(w io.Writer) error {
				f, err := decodeData[functionReply](raw)
				if err != nil {
					return err
				}
				return printFunctions(w, f)
			})
		},
	}
}
