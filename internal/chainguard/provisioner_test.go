package chainguard

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	registry "chainguard.dev/sdk/proto/platform/registry/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	fake "github.com/chainguard-dev/image-request-bridge/internal/fake/chainguard"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// setup runs a fake and a Provisioner connected to it over real gRPC. mut
// adjusts the options before New.
func setup(t *testing.T, mut func(*Options), fopts ...fake.Option) (*fake.Server, *Provisioner) {
	t.Helper()
	srv, err := fake.New(fopts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	// Retries in place do not wait on the wall clock unless a test says so.
	o := Options{APIURL: srv.Addr(), OrgID: srv.OrgID(), OrgName: srv.OrgName(), Token: srv.Token(), Sleep: noSleep}
	if mut != nil {
		mut(&o)
	}
	p, err := New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return srv, p
}

// ctx bounds each call: the SDK's clients wait for the server to be ready.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func ref(name, tag string) isync.ImageRef { return isync.ImageRef{Name: name, Tag: tag} }

func wantClass(t *testing.T, err error, class isync.Class, cause string, reasonParts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %v", class)
	}
	if got := isync.ClassOf(err); got != class {
		t.Fatalf("class %v, want %v: %v", got, class, err)
	}
	if got := isync.CauseOf(err); got != cause {
		t.Fatalf("cause %q, want %q: %v", got, cause, err)
	}
	for _, part := range reasonParts {
		if !strings.Contains(isync.ReasonOf(err), part) {
			t.Fatalf("reason %q does not contain %q", isync.ReasonOf(err), part)
		}
	}
}

func TestProvisionCatalogCreatesOnce(t *testing.T) {
	srv, p := setup(t, nil)
	res, err := p.Provision(ctx(t), ref("python", "latest-dev"))
	if err != nil {
		t.Fatal(err)
	}
	repos := srv.OrgRepos()
	if len(repos) != 1 || repos[0].GetName() != "python" || repos[0].GetSyncConfig().GetSource() != "python" {
		t.Fatalf("org repos = %v", repos)
	}
	want := isync.Result{RepoID: repos[0].GetId(), PullRef: "cgr.dev/example.com/python:latest-dev", Method: "CreateRepo"}
	if res != want {
		t.Fatalf("result = %+v, want %+v", res, want)
	}

	again, err := p.Provision(ctx(t), ref("python", "3.12"))
	if err != nil {
		t.Fatal(err)
	}
	if !again.AlreadyPresent || again.RepoID != res.RepoID || again.PullRef != "cgr.dev/example.com/python:3.12" {
		t.Fatalf("second provision = %+v", again)
	}
	if n := len(srv.OrgRepos()); n != 1 {
		t.Fatalf("org has %d repos after a repeat", n)
	}
}

func TestProvisionPreexistingRepo(t *testing.T) {
	srv, p := setup(t, nil)
	existing := srv.AddOrgRepo("nginx")
	res, err := p.Provision(ctx(t), ref("nginx", "latest"))
	if err != nil {
		t.Fatal(err)
	}
	if !res.AlreadyPresent || res.RepoID != existing.GetId() || res.Method != "CreateRepo" {
		t.Fatalf("result = %+v, want already present %s", res, existing.GetId())
	}
}

func TestProvisionUnknownImage(t *testing.T) {
	srv, p := setup(t, nil)
	_, err := p.Provision(ctx(t), ref("pyhton", "latest"))
	wantClass(t, err, isync.ClassRejected, "", `"pyhton" is not in the Chainguard catalog; did you mean: python`)
	if n := srv.CountCalls("CreateRepo"); n != 0 {
		t.Fatalf("an image missing from the catalog reached CreateRepo (%d calls)", n)
	}
	_, err = p.Provision(ctx(t), ref("python-dev", "latest"))
	wantClass(t, err, isync.ClassRejected, "", "ask for python:latest-dev")
	_, err = p.Provision(ctx(t), ref("pyt", "latest"))
	wantClass(t, err, isync.ClassRejected, "", "did you mean: python, pytorch, python-fips")
	if n := len(srv.OrgRepos()); n != 0 {
		t.Fatalf("unknown images created %d repos", n)
	}
	if n := srv.CountCalls("ListRepos"); n != 1 {
		t.Fatalf("catalog listed %d times, want 1 (cached)", n)
	}
}

func TestProvisionNotFoundForCatalogImageBlocks(t *testing.T) {
	srv, p := setup(t, nil)
	srv.InjectError("CreateRepo", codes.NotFound, "group not found", 1)
	_, err := p.Provision(ctx(t), ref("python", "latest"))
	wantClass(t, err, isync.ClassBlocked, CausePrecondition, "chainguard.org_id", "group not found")
}

func TestProvisionPermissionDenied(t *testing.T) {
	srv, p := setup(t, nil)
	srv.DenyCapability("CreateRepo", true)
	_, err := p.Provision(ctx(t), ref("python", "latest"))
	wantClass(t, err, isync.ClassBlocked, CausePermissionDenied, "repo.create")
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "caller does not have the required capabilities") {
		t.Fatalf("error = %v", err)
	}

	srv.DenyCapability("CreateRepo", false)
	srv.DenyCapability("GetEffectiveEntitlements", true)
	err = p.Check(ctx(t))
	wantClass(t, err, isync.ClassBlocked, CausePermissionDenied, "registry.entitlements.list")
}

