package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
)

// webhookReply is the part of a webhook source, as the REST API returns it,
// that the CLI prints.
type webhookReply struct {
	ID     string `json:"id"`
	URL    string `json:"url"`
	Name   string `json:"name"`
	Verify struct {
		Scheme string `json:"scheme"`
	} `json:"verify"`
}

func webhooksCommand() command {
	var (
		baseURL, signingKey, name, scheme, secret, transform, allowEvents, header, encoding, prefix *string
		tolerance                                                                                   *int
		out                                                                                         outputFlags
	)
	return command{
		name:    "webhooks",
		args:    "create | ls | rm ID",
		summary: "manage webhook sources: create one (prints its id and delivery URL), list them (ls), delete one (rm ID)",
		flags: func(fs *flagSet) {
			baseURL = fs.String("url", "HERALD_URL", defaultURL, "Herald's base URL")
			signingKey = fs.Secret("signing-key", "HERALD_SIGNING_KEY", "signing key for the REST API (not needed against herald dev)")
			name = fs.String("name", "", "", "create: the source's name, 1 to 64 of a-z 0-9 . _ - (events without a transform are named webhook/<name>)")
			scheme = fs.String("scheme", "", "", "create: how deliveries are signed: svix (Clerk, Resend), stripe, github or hmac-sha256")
			secret = fs.Secret("secret", "HERALD_WEBHOOK_SECRET", "create: the signing secret as the sending service shows it")
			transform = fs.String("transform", "", "", "create: CEL expression over body, headers and query returning an event {name, data, id?, ts?} or a list of them")
			allowEvents = fs.String("allow-events", "", "", "create: comma-separated event name patterns the source may produce (default: any)")
			header = fs.String("header", "", "", "create, hmac-sha256: the header carrying the signature")
			encoding = fs.String("encoding", "", "", "create, hmac-sha256: the signature's encoding, hex or base64 (default hex)")
			prefix = fs.String("prefix", "", "", "create, hmac-sha256: text before the encoded signature, e.g. sha256=")
			tolerance = fs.Int("tolerance", "", 0, "create, svix and stripe: seconds a signed timestamp may be from now (default 300)")
			out = addOutputFlags(fs, "ls: print the API's JSON instead of a table")
		},
		run: func(ctx context.Context, fs *flagSet, args []string) error {
			base := strings.TrimRight(*baseURL, "/")
			switch {
			case len(args) == 1 && args[0] == "create":
				if *name == "" || *scheme == "" {
					return usageError{"create needs --name and --scheme"}
				}
				if *secret == "" {
					return usageError{"create needs --secret (or HERALD_WEBHOOK_SECRET)"}
				}
				verify := map[string]any{"scheme": *scheme, "secret": *secret}
				for k, v := range map[string]string{"header": *header, "encoding": *encoding, "prefix": *prefix} {
					if v != "" {
						verify[k] = v
					}
				}
				if *tolerance != 0 {
					verify["tolerance_s"] = *tolerance
				}
				req := map[string]any{"name": *name, "transform": *transform, "verify": verify, "allow_events": splitList(*allowEvents)}
				body, err := json.Marshal(req)
				if err != nil {
					return err
				}
				var w webhookReply
				if err := call(ctx, http.MethodPost, base+"/v1/webhooks", *signingKey, body, &w); err != nil {
					return err
				}
				fmt.Fprintf(fs.stdout, "%s\n%s\n", w.ID, w.URL)
				return nil
			case len(args) == 1 && args[0] == "ls":
				var resp struct {
					Data []json.RawMessage `json:"data"`
				}
				if err := call(ctx, http.MethodGet, base+"/v1/webhooks", *signingKey, nil, &resp); err != nil {
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
				fmt.Fprintln(tw, "ID\tNAME\tSCHEME\tURL")
				for _, raw := range resp.Data {
					var w webhookReply
					if err := json.Unmarshal(raw, &w); err != nil {
						return err
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", w.ID, w.Name, w.Verify.Scheme, w.URL)
				}
				return tw.Flush()
			case len(args) == 2 && args[0] == "rm":
				if err := call(ctx, http.MethodDelete, base+"/v1/webhooks/"+url.PathEscape(args[1]), *signingKey, nil, nil); err != nil {
					return err
				}
				fmt.Fprintf(fs.stdout, "deleted %s\n", args[1])
				return nil
			default:
				return usageError{"expected 'create', 'ls' or 'rm ID'"}
			}
		},
	}
}
