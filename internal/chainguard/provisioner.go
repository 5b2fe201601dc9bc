// Package chainguard provisions requested catalog images into the customer
// organization's Chainguard registry through the Chainguard API
// (chainguard.dev/sdk). It implements the engine's isync.Provisioner.
//
// How an image is provisioned depends on the organization's plan, read with
// GetEffectiveEntitlements and cached:
//   - CATALOG (all images of the entitled tiers): Registry.CreateRepo with the
//     catalog name as sync source and PreventExisting; ALREADY_EXISTS means the
//     image is already there.
//   - PER_IMAGE and STARTER (a quota of images per tier):
//     Entitlements.AddEntitlementImages; Chainguard then creates the
//     organization's repository, possibly a little later.
//
// Errors carry the engine's classes: transient failures are retryable,
// unknown images are rejected with the closest catalog names, and missing
// permissions, an invalid token, exhausted quota or a refused precondition
// block the bridge until an administrator acts.
//
// Calls fail fast when the API cannot be reached, are retried in place after
// a transient failure (RetryPolicy), and stop for a growing cool-down once
// the API is found down (CircuitPolicy, Provisioner.Unavailable).
package chainguard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	delegate "chainguard.dev/go-grpc-kit/pkg/options"
	common "chainguard.dev/sdk/proto/platform/common/v1"
	registry "chainguard.dev/sdk/proto/platform/registry/v1"
	"github.com/google/go-containerregistry/pkg/name"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// The API calls, as named in Result.Method and error messages.
const (
	opCreateRepo      = "CreateRepo"
	opAddEntitlements = "AddEntitlementImages"
	opListRepos       = "ListRepos"
	opEffective       = "GetEffectiveEntitlements"
)

// Provisioner provisions catalog images into one organization. It is safe for
// concurrent use.
type Provisioner struct {
	opts    Options
	clients registry.Clients
	now     func() time.Time
	circuit *circuit // fed by the connection's calls (New)

	// effective is the organization's effective entitlements (its plan and
	// quotas), cached for PlanTTL; catalog is the public catalog, cached for
	// CatalogTTL. Both are reloaded in the background once stale.
	effective *cached[*registry.GetEffectiveEntitlementsResponse]
	catalog   *cached[catalog]
}

// catalog is the public catalog's listing.
type catalog struct {
	names []string                  // sorted, unique
	repos map[string]*registry.Repo // by name: tier, active tags
}

var _ isync.Provisioner = (*Provisioner)(nil)

// New validates o and connects to the Chainguard API with the credential o
// describes (see Options). The connection is made lazily: New neither
// contacts the API nor reads the token files (see Check).
//
// The connection has the SDK's dial options (go-grpc-kit's GRPCOptions, as
// registry.NewClients), except that calls fail fast: the SDK makes every call
// wait for a connection (WaitForReady), so an unreachable API would hold each
// ticket for its whole deadline; here a refused connection fails the attempt
// at once. Each call then goes, outermost first, through:
//   - the circuit (o.Circuit), which fails calls at once while the API is
//     down;
//   - retries in place of transient failures (o.Retry);
//   - o.DialOptions' interceptors, which thus see each attempt;
//   - the bridge's credential and its interceptor, which retries an attempt
//     once with a fresh token when the API answers UNAUTHENTICATED.
func New(_ context.Context, o Options) (*Provisioner, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	u, err := url.Parse(o.APIURL)
	if err != nil { // Validate parsed it
		return nil, errors.New("chainguard api_url must be a URL")
	}
	cred := newCredential(o)
	circ := newCircuit(o.Circuit, o.Now, o.Logger, u.Redacted())
	retry := &retrier{policy: o.Retry, sleep: o.Sleep}
	target, opts := delegate.GRPCOptions(*u)
	// Call options add up, the last one set winning: this overrides the
	// SDK's WaitForReady(true).
	opts = append(opts, grpc.WithDefaultCallOptions(grpc.WaitForReady(false)),
		grpc.WithChainUnaryInterceptor(circ.intercept, retry.intercept))
	opts = append(opts, o.DialOptions...)
	opts = append(opts, grpc.WithPerRPCCredentials(cred), grpc.WithChainUnaryInterceptor(cred.intercept))
	conn, err := grpc.NewClient(target, opts...)
	if err != nil {
		return nil, fmt.Errorf("chainguard: connect to %s: %w", u.Redacted(), err)
	}
	p := NewWithClients(ownedClients{Clients: registry.NewClientsFromConnection(conn), conn: conn}, o)
	p.circuit = circ
	return p, nil
}

// ownedClients are clients over a connection they own: Close closes it.
type ownedClients struct {
	registry.Clients
	conn *grpc.ClientConn
}

