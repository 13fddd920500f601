// Package demoapp is Herald's example app, "demo": a few functions that show
// triggers, steps, retries, failure handling and crons. Run it against a
// running Herald with `go run ./examples/demo`, or in-process with
// `herald dev --examples` (what `make dev` does).
package demoapp

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/workflow"

	"github.com/herald-run/herald"
	"github.com/herald-run/herald/step"
)

// AppID is the example app's id.
const AppID = "demo"

// Signup is the data of a demo/user.signup event.
type Signup struct {
	UserID string `json:"userId"`
	Email  string `json:"email"`
	Plan   string `json:"plan"`
	// TimeoutS is how long onboarding waits for the activation; default 1h.
	TimeoutS int `json:"timeout_s"`
}

// WelcomeResult is welcome-email's output.
type WelcomeResult struct {
	Sent  bool   `json:"sent"`
	Email string `json:"email"`
}

// SendWelcome pretends to send the welcome email.
func SendWelcome(ctx context.Context, email string) (bool, error) {
	if email == "" {
		return false, herald.NonRetriable(errors.New("the signup has no email address"))
	}
	activity.GetLogger(ctx).Info("welcome email sent", "email", email)
	return true, nil
}

// SendFollowUp pretends to send the follow-up email.
func SendFollowUp(ctx context.Context, email string) (bool, error) {
	activity.GetLogger(ctx).Info("follow-up email sent", "email", email)
	return true, nil
}

// WelcomeEmail runs on every signup: a welcome email, a pause, a follow-up.
var WelcomeEmail = herald.NewFunction(herald.FunctionOpts{
	ID:       "welcome-email",
	Name:     "Welcome email",
	Triggers: []herald.Trigger{herald.OnEvent("demo/user.signup")},
}, func(ctx workflow.Context, in herald.Input[Signup]) (WelcomeResult, error) {
	sent, err := step.Run[bool](ctx, "send-welcome", SendWelcome, in.Event.Data.Email)
	if err != nil {
		return WelcomeResult{}, err
	}
	if err := step.Sleep(ctx, "pause", time.Second); err != nil {
		return WelcomeResult{}, err
	}
	if _, err := step.Run[bool](ctx, "follow-up", SendFollowUp, in.Event.Data.Email); err != nil {
		return WelcomeResult{}, err
	}
	return WelcomeResult{Sent: sent, Email: in.Event.Data.Email}, nil
})

// Payment is the data of a demo/payment.requested event.
type Payment struct {
	OrderID    string `json:"orderId"`
	Amount     int    `json:"amount"`
	FailAlways bool   `json:"fail_always"`
}

// ChargeResult is flaky-charge's output.
type ChargeResult struct {
	Charged  bool `json:"charged"`
	Attempts int  `json:"attempts"`
}

// Charge fails on its first two attempts (a flaky payment provider), then
// succeeds; with failAlways it declines for good.
func Charge(ctx context.Context, p Payment) (ChargeResult, error) {
	attempt := int(activity.GetInfo(ctx).Attempt)
	if p.FailAlways {
		return ChargeResult{}, herald.NonRetriable(fmt.Errorf("card declined for order %s", p.OrderID))
	}
	if attempt <= 2 {
		return ChargeResult{}, fmt.Errorf("payment provider timed out (attempt %d)", attempt)
	}
	return ChargeResult{Charged: true, Attempts: attempt}, nil
}

// FlakyCharge shows retries (the charge succeeds on its third attempt) and
// failure handling: with fail_always the charge is declined, the run fails
// and OnFailure emits demo/payment.failed.
var FlakyCharge = herald.NewFunction(herald.FunctionOpts{
	ID:       "flaky-charge",
	Name:     "Flaky charge",
	Triggers: []herald.Trigger{herald.OnEvent("demo/payment.requested")},
	OnFailure: func(ctx workflow.Context, f herald.Failure) error {
		_, err := step.SendEvent(ctx, "report-failure", herald.Event{
			Name: "demo/payment.failed",
			Data: map[string]any{"run_id": f.RunID, "event_id": f.Event.ID, "error": f.Error},
		})
		return err
	},
}, func(ctx workflow.Context, in herald.Input[Payment]) (ChargeResult, error) {
	return step.Run[ChargeResult](ctx, "charge", Charge, in.Event.Data)
})

