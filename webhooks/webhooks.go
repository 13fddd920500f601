// Package webhooks turns other services' webhooks into Herald events: it
// verifies a delivery's signature with the scheme its sender uses (Svix for
// Clerk and Resend, Stripe, GitHub, or a generic HMAC-SHA256) and applies a
// CEL transform from the delivery to events. It does no I/O; the ingest API
// stores the sources and serves POST /w/{id}.
package webhooks

import (
	"context"
	"net/http"
	"time"
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
func (v Verify) Validate() error { panic("webhooks: Verify.Validate not implemented yet") }

// Check verifies body (the raw request body) against headers at now, in
// constant time. It returns the delivery id the scheme provides (svix-id;
// for github X-GitHub-Delivery; for stripe the event id is in the body, so
// ""; for hmac-sha256 "") or a *SignatureError.
func (v Verify) Check(body []byte, headers http.Header, now time.Time) (deliveryID string, err error) {
	panic("webhooks: Verify.Check not implemented yet")
}

// Env is the CEL environment of transforms: `body` (the parsed JSON body,
// dyn), `headers` (map of lower-cased header name to its first value) and
// `query` (map of query parameter to its first value).
type Env struct{}

// NewEnv builds the transform environment; build one and share it.
func NewEnv() (*Env, error) { panic("webhooks: NewEnv not implemented yet") }

// Transform is a compiled transform.
type Transform struct{}

// Compile compiles a transform expression; its result must be a map (one
// event) or a list of maps (several), checked at evaluation when dyn. Errors
// name the line and column, like trigger expressions.
func (e *Env) Compile(expr string) (*Transform, error) {
	panic("webhooks: Env.Compile not implemented yet")
}

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
func (t *Transform) Apply(ctx context.Context, d Delivery) ([]map[string]any, error) {
	panic("webhooks: Transform.Apply not implemented yet")
}

// ParseDelivery builds the Delivery of a request: body parsed as JSON (an
// error if it is not JSON), headers and query lower-cased and flattened.
func ParseDelivery(body []byte, headers http.Header, query map[string][]string) (Delivery, error) {
	panic("webhooks: ParseDelivery not implemented yet")
}
