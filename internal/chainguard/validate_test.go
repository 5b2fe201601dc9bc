package chainguard

import (
	"testing"

	registry "chainguard.dev/sdk/proto/platform/registry/v1"

	fake "github.com/chainguard-dev/image-request-bridge/internal/fake/chainguard"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// A tag the catalog does not offer is rejected before anything changes.
func TestValidateTag(t *testing.T) {
	srv, p := setup(t, nil)
	_, err := p.Provision(ctx(t), ref("python", "2.7"))
	wantClass(t, err, isync.ClassRejected, "", `python has no tag "2.7"`, "latest-dev", "3.12")
	if n := srv.CountCalls("CreateRepo"); n != 0 {
		t.Fatalf("%d CreateRepo calls for a tag the catalog lacks", n)
	}
	if _, err := p.Provision(ctx(t), ref("python", "3.12-dev")); err != nil {
		t.Fatalf("an offered tag: %v", err)
	}
}

// A per-tier quota used up blocks (one note, retried later) without a call;
// an image already entitled needs no room.
func TestValidateRoom(t *testing.T) {
	srv, p := setup(t, func(o *Options) { o.Mode = ModeAuto }, fake.WithPlan(registry.Plan_PER_IMAGE), fake.WithTierQuota(registry.CatalogTier_APPLICATION, 1))
	if _, err := p.Provision(ctx(t), ref("nginx", "latest")); err != nil {
		t.Fatal(err)
	}
	p.forgetPlan() // the entitlements changed: read them again
	_, err := p.Provision(ctx(t), ref("redis", "latest"))
	wantClass(t, err, isync.ClassBlocked, CauseQuota, "APPLICATION tier quota is used up (1 of 1")
	if n := srv.CountCalls("AddEntitlementImages"); n != 1 {
		t.Fatalf("%d AddEntitlementImages calls, want 1 (the quota check needs none)", n)
	}
	if res, err := p.Provision(ctx(t), ref("nginx", "latest-dev")); err != nil || !res.AlreadyPresent {
		t.Fatalf("an entitled image with the quota full: %+v %v", res, err)
	}
	// The organization's total (max_total_images, here the sum of its tier
	// quotas) is used up too.
	_, err = p.Provision(ctx(t), ref("python", "latest"))
	wantClass(t, err, isync.ClassBlocked, CauseQuota, "image quota is used up (1 of 1")
}
