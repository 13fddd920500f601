// Package webhooks turns other services' webhooks into Herald events: it
// verifies a delivery's signature with the scheme its sender uses (Svix for
// Clerk and Resend, Stripe, GitHub, or a generic HMAC-SHA256) and applies a
// CEL transform from the delivery to events. It does no I/O; the ingest API
// stores the sources and serves POST /w/{id}.
package webhooks

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/herald-run/herald/triggers"
)

// Schemes.
const (
	SchemeSvix       = "svix"        // svix-id, svix-timestamp, svix-signature
	SchemeStripe     = "stripe"      // Stripe-Signature: t=...,v1=...
	SchemeGitHub     = "github"      // X-Hub-Signature-256: sha256=<hex>
	SchemeHMACSHA256 = "hmac-sha256" // configurable header, encoding, prefix
)

// DefaultTolerance is how far a signed timestamp may be from now (svix,
// stripe) when Verify.ToleranceS is 0.
const DefaultTolerance = 5 * time.Minute

// Verify says how a source's deliveries are signed.
type Verify struct {
	Scheme string `json:"scheme"`
	// Secret is the signing secret as the sender shows it (svix: "whsec_"
	// followed by base64; stripe: "whsec_..." used as is; github and
	// hmac-sha256: the raw secret).
	Secret string `json:"secret"`
	// Header (hmac-sha256 only) names the header carrying the signature.
	Header string `json:"header,omitempty"`
	// Encoding (hmac-sha256 only) of the signature: "hex" (default) or "base64".
	Encoding string `json:"encoding,omitempty"`
	// Prefix (hmac-sha256 only) before the encoded signature, e.g. "sha256=".
	Prefix string `json:"prefix,omitempty"`
	// ToleranceS (svix, stripe) bounds, in seconds, how far the signed
	// timestamp may be from now; 0 means DefaultTolerance.
	ToleranceS int `json:"tolerance_s,omitempty"`
}

// SignatureError is a delivery that fails verification: a missing or
// malformed header, a signature that does not match, or a timestamp outside
// the tolerance. Its message never contains the secret.
type SignatureError struct{ Reason string }

func (e *SignatureError) Error() string { return "webhook signature: " + e.Reason }

// Validate checks v when a source is created: a known scheme, a secret in
// the form the scheme expects, the hmac-sha256 fields. It lists the problem
// with the field's name.
//
// In detail: a non-empty secret of at most 1024 bytes (svix: "whsec_"
// followed by valid base64); for hmac-sha256 a header that is a valid
// header name, an encoding of "", "hex" or "base64" and a prefix of
// printable ASCII; tolerance_s between 0 and 86400. One scheme's fields are
// rejected on another (header, encoding and prefix outside hmac-sha256; a
// non-zero tolerance_s for github and hmac-sha256), so a mistaken
// configuration is not silently ignored. The error lists every problem,
// each prefixed with its JSON field name ("webhooks: invalid verify:
// header: is required: ..."), and never contains the secret.
func (v Verify) Validate() error {
	if problems := v.validate(); len(problems) > 0 {
		return fmt.Errorf("webhooks: invalid verify: %s", strings.Join(problems, "; "))
	}
	return nil
}

// Check verifies body (the raw request body) against headers at now, in
// constant time. It returns the delivery id the scheme provides (svix-id;
// for github X-GitHub-Delivery; for stripe the event id is in the body, so
// ""; for hmac-sha256 "") or a *SignatureError.
//
// Svix also accepts the Standard Webhooks header names webhook-id,
// webhook-timestamp and webhook-signature when no svix-* header is present.
// Svix and Stripe headers may list several signatures (during a secret
// rotation); one matching v1 signature is enough. Their timestamp must be
// within the tolerance of now in either direction.
//
// If v itself is invalid (see Validate) the error is Validate's, not a
// *SignatureError: the fault is the source's configuration, not the
// delivery's.
func (v Verify) Check(body []byte, headers http.Header, now time.Time) (deliveryID string, err error) {
	return v.check(body, headers, now)
}

