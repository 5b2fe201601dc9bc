package chainguard

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	fake "github.com/chainguard-dev/image-request-bridge/internal/fake/chainguard"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// testClock is a settable clock shared by the fake and the credential.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *testClock {
	return &testClock{now: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Token values the tests plant; none may appear in an error.
const (
	oidcSecret   = "oidc-5ecr3t-token"
	staticSecret = "static-5ecr3t"
)

// writeFile replaces path's content the way a Secret volume or a careful cron
// job does: a new file renamed over the old one.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// testIdentity is the identity the fake's STS lets the OIDC token assume.
const testIdentity = fake.DefaultOrgID + "/0123456789abcdef"

// setupIdentity runs a fake with an STS and a Provisioner (in repo mode) that
// assumes testIdentity with an OIDC token file. It returns the file's path.
func setupIdentity(t *testing.T, clk *testClock, mut func(*Options), fopts ...fake.Option) (*fake.Server, *Provisioner, string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "oidc-token")
	writeFile(t, file, oidcSecret+"\n")
	fopts = append([]fake.Option{fake.WithClock(clk.Now), fake.WithOIDCToken(oidcSecret), fake.WithIdentity(testIdentity)}, fopts...)
	srv, p := setup(t, func(o *Options) {
		o.Token = ""
		o.Identity = testIdentity
		o.IdentityTokenFile = file
		o.Issuer = o.APIURL // the fake serves the STS too
		o.Mode = ModeRepo
		o.Now = clk.Now
		if mut != nil {
			mut(o)
		}
	}, fopts...)
	return srv, p, file
}

// noSecrets fails when err, or its reason, holds a token.
func noSecrets(t *testing.T, err error, secrets ...string) {
	t.Helper()
	if err == nil {
		return
	}
	secrets = append(secrets, oidcSecret, staticSecret, fake.IssuedTokenPrefix, "5ecr3t")
	for _, s := range secrets {
		if s != "" && (strings.Contains(err.Error(), s) || strings.Contains(isync.ReasonOf(err), s)) {
			t.Fatalf("error leaks a token: %v", err)
		}
	}
}

// unauthenticated counts the calls the fake answered UNAUTHENTICATED.
func unauthenticated(srv *fake.Server) int {
	n := 0
	for _, c := range srv.Calls() {
		if c.Code == codes.Unauthenticated {
			n++
		}
	}
	return n
}

// provisionAll provisions every image in turn, failing on an error.
func provisionAll(t *testing.T, p *Provisioner, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := p.Provision(ctx(t), ref(n, "latest")); err != nil {
			t.Fatalf("provision %s: %v", n, err)
		}
	}
}

// Over several token lifetimes, the token is replaced before it expires: no
// call is ever refused, and there is about one exchange per lifetime.
func TestIdentityTokenRefreshedBeforeExpiry(t *testing.T) {
	clk := newClock()
	srv, p, _ := setupIdentity(t, clk, nil) // tokens last fake.DefaultTokenTTL, 1h
	start := clk.Now()
	images := []string{"python", "node", "go", "jdk", "nginx", "redis", "curl"}
	const step, steps = 7 * time.Minute, 30 // 3.5 hours
	for i := range steps {
		res, err := p.Provision(ctx(t), ref(images[i%len(images)], "latest"))
		if err != nil {
			t.Fatalf("at +%s: %v", time.Duration(i)*step, err)
		}
		if res.Method != opCreateRepo {
			t.Fatalf("result = %+v", res)
		}
		clk.Advance(step)
	}
	if n := unauthenticated(srv); n != 0 {
		t.Fatalf("%d calls were refused; call log: %+v", n, srv.Calls())
	}
	// Tokens are replaced when less than 5 minutes are left, before they
	// expire: at +0, +56m, +112m and +168m of the 203 minutes the calls span.
	var at []string
	for _, c := range srv.Calls() {
		if c.Method == "Exchange" {
			at = append(at, c.Time.Sub(start).String())
		}
	}
	if got := strings.Join(at, " "); got != "0s 56m0s 1h52m0s 2h48m0s" {
		t.Fatalf("exchanges at %s", got)
	}
	if n := srv.CountCalls("CreateRepo"); n != steps {
		t.Fatalf("%d CreateRepo calls, want %d (one per provision)", n, steps)
	}
}

