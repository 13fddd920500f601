package webhooks

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

const (
	// maxTolerance is the largest ToleranceS Validate accepts: a day is
	// already far more than any sender's clock skew or retry delay warrants.
	maxTolerance = 86400

	// maxSecretLen bounds Secret so a pasted file cannot become a key.
	maxSecretLen = 1024

	// maxPrefixLen bounds Prefix.
	maxPrefixLen = 64

	svixSecretPrefix = "whsec_"
)

// validate lists every problem of v, each naming its JSON field.
func (v Verify) validate() []string {
	var problems []string
	add := func(field, format string, args ...any) {
		problems = append(problems, field+": "+fmt.Sprintf(format, args...))
	}
	hmacOnly := func() {
		if v.Header != "" {
			add("header", "is only used by the %s scheme", SchemeHMACSHA256)
		}
		if v.Encoding != "" {
			add("encoding", "is only used by the %s scheme", SchemeHMACSHA256)
		}
		if v.Prefix != "" {
			add("prefix", "is only used by the %s scheme", SchemeHMACSHA256)
		}
	}
	timestamped := false

	switch v.Scheme {
	case SchemeSvix:
		timestamped = true
		hmacOnly()
		if v.Secret != "" {
			if _, err := svixKey(v.Secret); err != nil {
				add("secret", "%v", err)
			}
		}
	case SchemeStripe:
		timestamped = true
		hmacOnly()
	case SchemeGitHub:
		hmacOnly()
	case SchemeHMACSHA256:
		switch {
		case v.Header == "":
			add("header", "is required: the name of the header carrying the signature")
		case !isToken(v.Header):
			add("header", "%q is not a valid HTTP header name", v.Header)
		}
		switch v.Encoding {
		case "", "hex", "base64":
		default:
			add("encoding", "%q is not one of hex (the default) or base64", v.Encoding)
		}
		if len(v.Prefix) > maxPrefixLen {
			add("prefix", "is longer than %d bytes", maxPrefixLen)
		} else if !isPrintableASCII(v.Prefix) {
			add("prefix", "must be printable ASCII without spaces")
		}
	case "":
		add("scheme", "is required: one of %s, %s, %s or %s", SchemeSvix, SchemeStripe, SchemeGitHub, SchemeHMACSHA256)
	default:
		add("scheme", "%q is not one of %s, %s, %s or %s", v.Scheme, SchemeSvix, SchemeStripe, SchemeGitHub, SchemeHMACSHA256)
	}

	switch {
	case v.Secret == "":
		add("secret", "must not be empty")
	case len(v.Secret) > maxSecretLen:
		add("secret", "is longer than %d bytes", maxSecretLen)
	}

	switch {
	case v.ToleranceS < 0 || v.ToleranceS > maxTolerance:
		add("tolerance_s", "%d is not between 0 (the default, %d) and %d seconds", v.ToleranceS, int(DefaultTolerance/time.Second), maxTolerance)
	case v.ToleranceS != 0 && !timestamped && v.Scheme != "":
		add("tolerance_s", "is only used by the %s and %s schemes, whose signatures carry a timestamp", SchemeSvix, SchemeStripe)
	}
	return problems
}