// Env is the CEL environment of transforms: `body` (the parsed JSON body,
// dyn), `headers` (map of lower-cased header name to its first value) and
// `query` (map of query parameter to its first value). It offers the
// standard CEL library and macros and the cel-go string extensions, with the
// cost, size and regular expression limits of trigger expressions (see
// triggers.Env); nothing in it reaches the network, the files or the clock.
// An Env is safe for concurrent use.
type Env struct{ env *triggers.Env }

// NewEnv builds the transform environment; build one and share it.
func NewEnv() (*Env, error) { return newEnv() }

// Transform is a compiled transform. It is immutable and safe for
// concurrent use.
type Transform struct {
	prg *triggers.Program
	// secrets are the literals evaluation errors must not show (see
	// secretLiterals); hideDetail says they could not be found, so errors
	// show only that the evaluation failed.
	secrets    []string
	hideDetail bool
}

// Limits of Apply.
const (
	// MaxResultSize bounds the events one delivery may produce, in bytes of
	// JSON as Apply estimates them while converting (each value counts at
	// least minValueSize bytes). It is above what the ingest API accepts in
	// one request by default (3 MiB).
	MaxResultSize = 4 << 20

	// minValueSize is the least a value counts toward MaxResultSize, so that
	// converting a result of many tiny values, such as empty lists, is
	// bounded in time as well as in size.
	minValueSize = 8
)

// Compile compiles a transform expression; its result must be a map (one
// event) or a list of maps (several), checked at evaluation when dyn. Errors
// name the line and column, like trigger expressions, and quote the
// transform. Compile also rejects an empty expression, one over 4096 bytes,
// one whose cost is certain to exceed the evaluation cost limit, and one
// whose constant regular expression is over triggers.MaxRegexProgramSize.
// Compile when a source is created, so the user sees the error then and not
// at the first delivery.
func (e *Env) Compile(expr string) (*Transform, error) { return e.compile(expr) }

// Delivery is one webhook request as a transform sees it.
type Delivery struct {
	Body    any               // parsed JSON body (nil when empty)
	Headers map[string]string // lower-cased names, first value
	Query   map[string]string // first value of each parameter
}

// Apply evaluates the transform (with a cost limit and ctx's deadline) and
// returns the events it produced as JSON-ready maps with the keys name,
// data, and optionally id and ts. An evaluation error or a result that is
// not a map or a list of maps is an error naming what was wrong.
//
// Apply checks only the shape of the result: a map with string keys among
// name, data, id, ts and v, or a list of up to 100 such maps (an empty list
// is no events, which lets a transform skip deliveries it does not want).
// Values are converted to what encoding/json decodes: map[string]any, []any,
// string, int64 (CEL ints), float64 (CEL doubles), bool and nil. A CEL
// timestamp becomes milliseconds since the Unix epoch (int64) as an event's
// ts, and an RFC 3339 string in UTC anywhere else; bytes, durations, type
// values and non-finite doubles are errors. The ingest API then validates
// the events' fields as for any other event.
//
// The result may be at most MaxResultSize bytes of JSON (estimated), and the
// evaluation is bounded by the limits of trigger expressions (see
// triggers.Env); an evaluation stopped by one matches triggers.ErrLimit.
//
// Errors wrap the cause (ctx.Err() included). Their message, which the
// ingest API returns to whoever sent the delivery, names the failure but
// never quotes the transform, and has the transform's string literals of 8
// bytes or more, other than map keys and indexes, replaced by "[redacted]",
// so that a credential written in a transform does not leak through a value
// computed from it. (Compile errors, shown to whoever writes the transform,
// do quote it.) Apply never panics. d.Body is expected to be as
// ParseDelivery builds it.
func (t *Transform) Apply(ctx context.Context, d Delivery) ([]map[string]any, error) {
	return t.apply(ctx, d)
}

// ParseDelivery builds the Delivery of a request: body parsed as JSON (an
// error if it is not JSON), headers and query lower-cased and flattened.
//
// An empty or all-space body gives a nil Body, so a transform can still use
// the headers. JSON numbers become int64 when integral (and exactly
// representable) and float64 otherwise, so CEL sees ints for integers.
// Header names are lower-cased; query parameter names are kept as sent,
// since unlike header names they are case-sensitive. Each is flattened to
// its first value.
func ParseDelivery(body []byte, headers http.Header, query map[string][]string) (Delivery, error) {
	return parseDelivery(body, headers, query)
}
