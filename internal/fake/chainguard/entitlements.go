package chainguard

import (
	"context"
	"fmt"
	"slices"

	registry "chainguard.dev/sdk/proto/platform/registry/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// entitlementsServer implements the Entitlements service's calls the bridge uses.
type entitlementsServer struct {
	registry.UnimplementedEntitlementsServer
	s *Server
}

// EntitlementID is the UIDP of the organization's single entitlement, the one
// AddEntitlementImagesRequest.Id may name.
func (s *Server) EntitlementID() string { return s.orgID + "/" + shortHash("entitlement/"+s.orgID) }

// GetEffectiveEntitlements reports the organization's plan: active tiers and
// max_total_images -1 for CATALOG; entitled images and per-tier quota for
// PER_IMAGE and STARTER.
func (e *entitlementsServer) GetEffectiveEntitlements(_ context.Context, req *registry.GetEffectiveEntitlementsRequest) (*registry.GetEffectiveEntitlementsResponse, error) {
	s := e.s
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reconcileLocked()
	if err := s.checkParent("parent", req.GetParent()); err != nil {
		return nil, err
	}
	resp := &registry.GetEffectiveEntitlementsResponse{Plan: s.plan}
	if s.plan == registry.Plan_CATALOG {
		resp.ActiveTiers = slices.Clone(s.activeTiers)
		resp.MaxTotalImages, resp.SwapQuota = -1, -1
		return resp, nil
	}
	resp.Quota = map[string]*registry.ImageQuota{}
	for tier, max := range s.quota {
		resp.Quota[tier.String()] = &registry.ImageQuota{Current: int32(s.usedLocked(tier)), Max: int32(max)}
		resp.MaxTotalImages += int32(max)
	}
	for _, img := range s.entitled {
		resp.ActiveImages = append(resp.ActiveImages, proto.Clone(img).(*registry.EntitledImage))
	}
	return resp, nil
}

// AddEntitlementImages entitles catalog images (exact names) on a PER_IMAGE or
// STARTER plan. Names already entitled are skipped, not an error; the response
// lists only the images added. The whole request fails if one name is unknown
// or a tier's quota would be exceeded. Each added image's repository appears
// in the organization after WithSyncDelay (default: before this call returns).
// On a CATALOG plan it answers FAILED_PRECONDITION.
func (e *entitlementsServer) AddEntitlementImages(_ context.Context, req *registry.AddEntitlementImagesRequest) (*registry.AddEntitlementImagesResponse, error) {
	s := e.s
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reconcileLocked()
	if err := s.checkEntitlementTarget(req); err != nil {
		return nil, err
	}
	if s.plan == registry.Plan_CATALOG {
		return nil, status.Error(codes.FailedPrecondition, "organization has a catalog entitlement: its tiers are already included, add repositories with CreateRepo")
	}
	if len(req.GetImageNames()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "image_names is required")
	}
	var add []CatalogImage
	need := map[registry.CatalogTier]int{}
	for _, name := range req.GetImageNames() {
		if !namePattern.MatchString(name) {
			return nil, status.Errorf(codes.InvalidArgument, "invalid image name %q", name)
		}
		img, ok := s.lookupName(name)
		if !ok {
			return nil, status.Errorf(codes.NotFound, "catalog image %q not found", name)
		}
		if s.entitledLocked(name) != nil || slices.ContainsFunc(add, func(a CatalogImage) bool { return a.Name == name }) {
			continue
		}
		add = append(add, img)
		need[img.Tier]++
	}
	for tier, n := range need {
		if used, max := s.usedLocked(tier), s.quota[tier]; used+n > max {
			return nil, status.Errorf(codes.ResourceExhausted, "no entitlement with capacity for %d more %s image(s): %d of %d in use", n, tier, used, max)
		}
	}
	if len(s.repos)+len(s.pending)+len(add) > s.maxRepos {
		return nil, s.capError()
	}
	resp := &registry.AddEntitlementImagesResponse{Parent: s.orgID}
	for _, img := range add {
		ent := s.entitleLocked(img)
		resp.Images = append(resp.Images, proto.Clone(ent).(*registry.EntitledImage))
	}
	s.reconcileLocked()
	return resp, nil
}

func (s *Server) checkEntitlementTarget(req *registry.AddEntitlementImagesRequest) error {
	switch t := req.GetEntitlement().(type) {
	case *registry.AddEntitlementImagesRequest_Parent:
		return s.checkParent("parent", t.Parent)
	case *registry.AddEntitlementImagesRequest_Id:
		switch {
		case t.Id == s.EntitlementID():
			return nil
		case s.inOrg(t.Id):
			return status.Errorf(codes.NotFound, "entitlement %q not found", t.Id)
		default:
			return errNoCapability
		}
	default:
		return status.Error(codes.InvalidArgument, "parent or id is required")
	}
}

// entitleLocked records img as entitled and schedules its repository.
func (s *Server) entitleLocked(img CatalogImage) *registry.EntitledImage {
	typ := registry.Entitlement_PRODUCTION
	if s.plan == registry.Plan_STARTER {
		typ = registry.Entitlement_STARTER
	}
	ent := &registry.EntitledImage{Id: CatalogID(img.Name), Name: img.Name, CatalogTier: img.Tier, Type: typ}
	s.entitled = append(s.entitled, ent)
	if _, dup := s.entByName[img.Name]; !dup {
		s.entByName[img.Name] = ent
	}
	s.entByTier[img.Tier]++
	s.pending = append(s.pending, pendingRepo{image: img, due: s.now().Add(s.syncDelay)})
	return ent
}

func (s *Server) entitledLocked(name string) *registry.EntitledImage {
	return s.entByName[name]
}

func (s *Server) usedLocked(tier registry.CatalogTier) int {
	return s.entByTier[tier]
}

// ListEntitlementImages lists the images entitled on a PER_IMAGE or STARTER
// plan (empty on CATALOG, whose access comes from its tiers).
func (e *entitlementsServer) ListEntitlementImages(_ context.Context, f *registry.EntitlementImagesFilter) (*registry.EntitlementImagesList, error) {
	s := e.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkParent("parent", f.GetParent()); err != nil {
		return nil, err
	}
	out := &registry.EntitlementImagesList{}
	for _, img := range s.entitled {
		out.Images = append(out.Images, &registry.EntitlementImage{Id: img.GetId(), Tier: img.GetCatalogTier(), Name: img.GetName()})
	}
	return out, nil
}

// Entitle entitles catalog images directly, as if they had been added before
// (PER_IMAGE and STARTER plans; quotas are not checked).
func (s *Server) Entitle(names ...string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, name := range names {
		img, ok := s.lookupName(name)
		if !ok {
			return fmt.Errorf("catalog image %q not found", name)
		}
		if s.entitledLocked(name) == nil {
			s.entitleLocked(img)
		}
	}
	s.reconcileLocked()
	return nil
}