// A short-lived token (10 minutes) is renewed with a tenth of its lifetime
// left, not 5 minutes: the refresh margin scales down.
func TestIdentityShortLivedTokens(t *testing.T) {
	clk := newClock()
	srv, p, _ := setupIdentity(t, clk, nil, fake.WithTokenTTL(10*time.Minute))
	for range 20 { // 20 minutes
		provisionAll(t, p, "python")
		clk.Advance(time.Minute)
	}
	if n := unauthenticated(srv); n != 0 {
		t.Fatalf("%d calls were refused", n)
	}
	// Renewed with one minute left: at +0, +9m, +18m.
	if n := srv.CountCalls("Exchange"); n != 3 {
		t.Fatalf("%d exchanges, want 3", n)
	}
}

// A revoked token is exchanged again when the API refuses it, and the call
// is made again: the caller sees no error, and CreateRepo runs once.
func TestIdentityRevokedTokenReexchanged(t *testing.T) {
	clk := newClock()
	srv, p, _ := setupIdentity(t, clk, nil)
	provisionAll(t, p, "python")
	if n := srv.CountCalls("Exchange"); n != 1 {
		t.Fatalf("%d exchanges, want 1", n)
	}
	srv.RevokeTokens()
	res, err := p.Provision(ctx(t), ref("node", "22"))
	if err != nil || res.AlreadyPresent {
		t.Fatalf("provision after revocation = %+v, %v", res, err)
	}
	if n := srv.CountCalls("Exchange"); n != 2 {
		t.Fatalf("%d exchanges, want 2", n)
	}
	var methods []string
	for _, c := range srv.Calls() {
		methods = append(methods, c.Method+":"+c.Code.String())
	}
	// ListRepos: the catalog, read once (cached) to validate the request.
	want := "Exchange:OK ListRepos:OK CreateRepo:OK CreateRepo:Unauthenticated Exchange:OK CreateRepo:OK"
	if got := strings.Join(methods, " "); got != want {
		t.Fatalf("calls = %s\nwant    %s", got, want)
	}
	if n := len(srv.OrgRepos()); n != 2 {
		t.Fatalf("org has %d repos, want 2", n)
	}
}

// Only one retry: a token refused twice is reported, as a blocked
// authentication problem, without a token in it.
func TestIdentityRefusedTwice(t *testing.T) {
	clk := newClock()
	srv, p, _ := setupIdentity(t, clk, nil)
	srv.InjectError("CreateRepo", codes.Unauthenticated, "token expired", 2)
	_, err := p.Provision(ctx(t), ref("python", "latest"))
	wantClass(t, err, isync.ClassBlocked, CauseUnauthenticated)
	noSecrets(t, err)
	if n, e := srv.CountCalls("CreateRepo"), srv.CountCalls("Exchange"); n != 2 || e != 2 {
		t.Fatalf("%d CreateRepo calls and %d exchanges, want 2 and 2", n, e)
	}
}

// A token is not handed out if it would expire during the call: a call whose
// deadline is beyond the cached token's expiry gets a fresh one.
func TestIdentityTokenOutlivesDeadline(t *testing.T) {
	clk := newClock()
	srv, p, _ := setupIdentity(t, clk, nil)
	check := func(d time.Duration) {
		t.Helper()
		c, cancel := context.WithTimeout(t.Context(), d)
		defer cancel()
		if err := p.Check(c); err != nil {
			t.Fatal(err)
		}
	}
	check(10 * time.Second)
	clk.Advance(40 * time.Minute) // 20 minutes left
	check(10 * time.Second)
	if n := srv.CountCalls("Exchange"); n != 1 {
		t.Fatalf("%d exchanges, want 1", n)
	}
	check(25 * time.Minute)
	if n := srv.CountCalls("Exchange"); n != 2 {
		t.Fatalf("%d exchanges, want 2: the token would expire during the call", n)
	}
	check(10 * time.Second)
	if n := srv.CountCalls("Exchange"); n != 2 {
		t.Fatalf("%d exchanges, want 2", n)
	}
}

