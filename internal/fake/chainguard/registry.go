package chainguard

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"

	registry "chainguard.dev/sdk/proto/platform/registry/v1"
	"chainguard.dev/sdk/uidp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// namePattern is the API's repository name rule (the SDK's
// validation.ValidateName).
var namePattern = regexp.MustCompile(`^[a-z0-9 ._-]{1,}$`)

// registryServer implements the Registry service's repository and tag calls.
type registryServer struct {
	registry.UnimplementedRegistryServer
	s *Server
}

// CreateRepo creates a repository in the organization, or updates it when one
// of that name exists and PreventExisting is false. A SyncConfig.Source must
// name a catalog image the organization is entitled to.
func (r *registryServer) CreateRepo(_ context.Context, req *registry.CreateRepoRequest) (*registry.Repo, error) {
	s := r.s
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reconcileLocked()
	if err := s.checkParent("parent_id", req.GetParentId()); err != nil {
		return nil, err
	}
	in := req.GetRepo()
	if in == nil {
		return nil, status.Error(codes.InvalidArgument, "repo is required")
	}
	if err := internalOnly(in); err != nil {
		return nil, err
	}
	if !namePattern.MatchString(in.GetName()) {
		return nil, status.Errorf(codes.InvalidArgument, "invalid repo name %q: name must match %q", in.GetName(), namePattern)
	}
	var src *CatalogImage
	if source := in.GetSyncConfig().GetSource(); source != "" {
		img, ok := s.lookupSource(source)
		if !ok {
			return nil, status.Errorf(codes.NotFound, "source repository %q not found in the catalog", source)
		}
		if err := s.checkEntitledLocked(img); err != nil {
			return nil, err
		}
		src = &img
	}
	if existing := s.repoByNameLocked(in.GetName()); existing != nil {
		if req.GetPreventExisting() {
			return nil, status.Errorf(codes.AlreadyExists, "repo %q already exists", in.GetName())
		}
		existing.SyncConfig = proto.Clone(in.GetSyncConfig()).(*registry.SyncConfig)
		existing.Description = in.GetDescription()
		inherit(existing, src)
		return proto.Clone(existing).(*registry.Repo), nil
	}
	if len(s.repos)+len(s.pending) >= s.maxRepos {
		return nil, s.capError()
	}
	repo := s.newRepoLocked(in.GetName(), src)
	repo.SyncConfig = proto.Clone(in.GetSyncConfig()).(*registry.SyncConfig)
	repo.Description = in.GetDescription()
	return proto.Clone(repo).(*registry.Repo), nil
}

// internalOnly refuses the fields only Chainguard may set
// (CAP_REPO_INTERNAL_ADMIN), as the real API does.
func internalOnly(r *registry.Repo) error {
	var field string
	switch sc := r.GetSyncConfig(); {
	case r.GetCatalogTier() != registry.CatalogTier_UNKNOWN:
		field = "catalog_tier"
	case len(r.GetBundles()) > 0:
		field = "bundles"
	case len(r.GetAliases()) > 0:
		field = "aliases"
	case len(r.GetActiveTags()) > 0:
		field = "active_tags"
	case r.GetReadme() != "":
		field = "readme"
	case sc.GetExpiration() != nil:
		field = "sync_config.expiration"
	case sc.GetApkoOverlay() != "":
		field = "sync_config.apko_overlay"
	default:
		return nil
	}
	return status.Errorf(codes.PermissionDenied, "setting %s is not allowed", field)
}

// checkEntitledLocked: may the organization sync from img?
func (s *Server) checkEntitledLocked(img CatalogImage) error {
	if s.plan == registry.Plan_CATALOG {
		if !slices.Contains(s.activeTiers, img.Tier) {
			return status.Errorf(codes.FailedPrecondition, "organization has no active entitlement for catalog tier %s (image %q)", img.Tier, img.Name)
		}
		return nil
	}
	if s.entitledLocked(img.Name) == nil {
		return status.Errorf(codes.FailedPrecondition, "organization is not entitled to catalog image %q: add it to the entitlement first", img.Name)
	}
	return nil
}

func (s *Server) capError() error {
	return status.Errorf(codes.ResourceExhausted, "organization has reached the maximum of %d container image repositories", s.maxRepos)
}

// newRepoLocked adds a repository to the organization.
func (s *Server) newRepoLocked(name string, src *CatalogImage) *registry.Repo {
	repo := &registry.Repo{
		Id:         string(uidp.UIDP(s.orgID).NewChild()),
		Name:       name,
		CreateTime: timestamppb.New(s.now()),
	}
	if src != nil {
		repo.SyncConfig = &registry.SyncConfig{Source: CatalogID(src.Name)}
	}
	inherit(repo, src)
	s.repos = append(s.repos, repo)
	if _, dup := s.repoByName[name]; !dup {
		s.repoByName[name] = repo
	}
	s.repoByID[repo.Id] = repo
	return repo
}

// inherit copies what a synced repository takes from its catalog source.
func inherit(repo *registry.Repo, src *CatalogImage) {
	if src == nil {
		repo.CatalogTier, repo.ActiveTags = registry.CatalogTier_UNKNOWN, nil
		return
	}
	repo.CatalogTier = src.Tier
	repo.ActiveTags = append([]string(nil), src.ActiveTags...)
}

func (s *Server) repoByNameLocked(name string) *registry.Repo {
	return s.repoByName[name]
}

