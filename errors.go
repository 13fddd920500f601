package herald

import (
	"errors"
	"fmt"
	"time"
)

// ErrNonRetriable matches, with errors.Is, every error made by NonRetriable.
var ErrNonRetriable = errors.New("herald: non-retriable")

// NonRetriableError stops a step's retries: returned from a step function
// (possibly wrapped), the step fails at once and step.Run returns the error.
type NonRetriableError struct {
	Err error
}

func (e *NonRetriableError) Error() string {
	if e.Err == nil {
		return "non-retriable error"
	}
	return e.Err.Error()
}

// Unwrap returns the wrapped error.
func (e *NonRetriableError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrNonRetriable) true.
func (e *NonRetriableError) Is(target error) bool { return target == ErrNonRetriable }

// NonRetriable marks err so the step that returns it is not retried. A nil
// err gives nil.
func NonRetriable(err error) error {
	if err == nil {
		return nil
	}
	return &NonRetriableError{Err: err}
}

// RetryAfterError asks for the step's next attempt after Delay instead of the
// exponential backoff. The step's retry limit still applies.
type RetryAfterError struct {
	Err   error
	Delay time.Duration
}

func (e *RetryAfterError) Error() string {
	msg := "retry requested"
	if e.Err != nil {
		msg = e.Err.Error()
	}
	return fmt.Sprintf("%s (retry after %s)", msg, e.Delay)
}

// Unwrap returns the wrapped error.
func (e *RetryAfterError) Unwrap() error { return e.Err }

// RetryAfter marks err so the step that returns it is retried after d. A nil
// err gives nil; d below one second is raised to one second.
func RetryAfter(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	if d < time.Second {
		d = time.Second
	}
	return &RetryAfterError{Err: err, Delay: d}
}
