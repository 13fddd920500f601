package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// apiFlags are the flags of the commands that call Herald's REST API.
type apiFlags struct {
	baseURL, signingKey *string
	out                 outputFlags
}

func addAPIFlags(fs *flagSet) apiFlags {
	return apiFlags{
		baseURL:    fs.String("url", "HERALD_URL", defaultURL, "Herald's base URL"),
		signingKey: fs.Secret("signing-key", "HERALD_SIGNING_KEY", "signing key for the REST API (not needed against herald dev)"),
		out:        addOutputFlags(fs, "print the API's JSON instead of a table"),
	}
}

// do sends one request to path under --url with the signing key, body as
// JSON unless it is nil, and returns the reply as it came. A reply other than
// 2xx is an error carrying the API's message.
func (a apiFlags) do(ctx context.Context, method, path string, body any) (json.RawMessage, error) {
	if _, err := a.out.json(); err != nil {
		return nil, err // a wrong -o, before the API acts on the request
	}
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			return nil, err
		}
	}
	var raw json.RawMessage
	err := call(ctx, method, strings.TrimRight(*a.baseURL, "/")+path, *a.signingKey, b, &raw)
	return raw, err
}

// outputFlags choose between a table and the API's JSON.
type outputFlags struct {
	asJSON *bool
	format *string
}

// addOutputFlags declares --json, with jsonUsage as its help, and its
// equivalent -o json.
func addOutputFlags(fs *flagSet, jsonUsage string) outputFlags {
	return outputFlags{
		asJSON: fs.Bool("json", "", false, jsonUsage),
		format: fs.FlagSet.StringP("output", "o", "table", "output format: table or json"),
	}
}

// json reports whether the API's JSON is wanted rather than a table.
func (o outputFlags) json() (bool, error) {
	switch *o.format {
	case "table":
		return *o.asJSON, nil
	case "json":
		return true, nil
	default:
		return false, usageError{fmt.Sprintf("--output %q: use table or json", *o.format)}
	}
}

// print writes the API's reply raw as indented JSON when that is wanted,
// and otherwise calls table with a tab-separated writer.
func (o outputFlags) print(w io.Writer, raw json.RawMessage, table func(w io.Writer) error) error {
	asJSON, err := o.json()
	if err != nil {
		return err
	}
	if asJSON {
		if len(raw) == 0 {
			return nil
		}
		var buf bytes.Buffer
		if err := json.Indent(&buf, raw, "", "  "); err != nil {
			return err
		}
		buf.WriteByte('\n')
		_, err := w.Write(buf.Bytes())
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if err := table(tw); err != nil {
		return err
	}
	return tw.Flush()
}

// decodeData decodes the "data" member of an API reply.
func decodeData[T any](raw json.RawMessage) (T, error) {
	var r struct {
		Data T `json:"data"`
	}
	err := json.Unmarshal(raw, &r)
	return r.Data, err
}

// apiTime turns a time flag into what the API accepts: RFC 3339 and
// milliseconds since the epoch pass as they are; a duration such as 2h means
// that long ago.
func apiTime(s string) string {
	if _, err := strconv.ParseInt(s, 10, 64); err == nil {
		return s
	}
	if d, err := time.ParseDuration(s); err == nil {
		return time.Now().Add(-d).UTC().Format(time.RFC3339)
	}
	return s
}

// localTime formats an API time for a table; a missing one is "-".
func localTime(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.DateTime)
}

// orDash is s, or "-" for an empty table cell.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// moreHint is the command line that prints the next page.
func moreHint(cmd string, filters [][2]string, cursor string) string {
	var b strings.Builder
	b.WriteString(cmd)
	for _, f := range filters {
		if f[1] != "" {
			fmt.Fprintf(&b, " --%s %s", f[0], shellQuote(f[1]))
		}
	}
	fmt.Fprintf(&b, " --cursor %s", cursor)
	return b.String()
}

// shellQuote quotes s for a shell when it holds anything but safe characters.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