func TestProvisionUnauthenticated(t *testing.T) {
	const secret = "not-the-token-s3cr3t"
	_, p := setup(t, func(o *Options) { o.Token = secret })
	_, err := p.Provision(ctx(t), ref("python", "latest"))
	wantClass(t, err, isync.ClassBlocked, CauseUnauthenticated, "token")
	if strings.Contains(err.Error(), secret) {
		t.Fatalf("error leaks the token: %v", err)
	}
	err = p.Check(ctx(t))
	wantClass(t, err, isync.ClassBlocked, CauseUnauthenticated)
}

func TestProvisionQuota(t *testing.T) {
	srv, p := setup(t, nil, fake.WithMaxRepos(1))
	srv.AddOrgRepo("nginx")
	_, err := p.Provision(ctx(t), ref("python", "latest"))
	wantClass(t, err, isync.ClassBlocked, CauseQuota, "2,500", "maximum of 1")

	_, p = setup(t, nil, fake.WithPlan(registry.Plan_PER_IMAGE), fake.WithTierQuota(registry.CatalogTier_BASE, 0))
	_, err = p.Provision(ctx(t), ref("python", "latest"))
	wantClass(t, err, isync.ClassBlocked, CauseQuota, "quota")
}

// A throttled call is retried in place; one throttled past the attempts is
// retryable, not a quota block.
func TestProvisionThrottledIsRetryable(t *testing.T) {
	srv, p := setup(t, nil)
	srv.InjectError("CreateRepo", codes.ResourceExhausted, "rate limit exceeded", DefaultRetryAttempts)
	_, err := p.Provision(ctx(t), ref("python", "latest"))
	wantClass(t, err, isync.ClassRetryable, "")
	if n := srv.CountCalls("CreateRepo"); n != DefaultRetryAttempts {
		t.Fatalf("CreateRepo called %d times, want %d", n, DefaultRetryAttempts)
	}
}

func TestProvisionTierNotEntitled(t *testing.T) {
	_, p := setup(t, nil, fake.WithActiveTiers(registry.CatalogTier_BASE))
	_, err := p.Provision(ctx(t), ref("pytorch", "latest"))
	wantClass(t, err, isync.ClassBlocked, CausePrecondition, "catalog tier")
}

// Failures that are not known to pass at once (INTERNAL, UNKNOWN) are not
// retried in place: the ticket backs off, and its next try succeeds. (The
// codes retried in place are in TestRetryInPlace.)
func TestProvisionTransientErrors(t *testing.T) {
	for _, code := range []codes.Code{codes.Internal, codes.Unknown} {
		t.Run(code.String(), func(t *testing.T) {
			srv, p := setup(t, nil)
			srv.InjectError("CreateRepo", code, "transient", 1)
			_, err := p.Provision(ctx(t), ref("python", "latest"))
			wantClass(t, err, isync.ClassRetryable, "")
			if status.Code(err) != code {
				t.Fatalf("status %v, want %v", status.Code(err), code)
			}
			if n := srv.CountCalls("CreateRepo"); n != 1 {
				t.Fatalf("CreateRepo called %d times, want 1 (no retry in place)", n)
			}
			res, err := p.Provision(ctx(t), ref("python", "latest"))
			if err != nil || res.AlreadyPresent {
				t.Fatalf("retry = %+v, %v", res, err)
			}
		})
	}
}

// A call that runs into the caller's deadline is retryable, and not retried
// in place: the caller has no time left.
func TestProvisionContextDeadline(t *testing.T) {
	var rec sleeps
	srv, p := setup(t, func(o *Options) { o.Sleep = rec.sleep }, fake.WithLatency(time.Hour))
	c, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	_, err := p.Provision(c, ref("python", "latest"))
	wantClass(t, err, isync.ClassRetryable, "")
	if status.Code(err) != codes.DeadlineExceeded || len(rec.get()) != 0 {
		t.Fatalf("error %v after waits %v, want DEADLINE_EXCEEDED at once", err, rec.get())
	}
	if n := len(srv.Calls()); n > 1 {
		t.Fatalf("%d calls, want at most 1", n)
	}
}

func TestProvisionPerImage(t *testing.T) {
	srv, p := setup(t, nil, fake.WithPlan(registry.Plan_PER_IMAGE))
	res, err := p.Provision(ctx(t), ref("python", "latest-dev"))
	if err != nil {
		t.Fatal(err)
	}
	repos := srv.OrgRepos()
	if len(repos) != 1 || res.RepoID != repos[0].GetId() || res.Method != "AddEntitlementImages" ||
		res.AlreadyPresent || res.PullRef != "cgr.dev/example.com/python:latest-dev" {
		t.Fatalf("result = %+v, repos %v", res, repos)
	}
	again, err := p.Provision(ctx(t), ref("python", "latest"))
	if err != nil || !again.AlreadyPresent || again.RepoID != res.RepoID {
		t.Fatalf("second provision = %+v, %v", again, err)
	}
	if n := srv.CountCalls("CreateRepo"); n != 0 {
		t.Fatalf("CreateRepo called %d times on a per-image plan", n)
	}
	_, err = p.Provision(ctx(t), ref("pyhton", "latest"))
	wantClass(t, err, isync.ClassRejected, "", "did you mean: python")
}

