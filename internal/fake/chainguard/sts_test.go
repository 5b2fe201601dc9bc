package chainguard

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	registry "chainguard.dev/sdk/proto/platform/registry/v1"
	"chainguard.dev/sdk/sts"
	"google.golang.org/grpc/codes"
)

// clock is a settable clock for WithClock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// exchange runs the SDK's STS client against srv.
func exchange(t *testing.T, srv *Server, aud, identity, oidcToken string) (sts.TokenPair, error) {
	t.Helper()
	return sts.New(srv.Addr(), aud, sts.WithIdentity(identity)).Exchange(ctx(t), oidcToken)
}

func entitlements(t *testing.T, srv *Server, token string) error {
	t.Helper()
	c, err := registry.NewClients(context.Background(), srv.Addr(), token)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Entitlements().GetEffectiveEntitlements(ctx(t), &registry.GetEffectiveEntitlementsRequest{Parent: srv.OrgID()})
	return err
}

func TestSTSExchange(t *testing.T) {
	clk := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	srv, err := New(WithClock(clk.Now), WithTokenTTL(10*time.Minute), WithOIDCToken("k8s-sa-token"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)

	pair, err := exchange(t, srv, srv.Addr(), srv.Identity(), "k8s-sa-token")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(pair.AccessToken, IssuedTokenPrefix) || !pair.Expiry.Equal(clk.Now().Add(10*time.Minute)) {
		t.Fatalf("pair = %q, expiry %v", pair.AccessToken, pair.Expiry)
	}
	if err := entitlements(t, srv, pair.AccessToken); err != nil {
		t.Fatalf("issued token refused: %v", err)
	}
	if err := entitlements(t, srv, srv.Token()); err != nil {
		t.Fatalf("static token refused: %v", err)
	}

	clk.Advance(10 * time.Minute)
	wantCode(t, entitlements(t, srv, pair.AccessToken), codes.Unauthenticated, "token expired")

	second, err := exchange(t, srv, srv.Addr(), srv.Identity(), "k8s-sa-token")
	if err != nil {
		t.Fatal(err)
	}
	if second.AccessToken == pair.AccessToken {
		t.Fatal("the same token was issued twice")
	}
	srv.RevokeTokens()
	wantCode(t, entitlements(t, srv, second.AccessToken), codes.Unauthenticated, "invalid or expired token")

	if n := srv.CountCalls("Exchange"); n != 2 {
		t.Fatalf("%d exchanges logged, want 2", n)
	}
	for _, c := range srv.Calls() {
		if strings.Contains(c.Request, "k8s-sa-token") || strings.Contains(c.Request, IssuedTokenPrefix) {
			t.Fatalf("the call log holds a token: %+v", c)
		}
	}
}

func TestSTSRefusals(t *testing.T) {
	srv, _ := start(t, "")
	_, err := exchange(t, srv, srv.Addr(), srv.Identity(), "not-the-oidc-token")
	wantCode(t, err, codes.Unauthenticated, "identity token is invalid")

	_, err = exchange(t, srv, srv.Addr(), srv.OrgID()+"/0000000000000000", srv.OIDCToken())
	wantCode(t, err, codes.PermissionDenied, "may not assume identity")

	// A token for another audience does not open this API.
	pair, err := exchange(t, srv, "https://console-api.enforce.dev", srv.Identity(), srv.OIDCToken())
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, entitlements(t, srv, pair.AccessToken), codes.Unauthenticated, "audience")

	// The OIDC token is not an API token, nor an API token an OIDC token.
	wantCode(t, entitlements(t, srv, srv.OIDCToken()), codes.Unauthenticated, "invalid")
	_, err = exchange(t, srv, srv.Addr(), srv.Identity(), srv.Token())
	wantCode(t, err, codes.Unauthenticated, "identity token")

	srv.SetOIDCToken("rotated")
	if _, err := exchange(t, srv, srv.Addr(), srv.Identity(), "rotated"); err != nil {
		t.Fatalf("rotated OIDC token: %v", err)
	}
	srv.InjectError("Exchange", codes.Internal, "boom", 1)
	_, err = exchange(t, srv, srv.Addr(), srv.Identity(), "rotated")
	wantCode(t, err, codes.Internal, "boom")
}

func TestSetToken(t *testing.T) {
	srv, _ := start(t, "")
	old := srv.Token()
	srv.SetToken("new-token")
	wantCode(t, entitlements(t, srv, old), codes.Unauthenticated, "invalid")
	if err := entitlements(t, srv, "new-token"); err != nil {
		t.Fatal(err)
	}
}
