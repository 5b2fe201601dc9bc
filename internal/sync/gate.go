package sync

import (
	"context"

	"github.com/chainguard-dev/image-request-bridge/internal/policy"
)

// decide returns the policy decision for a ticket: the strictest over its
// images. Images that do not parse count as the default tier: they are
// rejected later with their own reason.
func (e *Engine) decide(ctx context.Context, t Ticket) (policy.Decision, error) {
	p := e.o.Policy
	if p == nil {
		return policy.Decision{Tier: policy.Approval}, nil
	}
	tiers, _ := e.prov.(TierReader)
	var ds []policy.Decision
	for _, raw := range SplitImages(t.Image) {
		ref, err := e.prov.ParseImage(raw)
		if err != nil {
			continue
		}
		in := policy.Input{Image: ref.Name, Fields: t.Fields}
		if tiers != nil {
			tier, err := tiers.CatalogTier(ctx, ref.Name)
			if err != nil {
				return policy.Decision{}, err
			}
			in.CatalogTier = tier
		}
		ds = append(ds, p.Decide(in))
	}
	if len(ds) == 0 {
		return p.Decide(policy.Input{Fields: t.Fields}), nil
	}
	return policy.Strictest(ds...), nil
}

// gate applies the policy to a claimed ticket before anything is provisioned:
// deny rejects; security needs an approver in the security group; auto and
// approval go on. It records the tier, the rule and the approver on the
// ticket, for the note and the audit row.
func (w *worker) gate(ctx context.Context) (ok bool, d Decision, err error) {
	if w.e.o.Policy == nil {
		return true, "", nil
	}
	// The reads (catalog tiers, the approvers) are made under the lease:
	// renewed first, each bounded like a re-read.
	if err := w.renew(); err != nil {
		return false, "", err
	}
	rctx, cancel := w.bounded(ctx, w.e.o.ReadTimeout)
	defer cancel()
	dec, err := w.e.decide(rctx, w.t)
	if err != nil {
		return false, "", err
	}
	if w.t.Fields == nil {
		w.t.Fields = map[string]string{}
	}
	w.t.Fields[policyField] = dec.String()
	switch dec.Tier {
	case policy.Deny:
		reason := dec.Reason
		if reason == "" {
			reason = "this image is not allowed by the organization's policy"
		}
		d, err := w.reject(ctx, Rejectedf("%s (policy rule %q)", reason, dec.Rule))
		return false, d, err
	case policy.Security:
		checker, ok := w.src.(ApprovalChecker)
		if !ok {
			d, err := w.reject(ctx, Rejectedf("the policy requires a security review (rule %q), which the bridge cannot verify for %s tickets", dec.Rule, w.src.Name()))
			return false, d, err
		}
		group := w.e.o.Policy.SecurityGroup
		approver, err := checker.ApprovedBy(rctx, w.t, group)
		if err != nil {
			return false, "", err
		}
		if approver == "" {
			d, err := w.reject(ctx, Rejectedf("the policy requires approval by a member of %q (rule %q), and no approver of this request is in that group; ask for a security review", group, dec.Rule))
			return false, d, err
		}
		w.t.Approver = approver
	case policy.Auto:
		if !w.t.Open && w.t.Approver == "" {
			w.t.Approver = "auto-approved by policy"
		}
	}
	return true, "", nil
}

// policyField carries the policy decision in Ticket.Fields for notes.
const policyField = "approval tier"

// autoCandidate reports whether a ticket awaiting approval may be acted on
// (the policy says auto). It reads only: a ticket that may not be acted on is
// left entirely untouched, with no store row.
func (e *Engine) autoCandidate(ctx context.Context, t Ticket) bool {
	if !t.AwaitingApproval || !e.o.Policy.HasAuto() {
		return false
	}
	rctx, cancel := e.readCtx(ctx)
	defer cancel()
	d, err := e.decide(rctx, t)
	if err != nil {
		e.log.Warn().Str("ticket", t.Key).Err(err).Msg("cannot decide the policy tier of a request awaiting approval; leaving it")
		return false
	}
	return d.Tier == "auto"
}