// reconcileLocked creates the repositories of entitled images whose sync is due.
func (s *Server) reconcileLocked() {
	now := s.now()
	kept := s.pending[:0]
	for _, p := range s.pending {
		if p.due.After(now) {
			kept = append(kept, p)
			continue
		}
		if s.repoByNameLocked(p.image.Name) == nil {
			img := p.image
			s.newRepoLocked(img.Name, &img)
		}
	}
	s.pending = kept
}

// ListRepos lists the organization's repositories, or the public catalog when
// the filter's Uidp names PublicCatalogGroup, filtered by Id, Name and Uidp.Ids.
func (r *registryServer) ListRepos(_ context.Context, f *registry.RepoFilter) (*registry.RepoList, error) {
	s := r.s
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reconcileLocked()
	parent := f.GetUidp().GetChildrenOf()
	if parent == "" {
		parent = f.GetUidp().GetDescendantsOf()
	}
	var pool []*registry.Repo
	switch {
	case parent == PublicCatalogGroup:
		for _, img := range s.catalog {
			pool = append(pool, catalogRepo(img))
		}
	case (parent == "" || parent == s.orgID) && f.GetName() != "":
		// Names are unique in the organization: look it up.
		if r := s.repoByName[f.GetName()]; r != nil {
			pool = []*registry.Repo{r}
		}
	case (parent == "" || parent == s.orgID) && f.GetId() != "":
		if r := s.repoByID[f.GetId()]; r != nil {
			pool = []*registry.Repo{r}
		}
	case parent == "" || parent == s.orgID:
		pool = s.repos
	case s.inOrg(parent):
		// Repositories are children of the organization itself.
	default:
		return nil, errNoCapability
	}
	out := &registry.RepoList{}
	for _, repo := range pool {
		if (f.GetId() != "" && repo.GetId() != f.GetId()) ||
			(f.GetName() != "" && repo.GetName() != f.GetName()) ||
			(len(f.GetUidp().GetIds()) > 0 && !slices.Contains(f.GetUidp().GetIds(), repo.GetId())) {
			continue
		}
		out.Items = append(out.Items, proto.Clone(repo).(*registry.Repo))
	}
	return out, nil
}

// ListTags lists a repository's tags (TagFilter.Uidp.ChildrenOf = repo id),
// optionally one by Name. An organization repository shows its catalog
// image's active tags once synced (WithSyncDelay after its creation).
func (r *registryServer) ListTags(_ context.Context, f *registry.TagFilter) (*registry.TagList, error) {
	s := r.s
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reconcileLocked()
	repoID := f.GetUidp().GetChildrenOf()
	if repoID == "" {
		repoID = f.GetUidp().GetDescendantsOf()
	}
	var repo *registry.Repo
	switch {
	case strings.HasPrefix(repoID, PublicCatalogGroup+"/"):
		if img, ok := s.lookupSource(repoID); ok {
			repo = catalogRepo(img)
		}
	case s.inOrg(repoID):
		if r := s.repoByID[repoID]; r != nil && !r.GetCreateTime().AsTime().Add(s.syncDelay).After(s.now()) {
			repo = r
		}
	case repoID == "":
		return nil, status.Error(codes.InvalidArgument, "uidp.children_of (the repository id) is required")
	default:
		return nil, errNoCapability
	}
	out := &registry.TagList{}
	for _, name := range repo.GetActiveTags() {
		if f.GetName() != "" && name != f.GetName() {
			continue
		}
		out.Items = append(out.Items, &registry.Tag{
			Id:          repo.GetId() + "/" + shortHash("tag/"+name),
			Name:        name,
			Digest:      "sha256:" + shortHash(repo.GetId()+":"+name) + strings.Repeat("0", 48),
			LastUpdated: timestamppb.New(s.now()),
		})
	}
	return out, nil
}

// inOrg: is id the organization or inside it?
func (s *Server) inOrg(id string) bool {
	return id == s.orgID || strings.HasPrefix(id, s.orgID+"/")
}

// checkParent checks a request's parent: the organization itself is fine, a
// group inside it is unknown to the fake, anything else is out of scope.
func (s *Server) checkParent(field, id string) error {
	switch {
	case id == "":
		return status.Errorf(codes.InvalidArgument, "%s is required", field)
	case id == s.orgID:
		return nil
	case s.inOrg(id):
		return status.Errorf(codes.NotFound, "group %q not found", id)
	default:
		return errNoCapability
	}
}

// OrgRepos returns a copy of the organization's repositories, oldest first.
func (s *Server) OrgRepos() []*registry.Repo {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reconcileLocked()
	out := make([]*registry.Repo, 0, len(s.repos))
	for _, r := range s.repos {
		out = append(out, proto.Clone(r).(*registry.Repo))
	}
	return out
}

// AddOrgRepo adds a repository to the organization as if it had been created
// earlier, synced from the catalog image of that name when there is one. It
// returns the existing repository when the name is taken.
func (s *Server) AddOrgRepo(name string) *registry.Repo {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.repoByNameLocked(name); r != nil {
		return proto.Clone(r).(*registry.Repo)
	}
	var src *CatalogImage
	if img, ok := s.lookupName(name); ok {
		src = &img
	}
	return proto.Clone(s.newRepoLocked(name, src)).(*registry.Repo)
}

// String describes the fake for logs.
func (s *Server) String() string {
	return fmt.Sprintf("fake Chainguard API at %s (org %s, plan %s)", s.Addr(), s.orgName, s.plan)
}
