// Package chainguard is an in-process fake of the Chainguard platform's
// Registry and Entitlements gRPC services and of its security token service
// (STS), faithful enough to exercise the bridge's provisioning end to end with
// the real SDK clients (registry.NewClients, sts.New). Tests and the `bridge
// demo` command use it.
//
// The fake models one customer organization: its registry repositories, its
// entitlement plan (CATALOG, PER_IMAGE or STARTER) with per-tier quotas, the
// 2,500-repository cap, and the public catalog. Every RPC checks the token and
// the organization scope the way the real API does, and is recorded in a call
// log. Errors can be injected per method to exercise retry and blocking paths.
//
// Registry and Entitlements calls accept the static token (WithToken) and the
// access tokens the STS issued, until they expire by the fake's clock
// (WithTokenTTL, WithClock) or are revoked (RevokeTokens). The STS's Exchange
// is served on the same address, so sts.New(srv.Addr(), audience) reaches it:
// it accepts one OIDC token (WithOIDCToken) for one identity (WithIdentity).
//
// Differences from the real API worth knowing:
//   - AddEntitlementImages creates the organization's repository itself, after
//     WithSyncDelay (default: at once); the real backend does it later in a
//     reconciler.
//   - A repository's tags are its catalog image's active tags; they appear
//     WithSyncDelay after the repository is created.
//   - Only the RPCs the bridge uses are implemented; the others answer
//     UNIMPLEMENTED (ExchangeRefreshToken among them).
//   - Exchange checks the OIDC token by value, not as a signed JWT of an
//     issuer and subject the identity trusts; issued tokens are opaque.
package chainguard