// Report is nightly-report's output.
type Report struct {
	Generated string `json:"generated"`
}

// BuildReport pretends to build the nightly report.
func BuildReport(ctx context.Context) (Report, error) {
	return Report{Generated: time.Now().UTC().Format(time.RFC3339)}, nil
}

// NightlyReport runs every day at 03:00 UTC.
var NightlyReport = herald.NewFunction(herald.FunctionOpts{
	ID:       "nightly-report",
	Name:     "Nightly report",
	Triggers: []herald.Trigger{herald.OnCron("TZ=UTC 0 3 * * *")},
}, func(ctx workflow.Context, in herald.Input[map[string]any]) (Report, error) {
	return step.Run[Report](ctx, "build-report", BuildReport)
})

// Activation is onboarding's output.
type Activation struct {
	Activated bool `json:"activated"`
}

// Onboarding waits for a pro user's activation. Deleting the user cancels it.
var Onboarding = herald.NewFunction(herald.FunctionOpts{
	ID:       "onboarding",
	Name:     "Onboarding",
	Triggers: []herald.Trigger{herald.OnEvent("demo/user.signup", `event.data.plan == "pro"`)},
	CancelOn: []herald.CancelOn{{Event: "demo/user.deleted", Match: "data.userId"}},
}, func(ctx workflow.Context, in herald.Input[Signup]) (Activation, error) {
	timeout := time.Hour
	if in.Event.Data.TimeoutS > 0 {
		timeout = time.Duration(in.Event.Data.TimeoutS) * time.Second
	}
	_, activated, err := step.WaitForEvent[map[string]any](ctx, "await-activation", step.WaitOpts{
		Event:   "demo/user.activated",
		Match:   "data.userId",
		Timeout: timeout,
	})
	return Activation{Activated: activated}, err
})

// DocUpdate is the data of a demo/doc.updated event.
type DocUpdate struct {
	DocID string `json:"docId"`
	Seq   int    `json:"seq"`
}

// ReindexResult is reindex's output: the update it indexed.
type ReindexResult struct {
	DocID string `json:"docId"`
	Seq   int    `json:"seq"`
}

// IndexDoc pretends to reindex a document.
func IndexDoc(ctx context.Context, u DocUpdate) (ReindexResult, error) {
	activity.GetLogger(ctx).Info("document reindexed", "doc", u.DocID, "seq", u.Seq)
	return ReindexResult(u), nil
}

// Reindex is debounced: a burst of updates to one document reindexes it
// once, two seconds after the last update, with that update.
var Reindex = herald.NewFunction(herald.FunctionOpts{
	ID:       "reindex",
	Name:     "Reindex document",
	Triggers: []herald.Trigger{herald.OnEvent("demo/doc.updated")},
	Debounce: &herald.Debounce{Period: 2 * time.Second, Key: "event.data.docId"},
}, func(ctx workflow.Context, in herald.Input[DocUpdate]) (ReindexResult, error) {
	return step.Run[ReindexResult](ctx, "index", IndexDoc, in.Event.Data)
})

// ImportResult is import-rows' output.
type ImportResult struct {
	Count int `json:"count"`
}

// InsertRows pretends to insert rows in one statement.
func InsertRows(ctx context.Context, rows []map[string]any) (int, error) {
	activity.GetLogger(ctx).Info("rows inserted", "count", len(rows))
	return len(rows), nil
}

// ImportRows is batched: it inserts up to ten rows per run, or whatever
// arrived within two seconds of the first.
var ImportRows = herald.NewFunction(herald.FunctionOpts{
	ID:       "import-rows",
	Name:     "Import rows",
	Triggers: []herald.Trigger{herald.OnEvent("demo/import.row")},
	Batch:    &herald.Batch{MaxSize: 10, Timeout: 2 * time.Second},
}, func(ctx workflow.Context, in herald.Input[map[string]any]) (ImportResult, error) {
	rows := make([]map[string]any, len(in.Events))
	for i, e := range in.Events {
		rows[i] = e.Data
	}
	n, err := step.Run[int](ctx, "insert", InsertRows, rows)
	return ImportResult{Count: n}, err
})

// SMS is the data of a demo/sms.requested event.
type SMS struct {
	UserID string `json:"userId"`
	Text   string `json:"text"`
}

// SendSMSResult is send-sms' output.
type SendSMSResult struct {
	Sent bool `json:"sent"`
}