func (c ownedClients) Close() error { return c.conn.Close() }

// NewWithClients makes a Provisioner over existing clients, filling o's
// defaults; it does not validate o (see Options.Validate). The Provisioner
// owns c: Close closes it. Calls over c get none of the connection's
// behaviour New sets up (fail fast, retries, circuit): Unavailable is always
// nil.
func NewWithClients(c registry.Clients, o Options) *Provisioner {
	o = o.withDefaults()
	p := &Provisioner{opts: o, clients: c, now: o.Now, circuit: newCircuit(o.Circuit, o.Now, o.Logger, "")}
	now := func() time.Time { return p.now() } // tests replace p.now
	p.effective = newCached(p.opts.PlanTTL, now, p.loadEffective)
	p.catalog = newCached(p.opts.CatalogTTL, now, p.loadCatalog)
	return p
}

// Close closes the API connection, and waits for background reloads (which
// then fail at once).
func (p *Provisioner) Close() error {
	err := p.clients.Close()
	p.effective.wait()
	p.catalog.wait()
	return err
}

// Unavailable returns nil while calls to the API may go through, or, while
// the API is considered down (see CircuitPolicy), the error every call fails
// with at once: a *isync.Error of ClassRetryable and Cause CauseUnavailable
// whose reason says since when and when the bridge tries again. The engine
// asks before it starts a ticket.
func (p *Provisioner) Unavailable() error { return p.circuit.Unavailable() }

// Check makes one authenticated call (GetEffectiveEntitlements, which needs
// registry.entitlements.list) to verify the API URL, token, organization and
// role. It refreshes the cached plan. The API's host name is resolved first:
// gRPC reports a name that does not resolve only when the call's deadline
// ends, as "produced zero addresses"; this says so at once.
func (p *Provisioner) Check(ctx context.Context) error {
	if u, err := url.Parse(p.opts.APIURL); err == nil && u.Hostname() != "" && net.ParseIP(u.Hostname()) == nil {
		if _, err := net.DefaultResolver.LookupHost(ctx, u.Hostname()); err != nil {
			return fmt.Errorf("chainguard api_url %s: the host name does not resolve: %w", u.Redacted(), err)
		}
	}
	_, err := p.effective.refresh(ctx)
	return err
}

var _ isync.Warmer = (*Provisioner)(nil)

// Warm loads the organization's entitlements and the public catalog, both at
// once, unless they are cached: the engine calls it as a pass starts, so the
// reads overlap with the first listing instead of delaying the first ticket
// by two round trips. Errors are those of the reads; a ticket that needs the
// answer tries again.
func (p *Provisioner) Warm(ctx context.Context) error {
	// Bounded: the engine waits for Warm before its pass ends, and tickets
	// waiting for the same reads wait no longer than their own deadlines.
	ctx, cancel := context.WithTimeout(ctx, reloadTimeout)
	defer cancel()
	var wg sync.WaitGroup
	var errEff, errCat error
	wg.Add(2)
	go func() { defer wg.Done(); _, errEff = p.effective.get(ctx) }()
	go func() { defer wg.Done(); _, errCat = p.catalog.get(ctx) }()
	wg.Wait()
	return errors.Join(errEff, errCat)
}

// Plan returns the organization's entitlement plan (cached, see effective).
func (p *Provisioner) Plan(ctx context.Context) (registry.Plan, error) {
	eff, err := p.effective.get(ctx)
	if err != nil {
		return 0, err
	}
	return eff.GetPlan(), nil
}

// loadEffective reads the organization's effective entitlements
// (Entitlements.GetEffectiveEntitlements).
func (p *Provisioner) loadEffective(ctx context.Context) (*registry.GetEffectiveEntitlementsResponse, error) {
	resp, err := p.clients.Entitlements().GetEffectiveEntitlements(ctx,
		&registry.GetEffectiveEntitlementsRequest{Parent: p.opts.OrgID})
	if err != nil {
		return nil, p.classify(opEffective, "organization "+p.opts.OrgID, err)
	}
	return resp, nil
}

// forgetPlan drops the cached plan, so the next Provision reads it again.
func (p *Provisioner) forgetPlan() { p.effective.invalidate() }

// method picks the provisioning call from the mode, or else the plan. A plan
// the bridge does not know (PLAN_UNSPECIFIED) gets CreateRepo: the server
// then says what is missing.
func (p *Provisioner) method(ctx context.Context) (string, error) {
	switch p.opts.Mode {
	case ModeRepo:
		return opCreateRepo, nil
	case ModeEntitlement:
		return opAddEntitlements, nil
	}
	plan, err := p.Plan(ctx)
	if err != nil {
		return "", err
	}
	if plan == registry.Plan_PER_IMAGE || plan == registry.Plan_STARTER {
		return opAddEntitlements, nil
	}
	return opCreateRepo, nil
}