func TestProvisionPerImageSyncPending(t *testing.T) {
	srv, p := setup(t, nil, fake.WithPlan(registry.Plan_STARTER), fake.WithSyncDelay(time.Hour))
	res, err := p.Provision(ctx(t), ref("node", "22"))
	if err != nil {
		t.Fatal(err)
	}
	if res.RepoID != "" || res.AlreadyPresent || len(srv.OrgRepos()) != 0 {
		t.Fatalf("result = %+v, want no repo id while the sync is pending", res)
	}
}

func TestEntitlementModeOnCatalogPlan(t *testing.T) {
	srv, p := setup(t, func(o *Options) { o.Mode = ModeEntitlement })
	_, err := p.Provision(ctx(t), ref("python", "latest"))
	wantClass(t, err, isync.ClassBlocked, CausePrecondition, "chainguard.provision")
	if n := srv.CountCalls("GetEffectiveEntitlements"); n != 0 {
		t.Fatalf("mode entitlement looked the plan up %d times", n)
	}
}

func TestRepoModeSkipsPlan(t *testing.T) {
	srv, p := setup(t, func(o *Options) { o.Mode = ModeRepo })
	if _, err := p.Provision(ctx(t), ref("python", "latest")); err != nil {
		t.Fatal(err)
	}
	if n := srv.CountCalls("GetEffectiveEntitlements"); n != 0 {
		t.Fatalf("mode repo looked the plan up %d times", n)
	}
}

func TestPlanCached(t *testing.T) {
	srv, p := setup(t, nil)
	now := time.Now()
	var mu sync.Mutex
	p.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }

	var wg sync.WaitGroup
	for _, img := range []string{"python", "node", "go", "jdk", "nginx", "redis", "python", "node"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := p.Provision(ctx(t), ref(img, "latest")); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := srv.CountCalls("GetEffectiveEntitlements"); n != 1 {
		t.Fatalf("plan looked up %d times, want 1", n)
	}
	mu.Lock()
	now = now.Add(DefaultPlanTTL)
	mu.Unlock()
	// Past the TTL the cached plan still answers, and one reload runs in the
	// background (Close waits for it).
	for _, img := range []string{"curl", "bash"} {
		if _, err := p.Provision(ctx(t), ref(img, "latest")); err != nil {
			t.Fatal(err)
		}
	}
	p.effective.wait()
	if n := srv.CountCalls("GetEffectiveEntitlements"); n != 2 {
		t.Fatalf("plan looked up %d times after the TTL, want 2", n)
	}
}

func TestBlockedForgetsPlan(t *testing.T) {
	srv, p := setup(t, nil)
	srv.DenyCapability("CreateRepo", true)
	_, err := p.Provision(ctx(t), ref("python", "latest"))
	wantClass(t, err, isync.ClassBlocked, CausePermissionDenied)
	srv.DenyCapability("CreateRepo", false)
	if _, err := p.Provision(ctx(t), ref("python", "latest")); err != nil {
		t.Fatal(err)
	}
	if n := srv.CountCalls("GetEffectiveEntitlements"); n != 2 {
		t.Fatalf("plan looked up %d times, want 2 (re-read after blocking)", n)
	}
}

func TestCheck(t *testing.T) {
	srv, p := setup(t, nil, fake.WithPlan(registry.Plan_PER_IMAGE))
	if err := p.Check(ctx(t)); err != nil {
		t.Fatal(err)
	}
	plan, err := p.Plan(ctx(t))
	if err != nil || plan != registry.Plan_PER_IMAGE {
		t.Fatalf("plan = %v, %v", plan, err)
	}
	if n := srv.CountCalls("GetEffectiveEntitlements"); n != 1 {
		t.Fatalf("GetEffectiveEntitlements called %d times, want 1", n)
	}
	srv.InjectError("GetEffectiveEntitlements", codes.Unimplemented, "unknown service", 1)
	wantClass(t, p.Check(ctx(t)), isync.ClassBlocked, CauseUnsupported, "api_url")
}

func TestProvisionRejectsInvalidRef(t *testing.T) {
	srv, p := setup(t, nil)
	for _, img := range []isync.ImageRef{{}, {Name: "a/b", Tag: "x"}, {Name: "python", Tag: "bad tag"}, {Name: "Python"}} {
		_, err := p.Provision(ctx(t), img)
		wantClass(t, err, isync.ClassRejected, "")
	}
	if n := len(srv.Calls()); n != 0 {
		t.Fatalf("invalid refs made %d calls", n)
	}
}