// DeliverSMS pretends to send a text message.
func DeliverSMS(ctx context.Context, m SMS) (bool, error) {
	activity.GetLogger(ctx).Info("sms sent", "user", m.UserID)
	return true, nil
}

// SendSMS is rate limited: at most one text per user every ten seconds; the
// others are skipped (their runs are recorded Skipped).
var SendSMS = herald.NewFunction(herald.FunctionOpts{
	ID:        "send-sms",
	Name:      "Send SMS",
	Triggers:  []herald.Trigger{herald.OnEvent("demo/sms.requested")},
	RateLimit: &herald.RateLimit{Limit: 1, Period: 10 * time.Second, Key: "event.data.userId"},
}, func(ctx workflow.Context, in herald.Input[SMS]) (SendSMSResult, error) {
	sent, err := step.Run[bool](ctx, "deliver", DeliverSMS, in.Event.Data)
	return SendSMSResult{Sent: sent}, err
})

// Prompt is the data of a demo/llm.requested event.
type Prompt struct {
	Prompt string `json:"prompt"`
}

// Completion is call-llm's output.
type Completion struct {
	Text string `json:"text"`
}

// Complete pretends to call a language model, which takes a second.
func Complete(ctx context.Context, p Prompt) (Completion, error) {
	select {
	case <-time.After(time.Second):
	case <-ctx.Done():
		return Completion{}, ctx.Err()
	}
	return Completion{Text: "echo: " + p.Prompt}, nil
}

// CallLLM holds at most two model calls at once, however many requests
// arrive; the others wait for a slot in arrival order.
var CallLLM = herald.NewFunction(herald.FunctionOpts{
	ID:          "call-llm",
	Name:        "Call LLM",
	Triggers:    []herald.Trigger{herald.OnEvent("demo/llm.requested")},
	Concurrency: []herald.Concurrency{{Limit: 2}},
}, func(ctx workflow.Context, in herald.Input[Prompt]) (Completion, error) {
	return step.Run[Completion](ctx, "complete", Complete, in.Event.Data)
})

// ClerkUser is the data of a clerk/user.created event: Clerk's user object,
// as a webhook source with the svix preset and the transform
// {"name": "clerk/" + body.type, "data": body.data, "id": headers["svix-id"]}
// delivers it (see the README's Webhooks section).
type ClerkUser struct {
	ID             string `json:"id"`
	EmailAddresses []struct {
		EmailAddress string `json:"email_address"`
	} `json:"email_addresses"`
}

// ClerkUserRecord is clerk-user-created's output.
type ClerkUserRecord struct {
	UserID string `json:"userId"`
	Email  string `json:"email"`
}

// RecordUser pretends to save a new Clerk user in the app's database.
func RecordUser(ctx context.Context, u ClerkUser) (ClerkUserRecord, error) {
	if u.ID == "" {
		return ClerkUserRecord{}, herald.NonRetriable(errors.New("the Clerk user has no id"))
	}
	rec := ClerkUserRecord{UserID: u.ID}
	if len(u.EmailAddresses) > 0 {
		rec.Email = u.EmailAddresses[0].EmailAddress
	}
	activity.GetLogger(ctx).Info("user recorded", "userId", rec.UserID)
	return rec, nil
}

// ClerkUserCreated records every user Clerk reports through its webhook.
var ClerkUserCreated = herald.NewFunction(herald.FunctionOpts{
	ID:       "clerk-user-created",
	Name:     "Clerk user created",
	Triggers: []herald.Trigger{herald.OnEvent("clerk/user.created")},
}, func(ctx workflow.Context, in herald.Input[ClerkUser]) (ClerkUserRecord, error) {
	return step.Run[ClerkUserRecord](ctx, "record-user", RecordUser, in.Event.Data)
})

// Functions are the demo app's functions.
func Functions() []*herald.Function {
	return []*herald.Function{WelcomeEmail, FlakyCharge, NightlyReport, Onboarding, Reindex, ImportRows, SendSMS, CallLLM, ClerkUserCreated}
}

// Register adds the demo app's functions and steps to w.
func Register(w *herald.Worker) error {
	if err := w.Register(Functions()...); err != nil {
		return err
	}
	return w.RegisterSteps(SendWelcome, SendFollowUp, Charge, BuildReport, IndexDoc, InsertRows, DeliverSMS, Complete, RecordUser)
}