// svixKey decodes a Svix secret, "whsec_" followed by base64, into the HMAC
// key. Its errors never quote the secret.
func svixKey(secret string) ([]byte, error) {
	b64, ok := strings.CutPrefix(secret, svixSecretPrefix)
	if !ok {
		return nil, fmt.Errorf("a %s secret starts with %q", SchemeSvix, svixSecretPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		key, err = base64.RawStdEncoding.DecodeString(b64)
	}
	if err != nil || len(key) == 0 {
		return nil, fmt.Errorf("a %s secret is %q followed by base64 (as the sender's dashboard shows it)", SchemeSvix, svixSecretPrefix)
	}
	return key, nil
}

// isToken reports whether s is an HTTP token (RFC 9110), the syntax of a
// header name.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

func (v Verify) tolerance() time.Duration {
	if v.ToleranceS == 0 {
		return DefaultTolerance
	}
	return time.Duration(v.ToleranceS) * time.Second
}

func sigErr(format string, args ...any) error {
	return &SignatureError{Reason: fmt.Sprintf(format, args...)}
}

func macSHA256(key []byte, parts ...[]byte) []byte {
	m := hmac.New(sha256.New, key)
	for _, p := range parts {
		m.Write(p)
	}
	return m.Sum(nil)
}

// checkTimestamp parses a unix-seconds timestamp taken from header name and
// checks it is within tol of now, in either direction: a delivery from the
// future is as suspect as an old one being replayed.
func checkTimestamp(name, raw string, now time.Time, tol time.Duration) error {
	ts, err := strconv.ParseInt(strings.TrimSpace(raw), 10, 64)
	if err != nil {
		return sigErr("malformed header %s: %s is not a unix time in seconds", name, quoteShort(raw))
	}
	// time.Time.Sub saturates, so an absurd ts cannot overflow into range.
	if d := now.Sub(time.Unix(ts, 0)); d > tol || d < -tol {
		return sigErr("timestamp %d is outside the tolerance of %s", ts, tol)
	}
	return nil
}

// quoteShort quotes a header value for an error message, cut so a hostile
// sender cannot fill the logs.
func quoteShort(s string) string {
	const max = 40
	if len(s) <= max {
		return strconv.Quote(s)
	}
	return strconv.Quote(s[:max]) + "…"
}

// checkSvix verifies the Svix scheme, which Standard Webhooks adopted with
// the header names webhook-id, webhook-timestamp and webhook-signature.
func (v Verify) checkSvix(body []byte, headers http.Header, now time.Time) (string, error) {
	key, err := svixKey(v.Secret)
	if err != nil {
		return "", fmt.Errorf("webhooks: invalid verify: secret: %w", err)
	}
	prefix := "svix-"
	if headers.Get("svix-id") == "" && headers.Get("svix-timestamp") == "" && headers.Get("svix-signature") == "" &&
		(headers.Get("webhook-id") != "" || headers.Get("webhook-timestamp") != "" || headers.Get("webhook-signature") != "") {
		prefix = "webhook-"
	}
	var vals [3]string
	for i, name := range [3]string{prefix + "id", prefix + "timestamp", prefix + "signature"} {
		if vals[i] = headers.Get(name); vals[i] == "" {
			return "", sigErr("missing header %s", name)
		}
	}
	id, ts, sigs := vals[0], vals[1], vals[2]
	if err := checkTimestamp(prefix+"timestamp", ts, now, v.tolerance()); err != nil {
		return "", err
	}
	want := macSHA256(key, []byte(id), []byte("."), []byte(ts), []byte("."), body)
	sawV1 := false
	matched := false
	// Senders list one signature per active secret while a secret is being
	// rotated; any one of them may be ours.
	for _, entry := range strings.Fields(sigs) {
		version, sig, ok := strings.Cut(entry, ",")
		if !ok || version != "v1" {
			continue // other versions (v1a is asymmetric) are not ours to check
		}
		sawV1 = true
		got, err := base64.StdEncoding.DecodeString(sig)
		if err != nil {
			continue
		}
		// Keep comparing after a match so the time taken does not reveal
		// which entry matched.
		if hmac.Equal(got, want) {
			matched = true
		}
	}
	if !sawV1 {
		return "", sigErr("malformed header %ssignature: no v1 signature", prefix)
	}
	if !matched {
		return "", sigErr("no signature matches")
	}
	return id, nil
}

// checkStripe verifies Stripe-Signature: t=<unix>,v1=<hex>[,v1=...][,v0=...].
func (v Verify) checkStripe(body []byte, headers http.Header) (ts string, sigs [][]byte, err error) {
	const name = "Stripe-Signature"
	header := headers.Get(name)
	if header == "" {
		return "", nil, sigErr("missing header %s", name)
	}
	sawV1 := false
	for _, item := range strings.Split(header, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok {
			return "", nil, sigErr("malformed header %s: expected key=value pairs", name)
		}
		switch k {
		case "t":
			if ts != "" {
				return "", nil, sigErr("malformed header %s: more than one t", name)
			}
			if ts = val; ts == "" {
				return "", nil, sigErr("malformed header %s: empty t", name)
			}
		case "v1":
			sawV1 = true
			if sig, err := hex.DecodeString(val); err == nil {
				sigs = append(sigs, sig)
			}
		}
	}
	if ts == "" {
		return "", nil, sigErr("malformed header %s: no timestamp t", name)
	}
	if !sawV1 {
		return "", nil, sigErr("malformed header %s: no v1 signature", name)
	}
	return ts, sigs, nil
}

// decodeSignature decodes an hmac-sha256 signature in encoding.
func decodeSignature(encoding, s string) ([]byte, bool) {
	if encoding == "base64" {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			if b, err := enc.DecodeString(s); err == nil {
				return b, true
			}
		}
		return nil, false
	}
	b, err := hex.DecodeString(s)
	return b, err == nil
}

func anyEqual(sigs [][]byte, want []byte) bool {
	matched := false
	for _, s := range sigs {
		if hmac.Equal(s, want) {
			matched = true
		}
	}
	return matched
}

func (v Verify) check(body []byte, headers http.Header, now time.Time) (string, error) {
	if err := v.Validate(); err != nil {
		return "", err
	}
	if headers == nil {
		headers = http.Header{}
	}
	switch v.Scheme {
	case SchemeSvix:
		return v.checkSvix(body, headers, now)

	case SchemeStripe:
		ts, sigs, err := v.checkStripe(body, headers)
		if err != nil {
			return "", err
		}
		if err := checkTimestamp("Stripe-Signature", ts, now, v.tolerance()); err != nil {
			return "", err
		}
		if !anyEqual(sigs, macSHA256([]byte(v.Secret), []byte(ts), []byte("."), body)) {
			return "", sigErr("no signature matches")
		}
		return "", nil

	case SchemeGitHub:
		const name = "X-Hub-Signature-256"
		header := headers.Get(name)
		if header == "" {
			return "", sigErr("missing header %s", name)
		}
		hexSig, ok := strings.CutPrefix(strings.TrimSpace(header), "sha256=")
		if !ok {
			return "", sigErr("malformed header %s: expected sha256=<hex>", name)
		}
		sig, err := hex.DecodeString(hexSig)
		if err != nil {
			return "", sigErr("malformed header %s: signature is not hex", name)
		}
		if !hmac.Equal(sig, macSHA256([]byte(v.Secret), body)) {
			return "", sigErr("no signature matches")
		}
		return headers.Get("X-GitHub-Delivery"), nil

	default: // SchemeHMACSHA256, the only one left after validate
		header := strings.TrimSpace(headers.Get(v.Header))
		if header == "" {
			return "", sigErr("missing header %s", v.Header)
		}
		encoded, ok := strings.CutPrefix(header, v.Prefix)
		if !ok {
			return "", sigErr("malformed header %s: expected the prefix %q", v.Header, v.Prefix)
		}
		encoding := v.Encoding
		if encoding == "" {
			encoding = "hex"
		}
		sig, ok := decodeSignature(encoding, encoded)
		if !ok {
			return "", sigErr("malformed header %s: signature is not %s", v.Header, encoding)
		}
		if !hmac.Equal(sig, macSHA256([]byte(v.Secret), body)) {
			return "", sigErr("no signature matches")
		}
		return "", nil
	}
}