import (
	"context"
	"crypto/subtle"
	"math/rand/v2"
	"net"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	oidc "chainguard.dev/sdk/proto/platform/oidc/v1"
	registry "chainguard.dev/sdk/proto/platform/registry/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

// Defaults of a new Server.
const (
	DefaultToken    = "test-token"
	DefaultOrgID    = "8f3c2a1b7d6e5f40c9b8a7d6e5f4c3b2a1d0e9f8"
	DefaultOrgName  = "example.com"
	DefaultMaxRepos = 2500
)

// Server is a running fake. It is safe for concurrent use.
type Server struct {
	lis       net.Listener
	grpc      *grpc.Server
	closeOnce sync.Once

	mu          sync.Mutex
	token       string
	orgID       string
	orgName     string
	plan        registry.Plan
	catalog     []CatalogImage
	activeTiers []registry.CatalogTier // CATALOG plan: tiers with unlimited access
	quota       map[registry.CatalogTier]int
	maxRepos    int
	syncDelay   time.Duration
	now         func() time.Time
	oidcToken   string
	identity    string
	tokenTTL    time.Duration
	issued      map[string]issuedToken // access tokens from Exchange
	latency     time.Duration
	listenAddr  string

	// Indexes over catalog, repos and entitled, kept in step with them.
	catByName  map[string]int            // catalog image name → index of its first entry
	catByID    map[string]int            // CatalogID → index of its first entry
	repoByName map[string]*registry.Repo // the organization's repositories by name
	repoByID   map[string]*registry.Repo // ... and by id
	entByName  map[string]*registry.EntitledImage
	entByTier  map[registry.CatalogTier]int
	counts     map[string]int // calls by method

	repos     []*registry.Repo          // the organization's repositories, in creation order
	entitled  []*registry.EntitledImage // PER_IMAGE / STARTER entitlements, in order
	pending   []pendingRepo             // entitled images whose repository is not there yet
	calls     []Call
	inject    map[string]*injection
	faultRate float64 // share of calls answered with a random transient error (SetFaultRate)
	faultRng  *rand.Rand
	denied    map[string]bool
}

type pendingRepo struct {
	image CatalogImage
	due   time.Time
}

type injection struct {
	code    codes.Code
	msg     string
	times   int
	applied bool // the call takes effect before the error is answered
}

// Option configures a Server.
type Option func(*Server)

// WithToken sets the accepted token. A request's "authorization" metadata must
// be the token or "Bearer " + token. Default DefaultToken.
func WithToken(token string) Option { return func(s *Server) { s.token = token } }

// WithOrg sets the customer organization: its UIDP (40 hex digits) and its
// registry name, the path segment of cgr.dev/<name>/... Default DefaultOrgID
// and DefaultOrgName.
func WithOrg(uidp, name string) Option {
	return func(s *Server) { s.orgID, s.orgName = uidp, name }
}

// WithPlan sets the organization's entitlement plan: CATALOG (the default),
// PER_IMAGE or STARTER.
func WithPlan(p registry.Plan) Option { return func(s *Server) { s.plan = p } }

// WithCatalog replaces the public catalog (default DefaultCatalog).
func WithCatalog(images ...CatalogImage) Option {
	return func(s *Server) { s.catalog = append([]CatalogImage(nil), images...) }
}

// WithActiveTiers sets the tiers a CATALOG plan gives unlimited access to.
// Default: every tier in the catalog. CreateRepo from an image of another tier
// fails with FAILED_PRECONDITION.
func WithActiveTiers(tiers ...registry.CatalogTier) Option {
	return func(s *Server) { s.activeTiers = append([]registry.CatalogTier(nil), tiers...) }
}

// WithTierQuota sets how many images of tier a PER_IMAGE or STARTER plan may
// entitle. Without any WithTierQuota, BASE and APPLICATION allow 10 each and
// other tiers none.
func WithTierQuota(tier registry.CatalogTier, max int) Option {
	return func(s *Server) {
		if s.quota == nil {
			s.quota = map[registry.CatalogTier]int{}
		}
		s.quota[tier] = max
	}
}

// WithMaxRepos sets the organization's repository cap (default 2,500).
func WithMaxRepos(n int) Option { return func(s *Server) { s.maxRepos = n } }

// WithSyncDelay sets how long after AddEntitlementImages the organization's
// repository appears, and how long after a repository's creation its tags
// appear. Default 0: at once.
func WithSyncDelay(d time.Duration) Option { return func(s *Server) { s.syncDelay = d } }

// WithClock sets the fake's clock (default time.Now).
func WithClock(now func() time.Time) Option { return func(s *Server) { s.now = now } }

// WithLatency holds every RPC back by d before it is served, as a remote
// API's round trip does. A caller that gives up first gets DEADLINE_EXCEEDED
// or CANCELLED and nothing happens.
func WithLatency(d time.Duration) Option { return func(s *Server) { s.latency = d } }

// WithAddress makes the fake listen on addr ("127.0.0.1:PORT") instead of a
// random port of 127.0.0.1: a test stops a fake (Close) and starts another
// on the same address to model an API that goes away and comes back.
func WithAddress(addr string) Option { return func(s *Server) { s.listenAddr = addr } }

// New starts a fake on a random port of 127.0.0.1 (see WithAddress).
func New(opts ...Option) (*Server, error) {
	s := &Server{
		token:      DefaultToken,
		orgID:      DefaultOrgID,
		orgName:    DefaultOrgName,
		plan:       registry.Plan_CATALOG,
		catalog:    DefaultCatalog(),
		maxRepos:   DefaultMaxRepos,
		now:        time.Now,
		oidcToken:  DefaultOIDCToken,
		tokenTTL:   DefaultTokenTTL,
		issued:     map[string]issuedToken{},
		inject:     map[string]*injection{},
		denied:     map[string]bool{},
		repoByName: map[string]*registry.Repo{},
		repoByID:   map[string]*registry.Repo{},
		entByName:  map[string]*registry.EntitledImage{},
		entByTier:  map[registry.CatalogTier]int{},
		counts:     map[string]int{},
	}
	for _, o := range opts {
		o(s)
	}
	s.indexCatalog()
	if s.identity == "" {
		s.identity = s.orgID + "/5eed1d3a7c0ffee1"
	}
	if s.tokenTTL <= 0 {
		s.tokenTTL = DefaultTokenTTL
	}
	if s.quota == nil {
		s.quota = map[registry.CatalogTier]int{registry.CatalogTier_BASE: 10, registry.CatalogTier_APPLICATION: 10}
	}
	if s.activeTiers == nil {
		seen := map[registry.CatalogTier]bool{}
		for _, img := range s.catalog {
			if !seen[img.Tier] {
				seen[img.Tier] = true
				s.activeTiers = append(s.activeTiers, img.Tier)
			}
		}
	}
	if s.listenAddr == "" {
		s.listenAddr = "127.0.0.1:0"
	}
	lis, err := net.Listen("tcp", s.listenAddr)
	if err != nil {
		return nil, err
	}
	s.lis = lis
	s.grpc = grpc.NewServer(grpc.ChainUnaryInterceptor(s.intercept))
	registry.RegisterRegistryServer(s.grpc, &registryServer{s: s})
	registry.RegisterEntitlementsServer(s.grpc, &entitlementsServer{s: s})
	oidc.RegisterSecurityTokenServiceServer(s.grpc, &stsServer{s: s})
	go func() { _ = s.grpc.Serve(lis) }()
	return s, nil
}

// Addr is the API URL to give registry.NewClients, and the issuer URL to give
// sts.New: "http://127.0.0.1:PORT" (plaintext gRPC). Issued tokens are valid
// for the audience Addr().
func (s *Server) Addr() string { return "http://" + s.lis.Addr().String() }

// Close stops the server, cutting open connections. It is idempotent.
func (s *Server) Close() { s.closeOnce.Do(s.grpc.Stop) }

// Token is the accepted static token.
func (s *Server) Token() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.token
}

