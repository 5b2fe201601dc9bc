package chainguard

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	common "chainguard.dev/sdk/proto/platform/common/v1"
	registry "chainguard.dev/sdk/proto/platform/registry/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// start runs a fake and connects the SDK's client to it with token.
func start(t *testing.T, token string, opts ...Option) (*Server, registry.Clients) {
	t.Helper()
	srv, err := New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	if token == "" {
		token = srv.Token()
	}
	c, err := registry.NewClients(context.Background(), srv.Addr(), token)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return srv, c
}

// ctx bounds each test: the SDK's clients wait for the server to be ready.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func wantCode(t *testing.T, err error, want codes.Code, msgPart string) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("code = %v (%v), want %v", got, err, want)
	}
	if !strings.Contains(status.Convert(err).Message(), msgPart) {
		t.Fatalf("message %q does not contain %q", status.Convert(err).Message(), msgPart)
	}
}

func createReq(org, name, source string) *registry.CreateRepoRequest {
	return &registry.CreateRepoRequest{
		ParentId:        org,
		Repo:            &registry.Repo{Name: name, SyncConfig: &registry.SyncConfig{Source: source}},
		PreventExisting: true,
	}
}

func TestAuthentication(t *testing.T) {
	for _, tc := range []struct {
		name, token string
		want        codes.Code
	}{
		{"raw token", DefaultToken, codes.OK},
		{"bearer token", "Bearer " + DefaultToken, codes.OK},
		{"wrong token", "nope", codes.Unauthenticated},
		{"bearer wrong token", "Bearer nope", codes.Unauthenticated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, c := start(t, tc.token)
			_, err := c.Entitlements().GetEffectiveEntitlements(ctx(t), &registry.GetEffectiveEntitlementsRequest{Parent: srv.OrgID()})
			if got := status.Code(err); got != tc.want {
				t.Fatalf("code = %v (%v), want %v", got, err, tc.want)
			}
			if calls := srv.Calls(); len(calls) != 1 || calls[0].Code != tc.want || calls[0].Method != "GetEffectiveEntitlements" {
				t.Fatalf("call log = %+v", calls)
			}
		})
	}
}

func TestCreateRepo(t *testing.T) {
	srv, c := start(t, "")
	for _, source := range []string{"python", "chainguard/node", "cgr.dev/chainguard/go", CatalogID("nginx")} {
		name := sourceName(source)
		repo, err := c.Registry().CreateRepo(ctx(t), createReq(srv.OrgID(), name, source))
		if err != nil {
			t.Fatalf("CreateRepo(%s): %v", source, err)
		}
		if !regexp.MustCompile("^" + srv.OrgID() + "/[0-9a-f]{16}$").MatchString(repo.GetId()) {
			t.Errorf("id %q is not a child UIDP of the org", repo.GetId())
		}
		if repo.GetName() != name || repo.GetCreateTime() == nil || repo.GetCatalogTier() == registry.CatalogTier_UNKNOWN || len(repo.GetActiveTags()) == 0 {
			t.Errorf("repo = %v", repo)
		}
	}
	if n := len(srv.OrgRepos()); n != 4 {
		t.Fatalf("org has %d repos, want 4", n)
	}
}

func sourceName(source string) string {
	if strings.HasPrefix(source, PublicCatalogGroup) {
		return "nginx"
	}
	return source[strings.LastIndex(source, "/")+1:]
}