// Provision makes img available in the organization's registry. It is
// idempotent: an image already there is a success with AlreadyPresent set.
func (p *Provisioner) Provision(ctx context.Context, img isync.ImageRef) (isync.Result, error) {
	if img.Tag == "" {
		img.Tag = "latest"
	}
	if _, err := name.NewTag(p.pullRef(img), name.StrictValidation); err != nil || img.Name == "" || strings.Contains(img.Name, "/") {
		return isync.Result{}, isync.Rejectedf("%s is not a valid image; type %s", quote(img.String()), example)
	}
	method, err := p.method(ctx)
	if err != nil {
		return isync.Result{}, err
	}
	if err := p.validate(ctx, img); err != nil {
		return isync.Result{}, err
	}
	var res isync.Result
	if method == opAddEntitlements {
		res, err = p.addEntitlement(ctx, img)
	} else {
		res, err = p.createRepo(ctx, img)
	}
	if err != nil && p.opts.Mode == ModeAuto && isync.ClassOf(err) == isync.ClassBlocked {
		p.forgetPlan() // a plan change may be why
	}
	return res, err
}

// createRepo provisions with Registry.CreateRepo. It sends the name and the
// sync source only: the other fields are Chainguard's to set.
func (p *Provisioner) createRepo(ctx context.Context, img isync.ImageRef) (isync.Result, error) {
	repo, err := p.clients.Registry().CreateRepo(ctx, &registry.CreateRepoRequest{
		ParentId:        p.opts.OrgID,
		Repo:            &registry.Repo{Name: img.Name, SyncConfig: &registry.SyncConfig{Source: img.Name}},
		PreventExisting: true,
	})
	switch status.Code(err) {
	case codes.OK:
		return p.result(img, repo.GetId(), opCreateRepo, false), nil
	case codes.AlreadyExists:
		id, err := p.findRepo(ctx, img.Name)
		if err != nil {
			return isync.Result{}, err
		}
		return p.result(img, id, opCreateRepo, true), nil
	case codes.NotFound, codes.InvalidArgument:
		return isync.Result{}, p.unknownImage(ctx, opCreateRepo, img, err)
	default:
		return isync.Result{}, p.classify(opCreateRepo, img.Name, err)
	}
}

// addEntitlement provisions with Entitlements.AddEntitlementImages. The
// response lists only the images it added: an image missing from it was
// entitled before. Chainguard creates the organization's repository
// asynchronously, so RepoID is "" when it is not there yet.
func (p *Provisioner) addEntitlement(ctx context.Context, img isync.ImageRef) (isync.Result, error) {
	resp, err := p.clients.Entitlements().AddEntitlementImages(ctx, &registry.AddEntitlementImagesRequest{
		Entitlement: &registry.AddEntitlementImagesRequest_Parent{Parent: p.opts.OrgID},
		ImageNames:  []string{img.Name},
	})
	switch status.Code(err) {
	case codes.OK:
	case codes.NotFound, codes.InvalidArgument:
		return isync.Result{}, p.unknownImage(ctx, opAddEntitlements, img, err)
	default:
		return isync.Result{}, p.classify(opAddEntitlements, img.Name, err)
	}
	added := slices.ContainsFunc(resp.GetImages(), func(e *registry.EntitledImage) bool { return e.GetName() == img.Name })
	// The entitlement is in place: failing to read the repository id must
	// not fail (and later repeat) the provisioning.
	id, _ := p.findRepo(ctx, img.Name)
	return p.result(img, id, opAddEntitlements, !added), nil
}

// findRepo returns the id of the organization's repository name, or "" when
// there is none.
func (p *Provisioner) findRepo(ctx context.Context, repoName string) (string, error) {
	list, err := p.clients.Registry().ListRepos(ctx, &registry.RepoFilter{
		Name: repoName,
		Uidp: &common.UIDPFilter{ChildrenOf: p.opts.OrgID},
	})
	if err != nil {
		return "", p.classify(opListRepos, repoName, err)
	}
	for _, r := range list.GetItems() {
		if r.GetName() == repoName {
			return r.GetId(), nil
		}
	}
	return "", nil
}

func (p *Provisioner) result(img isync.ImageRef, repoID, method string, already bool) isync.Result {
	return isync.Result{RepoID: repoID, PullRef: p.pullRef(img), Method: method, AlreadyPresent: already}
}

// pullRef is where the organization pulls img: <Registry>/<OrgName>/<name>:<tag>.
func (p *Provisioner) pullRef(img isync.ImageRef) string {
	return fmt.Sprintf("%s/%s/%s:%s", p.opts.Registry, p.opts.OrgName, img.Name, img.Tag)
}