// OrgID is the organization's UIDP.
func (s *Server) OrgID() string { return s.orgID }

// OrgName is the organization's registry name (cgr.dev/<OrgName>/...).
func (s *Server) OrgName() string { return s.orgName }

// InjectError makes the next `times` calls of method (e.g. "CreateRepo") fail
// with code and msg, before any other check. times <= 0 clears the injection.
func (s *Server) InjectError(method string, code codes.Code, msg string, times int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if times <= 0 {
		delete(s.inject, method)
		return
	}
	s.inject[method] = &injection{code: code, msg: msg, times: times}
}

// InjectLostAnswer makes the next `times` calls of method take effect, then
// answer code and msg instead of their result, as when a response is lost on
// the way back: the caller cannot tell the call landed. times <= 0 clears
// the injection.
func (s *Server) InjectLostAnswer(method string, code codes.Code, msg string, times int) {
	s.InjectError(method, code, msg, times)
	s.mu.Lock()
	defer s.mu.Unlock()
	if inj := s.inject[method]; inj != nil {
		inj.applied = true
	}
}

// DenyCapability makes method answer PERMISSION_DENIED "caller does not have
// the required capabilities", as when the caller's role lacks the capability
// the method needs; deny false restores it.
func (s *Server) DenyCapability(method string, deny bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.denied[method] = deny
}

