package sync

import (
	"errors"
	"fmt"
)

// Class tells the engine what to do with an error.
type Class int

const (
	// ClassRetryable: transient (network, 5xx, 429, UNAVAILABLE). Retry with
	// backoff; nothing is written to the ticket.
	ClassRetryable Class = iota
	// ClassRejected: the request itself cannot be served (bad or unknown image,
	// policy). Close the ticket as incomplete with the reason.
	ClassRejected
	// ClassBlocked: the bridge cannot act (PERMISSION_DENIED, UNAUTHENTICATED,
	// quota, the 2,500-repo cap). Keep the ticket open, note it once per cause,
	// retry with backoff.
	ClassBlocked
)

func (c Class) String() string {
	switch c {
	case ClassRejected:
		return "rejected"
	case ClassBlocked:
		return "blocked"
	default:
		return "retryable"
	}
}

// ErrConflict is returned by Store.Save when the record changed underneath.
var ErrConflict = errors.New("store: record changed concurrently")

// Error is an error with a Class. Reason is written for the requester (it ends up
// in the ticket); Cause is a stable key for blocked errors ("chainguard:
// permission_denied") so a cause is noted once however often it recurs.
type Error struct {
	Class  Class
	Cause  string
	Reason string
	Err    error
}

func (e *Error) Error() string {
	switch {
	case e.Err != nil && e.Reason != "" && e.Err.Error() != e.Reason:
		return e.Reason + ": " + e.Err.Error()
	case e.Err != nil:
		return e.Err.Error()
	default:
		return e.Reason
	}
}

func (e *Error) Unwrap() error { return e.Err }

// Rejected returns a ClassRejected error with a reason the requester understands.
func Rejected(reason string, err error) error {
	return &Error{Class: ClassRejected, Reason: reason, Err: err}
}

// Rejectedf is Rejected with a formatted reason and no wrapped error.
func Rejectedf(format string, a ...any) error {
	return &Error{Class: ClassRejected, Reason: fmt.Sprintf(format, a...)}
}

// Blocked returns a ClassBlocked error. cause is a stable key; reason explains
// what an admin must do.
func Blocked(cause, reason string, err error) error {
	return &Error{Class: ClassBlocked, Cause: cause, Reason: reason, Err: err}
}

// Retryable marks err as transient.
func Retryable(err error) error {
	if err == nil {
		return nil
	}
	return &Error{Class: ClassRetryable, Err: err}
}

// ClassOf returns the class of the first *Error in err's chain; an unclassified
// error is retryable, the safe default (nothing is written to the ticket).
func ClassOf(err error) Class {
	var e *Error
	if errors.As(err, &e) {
		return e.Class
	}
	return ClassRetryable
}

// ReasonOf returns the requester-facing reason of err, or err's text.
func ReasonOf(err error) string {
	var e *Error
	if errors.As(err, &e) && e.Reason != "" {
		return e.Reason
	}
	return err.Error()
}

// CauseOf returns the blocking cause key of err, or "" if it has none.
func CauseOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Cause
	}
	return ""
}
