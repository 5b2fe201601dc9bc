package chainguard

import (
	"context"
	"fmt"
	"slices"
	"strings"

	registry "chainguard.dev/sdk/proto/platform/registry/v1"

	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// validate checks img against the catalog and the organization's room before
// anything is changed: the image is in the catalog (else a rejection with the
// closest names), the tag is one of the catalog repository's active tags (else
// a rejection naming some), and the organization's entitlements have room for
// it (else blocked on quota). The catalog and entitlements come from caches
// (CatalogTTL, PlanTTL), so this costs no call in steady state. When the
// catalog cannot be read, the provisioning call itself is the judge.
func (p *Provisioner) validate(ctx context.Context, img isync.ImageRef) error {
	cat, err := p.catalog.get(ctx)
	if err != nil && isync.ClassOf(err) == isync.ClassRetryable {
		return err
	}
	if err != nil || len(cat.names) == 0 {
		return nil // the catalog listing is refused: CreateRepo itself is the judge
	}
	repo, known := cat.repos[img.Name]
	if !known {
		return isync.Rejected(unknownReason(img.Name, cat.names), nil)
	}
	if tags := repo.GetActiveTags(); len(tags) > 0 && !slices.Contains(tags, img.Tag) {
		return isync.Rejectedf("%s has no tag %s in the catalog; its tags include %s", img.Name, quote(img.Tag), tagSample(tags))
	}
	return p.room(repo)
}

// room reports, from the cached effective entitlements, whether the
// organization can take one more image of repo's tier.
func (p *Provisioner) room(repo *registry.Repo) error {
	eff, ok := p.effective.peek()
	if !ok {
		return nil // not read (a provisioning mode that needs no plan, or refused)
	}
	for _, ai := range eff.GetActiveImages() {
		if ai.GetName() == repo.GetName() {
			return nil // already entitled: no room needed
		}
	}
	tier := repo.GetCatalogTier().String()
	if q, ok := eff.GetQuota()[tier]; ok && q.GetMax() >= 0 && q.GetCurrent() >= q.GetMax() {
		return isync.Blocked(CauseQuota, fmt.Sprintf("the organization's %s tier quota is used up (%d of %d images); remove or swap one, or raise the quota", tier, q.GetCurrent(), q.GetMax()), nil)
	}
	// max_total_images: -1 is unlimited; 0 is read as "not reported".
	if max := eff.GetMaxTotalImages(); max > 0 && eff.GetPlan() != registry.Plan_CATALOG && int32(len(eff.GetActiveImages())) >= max {
		return isync.Blocked(CauseQuota, fmt.Sprintf("the organization's image quota is used up (%d of %d images); remove or swap one, or raise the plan", len(eff.GetActiveImages()), max), nil)
	}
	return nil
}

// tagSample names up to eight tags, the unversioned ones first.
func tagSample(tags []string) string {
	s := slices.Clone(tags)
	slices.SortStableFunc(s, func(a, b string) int {
		return strings.Compare(fmt.Sprint(!strings.HasPrefix(a, "latest")), fmt.Sprint(!strings.HasPrefix(b, "latest")))
	})
	if len(s) > 8 {
		s = append(s[:8], "…")
	}
	return strings.Join(s, ", ")
}

var _ isync.Planner = (*Provisioner)(nil)

// PlanProvision says, with reads only, what Provision would do for img: the
// call it would make, or the rejection or block validation finds first (for
// `bridge sync --dry-run`).
func (p *Provisioner) PlanProvision(ctx context.Context, img isync.ImageRef) (string, error) {
	method, err := p.method(ctx)
	if err != nil {
		return "", err
	}
	if err := p.validate(ctx, img); err != nil {
		return "", err
	}
	if id, err := p.findRepo(ctx, img.Name); err == nil && id != "" {
		return fmt.Sprintf("already present as repository %s: nothing to create, pull as %s", id, p.pullRef(img)), nil
	}
	if method == opAddEntitlements {
		return fmt.Sprintf("Entitlements.AddEntitlementImages %s into %s, pull as %s", img.Name, p.opts.OrgID, p.pullRef(img)), nil
	}
	return fmt.Sprintf("Registry.CreateRepo %s (sync source %s, prevent_existing) in %s, pull as %s", img.Name, img.Name, p.opts.OrgID, p.pullRef(img)), nil
}

var _ isync.TierReader = (*Provisioner)(nil)

// CatalogTier returns name's catalog tier ("BASE", "APPLICATION", "FIPS",
// "AI", …) from the cached catalog listing, or "" when the image is not in
// the catalog (it is then rejected with suggestions).
func (p *Provisioner) CatalogTier(ctx context.Context, name string) (string, error) {
	cat, err := p.catalog.get(ctx)
	if err != nil {
		return "", err
	}
	if r, ok := cat.repos[name]; ok {
		return r.GetCatalogTier().String(), nil
	}
	return "", nil
}
