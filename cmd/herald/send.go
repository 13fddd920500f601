package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"
)

const defaultURL = "http://127.0.0.1:8288"

func sendCommand() command {
	var (
		data, id, baseURL, eventKey, v *string
		ts                             *int64
	)
	return command{
		name:    "send",
		args:    "NAME",
		summary: "send one event to Herald and print its id",
		flags: func(fs *flagSet) {
			data = fs.String("data", "", "{}", "event data, a JSON object")
			id = fs.String("id", "", "", "event id, the deduplication key (default: Herald assigns a ULID)")
			ts = fs.Int64("ts", "", 0, "event time in milliseconds since the epoch (default: now)")
			v = fs.String("v", "", "", "payload version")
			baseURL = fs.String("url", "HERALD_URL", defaultURL, "Herald's base URL")
			eventKey = fs.Secret("event-key", "HERALD_EVENT_KEY", "event key to send with (any key works against herald dev)")
		},
		run: func(ctx context.Context, fs *flagSet, args []string) error {
			if len(args) != 1 {
				return usageError{"expected exactly one argument: the event name"}
			}
			if !json.Valid([]byte(*data)) {
				return usageError{fmt.Sprintf("--data is not valid JSON: %s", *data)}
			}
			ev := map[string]any{"name": args[0], "data": json.RawMessage(*data)}
			if *id != "" {
				ev["id"] = *id
			}
			if *ts != 0 {
				ev["ts"] = *ts
			}
			if *v != "" {
				ev["v"] = *v
			}
			body, err := json.Marshal(ev)
			if err != nil {
				return err
			}
			key := *eventKey
			if key == "" {
				key = "dev"
			}
			var resp struct {
				IDs []string `json:"ids"`
			}
			if err := call(ctx, http.MethodPost, strings.TrimRight(*baseURL, "/")+"/e/"+url.PathEscape(key), "", body, &resp); err != nil {
				return err
			}
			if len(resp.IDs) != 1 {
				return fmt.Errorf("unexpected reply: %d ids", len(resp.IDs))
			}
			fmt.Fprintln(fs.stdout, resp.IDs[0])
			return nil
		},
	}
}

func eventsCommand() command {
	var (
		baseURL, signingKey, name, cursor, after, before *string
		limit                                            *int
		out                                              outputFlags
	)
	return command{
		name:    "events",
		args:    "ls | get ID",
		summary: "list recent events (ls) or show one event (get ID)",
		flags: func(fs *flagSet) {
			baseURL = fs.String("url", "HERALD_URL", defaultURL, "Herald's base URL")
			signingKey = fs.Secret("signing-key", "HERALD_SIGNING_KEY", "signing key for the REST API (not needed against herald dev)")
			name = fs.String("name", "", "", "ls: only events with this name")
			after = fs.String("received-after", "", "", "ls: only events received after this time (RFC 3339 or ms)")
			before = fs.String("received-before", "", "", "ls: only events received before this time (RFC 3339 or ms)")
			limit = fs.Int("limit", "", 20, "ls: events per page, 1 to 100")
			cursor = fs.String("cursor", "", "", "ls: continue from the cursor a previous page printed")
			out = addOutputFlags(fs, "print the API's JSON instead of a table")
		},
		run: func(ctx context.Context, fs *flagSet, args []string) error {
			base := strings.TrimRight(*baseURL, "/")
			switch {
			case len(args) == 2 && args[0] == "get":
				var resp struct {
					Data json.RawMessage `json:"data"`
				}
				if err := call(ctx, http.MethodGet, base+"/v1/events/"+url.PathEscape(args[1]), *signingKey, nil, &resp); err != nil {
					return err
				}
				var out bytes.Buffer
				_ = json.Indent(&out, resp.Data, "", "  ")
				fmt.Fprintln(fs.stdout, out.String())
				return nil
			case len(args) == 1 && args[0] == "ls":
				q := url.Values{}
				for k, v := range map[string]string{"name": *name, "received_after": *after, "received_before": *before, "cursor": *cursor} {
					if v != "" {
						q.Set(k, v)
					}
				}
				q.Set("limit", fmt.Sprint(*limit))
				var resp struct {
					Data   []json.RawMessage `json:"data"`
					Cursor string            `json:"cursor"`
				}
				if err := call(ctx, http.MethodGet, base+"/v1/events?"+q.Encode(), *signingKey, nil, &resp); err != nil {
					return err
				}
				asJSON, err := out.json()
				if err != nil {
					return err
				}
				if asJSON {
					return json.NewEncoder(fs.stdout).Encode(resp)
				}
				tw := tabwriter.NewWriter(fs.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tNAME\tRECEIVED\tDATA")
				for _, raw := range resp.Data {
					var e struct {
						ID         string          `json:"id"`
						Name       string          `json:"name"`
						Data       json.RawMessage `json:"data"`
						ReceivedAt time.Time       `json:"received_at"`
					}
					if err := json.Unmarshal(raw, &e); err != nil {
						return err
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.ID, e.Name, e.ReceivedAt.Local().Format(time.DateTime), truncate(string(e.Data), 60))
				}
				_ = tw.Flush()
				if resp.Cursor != "" {
					fmt.Fprintf(fs.stdout, "\nmore: herald events ls --cursor %s\n", resp.Cursor)
				}
				return nil
			default:
				return usageError{"expected 'ls' or 'get ID'"}
			}
		},
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

// call sends one request to Herald's API, giving up after 30s or when ctx is
// done, and decodes a JSON reply into out (unless out is nil or the reply
// empty), turning Herald's JSON errors into Go errors.
func call(ctx context.Context, method, u, bearer string, body []byte, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%w (is Herald running? start it with 'make dev')", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s: %s", resp.Status, e.Error)
		}
		return fmt.Errorf("%s: %s", resp.Status, truncate(string(raw), 200))
	}
	if out == nil || len(raw) == 0 {
		return nil
	}
	return json.Unmarshal(raw, out)
}
