package chainguard

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// Blocking causes: stable keys, one ticket note per cause.
const (
	CausePermissionDenied = "chainguard:permission_denied"
	CauseUnauthenticated  = "chainguard:unauthenticated"
	CauseQuota            = "chainguard:quota"
	CausePrecondition     = "chainguard:precondition"
	CauseUnsupported      = "chainguard:unsupported"
	// CauseCredentials: the bridge cannot obtain a token at all (a token
	// file it cannot read, an identity token the issuer refuses).
	CauseCredentials = "chainguard:credentials"
	// CauseUnavailable: the API is considered down (see CircuitPolicy). It
	// is the cause of a Retryable error, not of a block: nothing is noted on
	// the ticket, which simply waits.
	CauseUnavailable = "chainguard:unavailable"
)

// capabilities names what each call needs, for PERMISSION_DENIED reasons.
var capabilities = map[string]string{
	opCreateRepo:      "repo.create and repo.list on the organization (the editor or owner role, or a custom role with them)",
	opListRepos:       "repo.list on the organization (the viewer role or higher)",
	opEffective:       "registry.entitlements.list on the organization (the viewer role or higher)",
	opAddEntitlements: "registry.entitlements.images.add on the organization (the owner role, or a custom role with it)",
}

// classify turns a failed call into an error the engine can act on. op is the
// call ("CreateRepo"), subject what it was about (an image, the organization).
// Unknown-image answers are handled by Provisioner.unknownImage, not here.
func (p *Provisioner) classify(op, subject string, err error) error {
	wrapped := fmt.Errorf("chainguard %s %s: %w", op, subject, err)
	var open *isync.Error
	if errors.As(err, &open) && open.Cause == CauseUnavailable {
		return &isync.Error{Class: isync.ClassRetryable, Cause: CauseUnavailable, Reason: open.Reason, Err: wrapped}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return isync.Retryable(wrapped)
	}
	var ce *credError
	if errors.As(err, &ce) {
		if ce.transient {
			return isync.Retryable(wrapped)
		}
		return isync.Blocked(CauseCredentials, "Chainguard credentials: "+ce.reason, wrapped)
	}
	st := status.Convert(err)
	switch st.Code() {
	case codes.PermissionDenied:
		return isync.Blocked(CausePermissionDenied,
			fmt.Sprintf("Chainguard denied %s: the bridge's identity needs %s", op, capabilities[op]), wrapped)
	case codes.Unauthenticated:
		return isync.Blocked(CauseUnauthenticated,
			"Chainguard rejected the bridge's token (expired or invalid): configure a fresh token or an assumed identity", wrapped)
	case codes.ResourceExhausted:
		if throttled(st.Message()) {
			return isync.Retryable(wrapped)
		}
		return isync.Blocked(CauseQuota, fmt.Sprintf(
			"the organization has no room for %s (image quota of its plan, or the limit of 2,500 repositories): %s; free capacity or raise the quota",
			subject, brief(st.Message())), wrapped)
	case codes.FailedPrecondition:
		return isync.Blocked(CausePrecondition, p.preconditionReason(op, subject, st.Message()), wrapped)
	case codes.NotFound, codes.InvalidArgument:
		return isync.Blocked(CausePrecondition, fmt.Sprintf(
			"Chainguard answered %s to %s for %s: check chainguard.org_id (%s)", st.Code(), op, subject, p.opts.OrgID), wrapped)
	case codes.Unimplemented:
		return isync.Blocked(CauseUnsupported, fmt.Sprintf(
			"the Chainguard API at %s does not offer %s: check chainguard.api_url", p.opts.APIURL, op), wrapped)
	default:
		// UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL, UNKNOWN, ABORTED and the
		// rest: transient, or at least not the ticket's fault.
		return isync.Retryable(wrapped)
	}
}

func (p *Provisioner) preconditionReason(op, subject, msg string) string {
	switch op {
	case opAddEntitlements:
		return fmt.Sprintf("Chainguard refused to add %s to the organization's entitlement: %s; if the organization has a catalog plan set chainguard.provision to %s or %s",
			subject, brief(msg), ModeAuto, ModeRepo)
	case opCreateRepo:
		return fmt.Sprintf("Chainguard refused to create the %s repository: %s; check the organization's entitlements (the image's catalog tier)", subject, brief(msg))
	default:
		return fmt.Sprintf("Chainguard refused %s: %s", op, brief(msg))
	}
}

// throttled: does a RESOURCE_EXHAUSTED message describe rate limiting rather
// than quota?
func throttled(msg string) bool {
	msg = strings.ToLower(msg)
	return strings.Contains(msg, "rate limit") || strings.Contains(msg, "too many requests") || strings.Contains(msg, "throttl")
}

// brief shortens a server message for a reason.
func brief(msg string) string {
	const max = 200
	msg = strings.Join(strings.Fields(msg), " ")
	if len(msg) > max {
		return msg[:max] + "..."
	}
	return msg
}