func TestCreateRepoExisting(t *testing.T) {
	srv, c := start(t, "")
	first, err := c.Registry().CreateRepo(ctx(t), createReq(srv.OrgID(), "python", "python"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Registry().CreateRepo(ctx(t), createReq(srv.OrgID(), "python", "python"))
	wantCode(t, err, codes.AlreadyExists, `"python"`)

	req := createReq(srv.OrgID(), "python", "python")
	req.PreventExisting = false
	again, err := c.Registry().CreateRepo(ctx(t), req)
	if err != nil {
		t.Fatalf("upsert: %v", err)
	}
	if again.GetId() != first.GetId() || len(srv.OrgRepos()) != 1 {
		t.Fatalf("upsert created a second repo: %v", srv.OrgRepos())
	}
}

func TestCreateRepoErrors(t *testing.T) {
	srv, c := start(t, "", WithMaxRepos(2), WithActiveTiers(registry.CatalogTier_BASE, registry.CatalogTier_APPLICATION))
	org := srv.OrgID()
	withRepo := func(mut func(*registry.Repo)) *registry.CreateRepoRequest {
		req := createReq(org, "python", "python")
		mut(req.Repo)
		return req
	}
	for _, tc := range []struct {
		name string
		req  *registry.CreateRepoRequest
		code codes.Code
		msg  string
	}{
		{"unknown image", createReq(org, "pyhton", "pyhton"), codes.NotFound, `"pyhton"`},
		{"bad name", createReq(org, "Python!", "python"), codes.InvalidArgument, "invalid repo name"},
		{"no repo", &registry.CreateRepoRequest{ParentId: org}, codes.InvalidArgument, "repo is required"},
		{"no parent", createReq("", "python", "python"), codes.InvalidArgument, "parent_id"},
		{"other org", createReq(strings.Repeat("ab", 20), "python", "python"), codes.PermissionDenied, "capabilities"},
		{"group inside org", createReq(org+"/0123456789abcdef", "python", "python"), codes.NotFound, "group"},
		{"tier not active", createReq(org, "pytorch", "pytorch"), codes.FailedPrecondition, "AI"},
		{"catalog_tier", withRepo(func(r *registry.Repo) { r.CatalogTier = registry.CatalogTier_BASE }), codes.PermissionDenied, "catalog_tier"},
		{"bundles", withRepo(func(r *registry.Repo) { r.Bundles = []string{"x"} }), codes.PermissionDenied, "bundles"},
		{"aliases", withRepo(func(r *registry.Repo) { r.Aliases = []string{"x"} }), codes.PermissionDenied, "aliases"},
		{"active_tags", withRepo(func(r *registry.Repo) { r.ActiveTags = []string{"latest"} }), codes.PermissionDenied, "active_tags"},
		{"readme", withRepo(func(r *registry.Repo) { r.Readme = "# x" }), codes.PermissionDenied, "readme"},
		{"expiration", withRepo(func(r *registry.Repo) { r.SyncConfig.Expiration = timestamppb.Now() }), codes.PermissionDenied, "sync_config.expiration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Registry().CreateRepo(ctx(t), tc.req)
			wantCode(t, err, tc.code, tc.msg)
		})
	}
	if n := len(srv.OrgRepos()); n != 0 {
		t.Fatalf("failed calls created %d repos", n)
	}

	srv.AddOrgRepo("nginx")
	srv.AddOrgRepo("redis")
	_, err := c.Registry().CreateRepo(ctx(t), createReq(org, "python", "python"))
	wantCode(t, err, codes.ResourceExhausted, "maximum of 2")
}

func TestListRepos(t *testing.T) {
	srv, c := start(t, "")
	py := srv.AddOrgRepo("python")
	srv.AddOrgRepo("nginx")

	got, err := c.Registry().ListRepos(ctx(t), &registry.RepoFilter{Name: "python", Uidp: &common.UIDPFilter{ChildrenOf: srv.OrgID()}})
	if err != nil || len(got.GetItems()) != 1 || got.GetItems()[0].GetId() != py.GetId() {
		t.Fatalf("ListRepos by name = %v, %v", got, err)
	}
	got, err = c.Registry().ListRepos(ctx(t), &registry.RepoFilter{Uidp: &common.UIDPFilter{DescendantsOf: srv.OrgID()}})
	if err != nil || len(got.GetItems()) != 2 {
		t.Fatalf("ListRepos of org = %v, %v", got, err)
	}
	got, err = c.Registry().ListRepos(ctx(t), &registry.RepoFilter{Uidp: &common.UIDPFilter{ChildrenOf: PublicCatalogGroup}})
	if err != nil || len(got.GetItems()) != len(DefaultCatalog()) {
		t.Fatalf("ListRepos of catalog = %d items, %v", len(got.GetItems()), err)
	}
	for _, r := range got.GetItems() {
		if r.GetCatalogTier() == registry.CatalogTier_UNKNOWN || !strings.HasPrefix(r.GetId(), PublicCatalogGroup+"/") {
			t.Fatalf("catalog repo %v", r)
		}
	}
	_, err = c.Registry().ListRepos(ctx(t), &registry.RepoFilter{Uidp: &common.UIDPFilter{ChildrenOf: strings.Repeat("cd", 20)}})
	wantCode(t, err, codes.PermissionDenied, "capabilities")
}

func TestListTags(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	srv, c := start(t, "", WithSyncDelay(time.Minute), WithClock(clock))
	repo := srv.AddOrgRepo("python")
	filter := &registry.TagFilter{Uidp: &common.UIDPFilter{ChildrenOf: repo.GetId()}, Name: "latest-dev"}

	tags, err := c.Registry().ListTags(ctx(t), filter)
	if err != nil || len(tags.GetItems()) != 0 {
		t.Fatalf("tags before sync = %v, %v", tags, err)
	}
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	tags, err = c.Registry().ListTags(ctx(t), filter)
	if err != nil || len(tags.GetItems()) != 1 || tags.GetItems()[0].GetName() != "latest-dev" {
		t.Fatalf("tags after sync = %v, %v", tags, err)
	}
	if d := tags.GetItems()[0].GetDigest(); !regexp.MustCompile("^sha256:[0-9a-f]{64}$").MatchString(d) {
		t.Fatalf("digest %q", d)
	}
	all, err := c.Registry().ListTags(ctx(t), &registry.TagFilter{Uidp: &common.UIDPFilter{ChildrenOf: CatalogID("python")}})
	if err != nil || len(all.GetItems()) != 10 {
		t.Fatalf("catalog tags = %d, %v", len(all.GetItems()), err)
	}
}

func TestEffectiveEntitlements(t *testing.T) {
	srv, c := start(t, "")
	got, err := c.Entitlements().GetEffectiveEntitlements(ctx(t), &registry.GetEffectiveEntitlementsRequest{Parent: srv.OrgID()})
	if err != nil || got.GetPlan() != registry.Plan_CATALOG || got.GetMaxTotalImages() != -1 || len(got.GetActiveTiers()) == 0 {
		t.Fatalf("catalog plan = %v, %v", got, err)
	}
	_, err = c.Entitlements().GetEffectiveEntitlements(ctx(t), &registry.GetEffectiveEntitlementsRequest{Parent: strings.Repeat("ef", 20)})
	wantCode(t, err, codes.PermissionDenied, "capabilities")

	srv, c = start(t, "", WithPlan(registry.Plan_PER_IMAGE), WithTierQuota(registry.CatalogTier_BASE, 3))
	if err := srv.Entitle("python"); err != nil {
		t.Fatal(err)
	}
	got, err = c.Entitlements().GetEffectiveEntitlements(ctx(t), &registry.GetEffectiveEntitlementsRequest{Parent: srv.OrgID()})
	if err != nil || got.GetPlan() != registry.Plan_PER_IMAGE || got.GetMaxTotalImages() != 3 ||
		got.GetQuota()["BASE"].GetCurrent() != 1 || len(got.GetActiveImages()) != 1 {
		t.Fatalf("per-image plan = %v, %v", got, err)
	}
}

func addReq(parent string, names ...string) *registry.AddEntitlementImagesRequest {
	return &registry.AddEntitlementImagesRequest{
		Entitlement: &registry.AddEntitlementImagesRequest_Parent{Parent: parent},
		ImageNames:  names,
	}
}

func TestAddEntitlementImages(t *testing.T) {
	srv, c := start(t, "", WithPlan(registry.Plan_PER_IMAGE),
		WithTierQuota(registry.CatalogTier_BASE, 2), WithTierQuota(registry.CatalogTier_APPLICATION, 1))
	ents := c.Entitlements()

	resp, err := ents.AddEntitlementImages(ctx(t), addReq(srv.OrgID(), "python"))
	if err != nil || len(resp.GetImages()) != 1 || resp.GetImages()[0].GetName() != "python" || resp.GetParent() != srv.OrgID() {
		t.Fatalf("add python = %v, %v", resp, err)
	}
	if repos := srv.OrgRepos(); len(repos) != 1 || repos[0].GetName() != "python" {
		t.Fatalf("org repos = %v", repos)
	}
	resp, err = ents.AddEntitlementImages(ctx(t), addReq(srv.OrgID(), "python"))
	if err != nil || len(resp.GetImages()) != 0 {
		t.Fatalf("re-add python = %v, %v (want skipped)", resp, err)
	}
	byID := &registry.AddEntitlementImagesRequest{
		Entitlement: &registry.AddEntitlementImagesRequest_Id{Id: srv.EntitlementID()},
		ImageNames:  []string{"nginx"},
	}
	if _, err := ents.AddEntitlementImages(ctx(t), byID); err != nil {
		t.Fatalf("add by entitlement id: %v", err)
	}

	_, err = ents.AddEntitlementImages(ctx(t), addReq(srv.OrgID(), "redis"))
	wantCode(t, err, codes.ResourceExhausted, "1 of 1")
	_, err = ents.AddEntitlementImages(ctx(t), addReq(srv.OrgID(), "go", "node"))
	wantCode(t, err, codes.ResourceExhausted, "BASE")
	_, err = ents.AddEntitlementImages(ctx(t), addReq(srv.OrgID(), "pyhton"))
	wantCode(t, err, codes.NotFound, `"pyhton"`)
	_, err = ents.AddEntitlementImages(ctx(t), addReq(srv.OrgID(), "Python"))
	wantCode(t, err, codes.InvalidArgument, "invalid image name")
	_, err = ents.AddEntitlementImages(ctx(t), addReq(strings.Repeat("01", 20), "go"))
	wantCode(t, err, codes.PermissionDenied, "capabilities")

	list, err := ents.ListEntitlementImages(ctx(t), &registry.EntitlementImagesFilter{Parent: srv.OrgID()})
	if err != nil || len(list.GetImages()) != 2 {
		t.Fatalf("entitled = %v, %v", list, err)
	}
}

func TestAddEntitlementImagesCatalogPlan(t *testing.T) {
	srv, c := start(t, "")
	_, err := c.Entitlements().AddEntitlementImages(ctx(t), addReq(srv.OrgID(), "python"))
	wantCode(t, err, codes.FailedPrecondition, "CreateRepo")
}

func TestEntitledRepoAppearsAfterSyncDelay(t *testing.T) {
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	srv, c := start(t, "", WithPlan(registry.Plan_STARTER), WithSyncDelay(time.Minute), WithClock(clock))
	if _, err := c.Entitlements().AddEntitlementImages(ctx(t), addReq(srv.OrgID(), "python")); err != nil {
		t.Fatal(err)
	}
	list := func() int {
		got, err := c.Registry().ListRepos(ctx(t), &registry.RepoFilter{Name: "python", Uidp: &common.UIDPFilter{ChildrenOf: srv.OrgID()}})
		if err != nil {
			t.Fatal(err)
		}
		return len(got.GetItems())
	}
	if n := list(); n != 0 {
		t.Fatalf("repo visible before the sync: %d", n)
	}
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	if n := list(); n != 1 {
		t.Fatalf("repo not visible after the sync: %d", n)
	}
}

func TestInjectErrorAndDenyCapability(t *testing.T) {
	srv, c := start(t, "")
	srv.InjectError("CreateRepo", codes.Unavailable, "try again", 2)
	for i := 0; i < 2; i++ {
		_, err := c.Registry().CreateRepo(ctx(t), createReq(srv.OrgID(), "python", "python"))
		wantCode(t, err, codes.Unavailable, "try again")
	}
	if _, err := c.Registry().CreateRepo(ctx(t), createReq(srv.OrgID(), "python", "python")); err != nil {
		t.Fatalf("third call: %v", err)
	}

	srv.DenyCapability("ListRepos", true)
	_, err := c.Registry().ListRepos(ctx(t), &registry.RepoFilter{})
	wantCode(t, err, codes.PermissionDenied, "caller does not have the required capabilities")
	srv.DenyCapability("ListRepos", false)
	if _, err := c.Registry().ListRepos(ctx(t), &registry.RepoFilter{}); err != nil {
		t.Fatal(err)
	}

	if n := srv.CountCalls("CreateRepo"); n != 3 {
		t.Fatalf("CountCalls(CreateRepo) = %d, want 3", n)
	}
	calls := srv.Calls()
	if calls[0].Code != codes.Unavailable || !strings.Contains(calls[0].Request, "python") || calls[0].Time.IsZero() {
		t.Fatalf("first call = %+v", calls[0])
	}
}

func TestConcurrentCreates(t *testing.T) {
	srv, c := start(t, "")
	names := []string{"python", "node", "go", "jdk", "jre", "nginx", "redis", "postgres"}
	var wg sync.WaitGroup
	errs := make(chan error, 2*len(names))
	for i := 0; i < 2; i++ {
		for _, n := range names {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := c.Registry().CreateRepo(ctx(t), createReq(srv.OrgID(), n, n))
				if err != nil && status.Code(err) != codes.AlreadyExists {
					errs <- fmt.Errorf("%s: %w", n, err)
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := len(srv.OrgRepos()); got != len(names) {
		t.Fatalf("org has %d repos, want %d", got, len(names))
	}
}