// Concurrent calls share one exchange, and after a revocation one
// re-exchange.
func TestIdentityConcurrentCallsExchangeOnce(t *testing.T) {
	clk := newClock()
	srv, p, _ := setupIdentity(t, clk, nil)
	images := []string{"python", "node", "go", "jdk", "nginx", "redis", "curl", "git"}
	run := func(tag string) {
		var wg sync.WaitGroup
		for _, img := range images {
			wg.Go(func() {
				if _, err := p.Provision(ctx(t), ref(img, tag)); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	run("latest")
	if n := srv.CountCalls("Exchange"); n != 1 {
		t.Fatalf("%d exchanges, want 1", n)
	}
	srv.RevokeTokens()
	run("latest-dev")
	if n := srv.CountCalls("Exchange"); n != 2 {
		t.Fatalf("%d exchanges after revocation, want 2", n)
	}
}

// The identity token file is read at each exchange: a rotated projected
// token is used for the next exchange.
func TestIdentityTokenFileReadAtEachExchange(t *testing.T) {
	clk := newClock()
	srv, p, file := setupIdentity(t, clk, nil)
	provisionAll(t, p, "python")
	srv.SetOIDCToken("oidc-rotated")
	writeFile(t, file, "oidc-rotated\n")
	clk.Advance(time.Hour)
	provisionAll(t, p, "node")
	if n, u := srv.CountCalls("Exchange"), unauthenticated(srv); n != 2 || u != 0 {
		t.Fatalf("%d exchanges, %d refused calls; want 2 and 0", n, u)
	}
}

// An identity token file that cannot be read blocks the bridge with a reason
// naming the file; nothing is sent.
func TestIdentityTokenFileUnreadable(t *testing.T) {
	clk := newClock()
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	writeFile(t, empty, "\n")
	locked := filepath.Join(dir, "locked")
	writeFile(t, locked, oidcSecret)
	if err := os.Chmod(locked, 0); err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		filepath.Join(dir, "absent"): "no such file or directory",
		empty:                        "empty",
		dir:                          "not a regular file",
	}
	if os.Geteuid() != 0 {
		cases[locked] = "permission denied"
	}
	for path, why := range cases {
		t.Run(filepath.Base(path), func(t *testing.T) {
			srv, p, _ := setupIdentity(t, clk, func(o *Options) { o.IdentityTokenFile = path })
			_, err := p.Provision(ctx(t), ref("python", "latest"))
			wantClass(t, err, isync.ClassBlocked, CauseCredentials, path, "chainguard.identity_token_file")
			if !strings.Contains(err.Error(), why) {
				t.Fatalf("error %q does not say %q", err, why)
			}
			noSecrets(t, err)
			if n := len(srv.Calls()); n != 0 {
				t.Fatalf("%d calls sent without a token", n)
			}
			wantClass(t, p.Check(ctx(t)), isync.ClassBlocked, CauseCredentials, path)
		})
	}
}

// An identity token the issuer refuses blocks the bridge; an issuer failure
// is transient.
func TestIdentityExchangeRefused(t *testing.T) {
	clk := newClock()
	srv, p, file := setupIdentity(t, clk, nil)
	writeFile(t, file, "wrong-5ecr3t-oidc\n")
	_, err := p.Provision(ctx(t), ref("python", "latest"))
	wantClass(t, err, isync.ClassBlocked, CauseCredentials, "refused", testIdentity, file)
	noSecrets(t, err, "wrong-5ecr3t-oidc")
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("status %v", status.Code(err))
	}
	if n := srv.CountCalls("CreateRepo"); n != 0 {
		t.Fatalf("%d CreateRepo calls without a token", n)
	}

	writeFile(t, file, oidcSecret)
	srv.InjectError("Exchange", codes.Internal, "datastore saturated", 1)
	_, err = p.Provision(ctx(t), ref("python", "latest"))
	wantClass(t, err, isync.ClassRetryable, "")
	noSecrets(t, err)
	provisionAll(t, p, "python")

	// An identity the token may not assume.
	_, p, _ = setupIdentity(t, clk, func(o *Options) { o.Identity = fake.DefaultOrgID + "/ffffffffffffffff" })
	_, err = p.Provision(ctx(t), ref("python", "latest"))
	wantClass(t, err, isync.ClassBlocked, CauseCredentials, "ffffffffffffffff")
	noSecrets(t, err)
}

// A rotated token file is picked up without a restart: at the next check of
// the file, or at once when the API refuses the old token.
func TestTokenFileRotation(t *testing.T) {
	clk := newClock()
	file := filepath.Join(t.TempDir(), "token")
	writeFile(t, file, staticSecret+"-A\n")
	srv, p := setup(t, func(o *Options) {
		o.Token, o.TokenFile, o.Mode, o.Now = "", file, ModeRepo, clk.Now
	}, fake.WithToken(staticSecret+"-A"))
	provisionAll(t, p, "python")

	// Rotated ahead of time: the new token is read at the next check.
	writeFile(t, file, staticSecret+"-B\n")
	clk.Advance(TokenFileCheckInterval)
	srv.SetToken(staticSecret + "-B")
	provisionAll(t, p, "node")
	if n := unauthenticated(srv); n != 0 {
		t.Fatalf("%d calls refused", n)
	}

	// Between checks, a refused token makes the file read at once.
	srv.SetToken(staticSecret + "-C")
	writeFile(t, file, staticSecret+"-C")
	provisionAll(t, p, "go")
	if n := unauthenticated(srv); n != 1 {
		t.Fatalf("%d calls refused, want 1 (then retried)", n)
	}

	// A file caught empty mid-rewrite: the working token is kept.
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	clk.Advance(TokenFileCheckInterval)
	provisionAll(t, p, "jdk")

	// The token is revoked and the file not updated: blocked, without a
	// second attempt with the same token.
	writeFile(t, file, staticSecret+"-C")
	srv.SetToken(staticSecret + "-D")
	before := srv.CountCalls("CreateRepo")
	_, err := p.Provision(ctx(t), ref("nginx", "latest"))
	wantClass(t, err, isync.ClassBlocked, CauseUnauthenticated)
	noSecrets(t, err)
	if n := srv.CountCalls("CreateRepo") - before; n != 1 {
		t.Fatalf("%d CreateRepo attempts with a refused token, want 1", n)
	}

	// The file disappears: the reason names it.
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	_, err = p.Provision(ctx(t), ref("nginx", "latest"))
	wantClass(t, err, isync.ClassBlocked, CauseCredentials, file, "chainguard.token_file")
	noSecrets(t, err)

	// Restored: working again.
	writeFile(t, file, staticSecret+"-D")
	provisionAll(t, p, "nginx")
}

func TestTokenFileUnreadableAtStart(t *testing.T) {
	file := filepath.Join(t.TempDir(), "absent")
	_, p := setup(t, func(o *Options) { o.Token, o.TokenFile = "", file })
	err := p.Check(ctx(t))
	wantClass(t, err, isync.ClassBlocked, CauseCredentials, file)
}

// The caller's dial options wrap the bridge's retry: a metrics interceptor
// sees each call once, with its outcome.
func TestDialOptionsInterceptor(t *testing.T) {
	clk := newClock()
	var mu sync.Mutex
	var seen []string
	var calls atomic.Int32
	metrics := grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		calls.Add(1)
		err := invoker(ctx, method, req, reply, cc, opts...)
		mu.Lock()
		seen = append(seen, filepath.Base(method)+":"+status.Code(err).String())
		mu.Unlock()
		return err
	})
	srv, p, _ := setupIdentity(t, clk, func(o *Options) { o.DialOptions = []grpc.DialOption{metrics} })
	provisionAll(t, p, "python")
	srv.RevokeTokens()
	provisionAll(t, p, "node")
	mu.Lock()
	defer mu.Unlock()
	if got := strings.Join(seen, " "); got != "ListRepos:OK CreateRepo:OK CreateRepo:OK" {
		t.Fatalf("interceptor saw %s", got)
	}
}

