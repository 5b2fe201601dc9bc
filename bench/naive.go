package bench

import (
	"context"
	"fmt"

	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// NaivePass is the baseline the engine is measured against: the simplest loop
// over the same Source and Provisioner interfaces. It lists every approved
// ticket first, then takes them one at a time: parse, provision, write the
// result back. It keeps no state (no store, no lease, no audit), so it is
// neither crash-safe nor safe to run twice at once; it only shows what
// concurrency and streaming the listing buy. It returns the tickets closed.
func NaivePass(ctx context.Context, src isync.Source, prov isync.Provisioner) (int, error) {
	var all []isync.Ticket
	if err := src.Approved(ctx, func(t isync.Ticket) error {
		all = append(all, t)
		return nil
	}); err != nil {
		return 0, err
	}
	done := 0
	for _, t := range all {
		if ctx.Err() != nil {
			return done, ctx.Err()
		}
		r, err := naiveResult(ctx, prov, t)
		if err != nil {
			continue // retried on the next pass
		}
		if err := src.Report(ctx, t, r); err != nil {
			continue
		}
		done++
	}
	return done, nil
}

func naiveResult(ctx context.Context, prov isync.Provisioner, t isync.Ticket) (isync.Report, error) {
	marker := fmt.Sprintf("[image-request-bridge] %s request naive-%s", t.Key, t.ID)
	reject := func(reason string) isync.Report {
		return isync.Report{Outcome: isync.OutcomeRejected, Marker: marker, Summary: "Request rejected: " + reason,
			Fields: []isync.Field{{Name: "Result", Value: "rejected"}, {Name: "Reason", Value: reason}}}
	}
	if t.Invalid != "" {
		return reject(t.Invalid), nil
	}
	ref, err := prov.ParseImage(t.Image)
	if err != nil {
		return reject(isync.ReasonOf(err)), nil
	}
	res, err := prov.Provision(ctx, ref)
	if err != nil {
		if isync.ClassOf(err) == isync.ClassRejected {
			return reject(isync.ReasonOf(err)), nil
		}
		return isync.Report{}, err
	}
	return isync.Report{Outcome: isync.OutcomeProvisioned, Marker: marker, Summary: "Provisioned " + res.PullRef,
		Fields: []isync.Field{{Name: "Result", Value: "provisioned"}, {Name: "Pull", Value: res.PullRef}, {Name: "Repository", Value: res.RepoID}}}, nil
}