// intercept runs the checks every RPC shares, in the real API's order after
// the injected failures: authentication (an OIDC token for the STS, an API
// token for the rest), then capability. It records the call.
func (s *Server) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	method := path.Base(info.FullMethod)
	defer func() { s.record(method, req, status.Code(err)) }()
	if s.latency > 0 {
		t := time.NewTimer(s.latency)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	if applied, err := s.injected(method); err != nil {
		if applied {
			_, _ = handler(ctx, req) // applied, but the caller never hears of it
		}
		return nil, err
	}
	if code, applyFirst, ok := s.randomFault(method); ok {
		if applyFirst {
			_, _ = handler(ctx, req) // applied, but the caller never hears of it
		}
		return nil, status.Error(code, "injected transient failure")
	}
	auth := s.authenticate
	if strings.HasPrefix(info.FullMethod, stsPrefix) {
		auth = s.authenticateOIDC
	}
	if err := auth(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	denied := s.denied[method]
	s.mu.Unlock()
	if denied {
		return nil, errNoCapability
	}
	return handler(ctx, req)
}

// SetFaultRate answers the given share of calls (0 to 1) with UNAVAILABLE,
// DEADLINE_EXCEEDED or INTERNAL; a failing CreateRepo or AddEntitlementImages
// is applied first half of the time (the ambiguous case). seed makes a run
// repeatable. The STS is spared.
func (s *Server) SetFaultRate(rate float64, seed uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faultRate, s.faultRng = rate, rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

func (s *Server) randomFault(method string) (code codes.Code, applyFirst, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.faultRate <= 0 || method == "Exchange" || s.faultRng.Float64() >= s.faultRate {
		return 0, false, false
	}
	code = []codes.Code{codes.Unavailable, codes.DeadlineExceeded, codes.Internal}[s.faultRng.IntN(3)]
	applyFirst = (method == "CreateRepo" || method == "AddEntitlementImages") && s.faultRng.IntN(2) == 0
	return code, applyFirst, true
}

var errNoCapability = status.Error(codes.PermissionDenied, "caller does not have the required capabilities")

func (s *Server) injected(method string) (applied bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	inj := s.inject[method]
	if inj == nil {
		return false, nil
	}
	if inj.times--; inj.times <= 0 {
		delete(s.inject, method)
	}
	return inj.applied, status.Error(inj.code, inj.msg)
}

// authenticate accepts the static token, or an access token from Exchange
// that has not expired, was not revoked and is meant for this API.
func (s *Server) authenticate(ctx context.Context) error {
	tok, ok := bearer(ctx)
	if !ok {
		return status.Error(codes.Unauthenticated, "missing authorization token")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if subtle.ConstantTimeCompare([]byte(tok), []byte(s.token)) == 1 {
		return nil
	}
	it, ok := s.issued[tok]
	switch {
	case !ok:
		return status.Error(codes.Unauthenticated, "invalid or expired token")
	case !s.now().Before(it.expiry):
		return status.Error(codes.Unauthenticated, "token expired")
	case !slices.Contains(it.aud, s.Addr()):
		return status.Errorf(codes.Unauthenticated, "the token's audience is not %s", s.Addr())
	}
	return nil
}

// Call is one RPC the fake answered, in the call log.
type Call struct {
	Method  string     // "CreateRepo", "ListRepos", ...
	Request string     // the request in compact text form, truncated
	Code    codes.Code // the status answered (codes.OK on success)
	Time    time.Time

	req proto.Message // summarized into Request when the log is read
}

// record logs a call. The request is kept as is and only rendered as text
// when the log is read, so that the log costs the RPC path next to nothing.
func (s *Server) record(method string, req any, code codes.Code) {
	c := Call{Method: method, Code: code}
	if m, ok := req.(proto.Message); ok {
		c.req = m
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c.Time = s.now()
	s.calls = append(s.calls, c)
	s.counts[method]++
}

// summarize renders m on one line, at most 256 bytes.
func summarize(m proto.Message) string {
	txt := prototext.MarshalOptions{}.Format(m)
	txt = strings.Join(strings.Fields(txt), " ")
	if len(txt) > 256 {
		txt = txt[:253] + "..."
	}
	return txt
}

// Calls returns a copy of the call log, oldest first.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Call, len(s.calls))
	for i := range s.calls {
		c := &s.calls[i]
		if c.req != nil {
			c.Request, c.req = summarize(c.req), nil
		}
		out[i] = *c
	}
	return out
}

// CountCalls counts the logged calls of method ("CreateRepo", ...), failed
// ones included.
func (s *Server) CountCalls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[method]
}