func TestCredentialMetadata(t *testing.T) {
	for _, tc := range []struct {
		url    string
		secure bool
	}{
		{"https://console-api.enforce.dev", true},
		{"https://127.0.0.1:8443", true},
		{"http://127.0.0.1:8080", false},
		{"http://[::1]:8080", false},
		{"http://localhost:8080", false},
	} {
		o := validOptions()
		o.APIURL = tc.url
		c := newCredential(o.withDefaults())
		if c.RequireTransportSecurity() != tc.secure {
			t.Errorf("%s: RequireTransportSecurity = %v", tc.url, !tc.secure)
		}
		md, err := c.GetRequestMetadata(context.Background(), tc.url)
		if err != nil || len(md) != 1 || md["authorization"] != "Bearer "+o.Token {
			t.Errorf("%s: metadata %d keys, %v", tc.url, len(md), err)
		}
	}
	for _, tok := range []string{"abc", " abc\n", "Bearer abc", "bearer  abc "} {
		if got := bare(tok); got != "abc" {
			t.Errorf("bare(%q) = %q", tok, got)
		}
	}
	if audience("https://console-api.enforce.dev/") != "https://console-api.enforce.dev" {
		t.Error("the audience keeps a trailing slash")
	}
}

func TestCredentialOptionsValidate(t *testing.T) {
	id := strings.Repeat("0a", 20) + "/0123456789abcdef"
	for _, tc := range []struct {
		name string
		mut  func(*Options)
		want string // "" for valid
	}{
		{"token file", func(o *Options) { o.Token, o.TokenFile = "", "/run/secrets/token" }, ""},
		{"identity", func(o *Options) { o.Token, o.Identity, o.IdentityTokenFile = "", id, "/var/run/oidc" }, ""},
		{"nested identity", func(o *Options) { o.Token, o.Identity, o.IdentityTokenFile = "", id+"/fedcba9876543210", "/t" }, ""},
		{"loopback issuer", func(o *Options) {
			o.Token, o.Identity, o.IdentityTokenFile, o.Issuer = "", id, "/t", "http://127.0.0.1:1"
		}, ""},
		{"none", func(o *Options) { o.Token = "" }, "set one of token, token_file, or identity with identity_token_file"},
		{"token and file", func(o *Options) { o.TokenFile = "/t" }, "set only one of token, token_file and identity (token and token_file are set)"},
		{"token and identity", func(o *Options) { o.Identity, o.IdentityTokenFile = id, "/t" }, "(token and identity are set)"},
		{"file and identity", func(o *Options) { o.Token, o.TokenFile, o.Identity, o.IdentityTokenFile = "", "/a", id, "/t" }, "(token_file and identity are set)"},
		{"identity without file", func(o *Options) { o.Token, o.Identity = "", id }, "identity_token_file is empty"},
		{"file without identity", func(o *Options) { o.Token, o.IdentityTokenFile = "", "/t" }, "identity is empty"},
		{"identity file with token", func(o *Options) { o.IdentityTokenFile = "/t" }, "identity_token_file is only used with identity"},
		{"bad identity", func(o *Options) { o.Token, o.Identity, o.IdentityTokenFile = "", "bridge", "/t" }, "must be the UIDP"},
		{"org as identity", func(o *Options) { o.Token, o.Identity, o.IdentityTokenFile = "", strings.Repeat("0a", 20), "/t" }, "must be the UIDP"},
		{"http issuer", func(o *Options) {
			o.Token, o.Identity, o.IdentityTokenFile, o.Issuer = "", id, "/t", "http://issuer.enforce.dev"
		}, "chainguard issuer"},
		{"issuer credentials", func(o *Options) {
			o.Token, o.Identity, o.IdentityTokenFile, o.Issuer = "", id, "/t", "https://u:pw@issuer.enforce.dev"
		}, "must not contain credentials"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := validOptions()
			tc.mut(&o)
			err := o.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate() = %v", err)
			case tc.want == "":
				return
			case err == nil || !strings.Contains(err.Error(), tc.want):
				t.Fatalf("Validate() = %v, want %q", err, tc.want)
			}
			noSecrets(t, err, "s3cr3t", "pw@")
			if _, err := New(context.Background(), o); err == nil {
				t.Fatal("New accepted invalid options")
			}
		})
	}
	o := validOptions()
	o.Token, o.Identity, o.IdentityTokenFile = "", id, "/t"
	if s := o.String(); !strings.Contains(s, "Identity:"+id) || !strings.Contains(s, "IdentityTokenFile:/t") {
		t.Fatalf("String() = %s", s)
	}
	if o.withDefaults().Issuer != DefaultIssuer {
		t.Fatal("no default issuer")
	}
}

// The credential's errors unwrap to the file error, and status.Code reads
// their code.
func TestCredErrorShape(t *testing.T) {
	err := error(fileError("token_file", "/x", os.ErrNotExist))
	if !errors.Is(err, os.ErrNotExist) || status.Code(err) != codes.Unauthenticated {
		t.Fatalf("err = %v, code %v", err, status.Code(err))
	}
}
