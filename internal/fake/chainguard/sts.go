package chainguard

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"slices"
	"strings"
	"time"

	oidc "chainguard.dev/sdk/proto/platform/oidc/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Defaults of the fake's security token service (STS).
const (
	// DefaultOIDCToken is the identity token Exchange accepts: the stand-in
	// for a Kubernetes projected service account token or a CI job's OIDC
	// token.
	DefaultOIDCToken = "test-oidc-token"
	// DefaultTokenTTL is the lifetime of the access tokens Exchange issues,
	// as on the real platform.
	DefaultTokenTTL = time.Hour
	// IssuedTokenPrefix starts every access token Exchange issues, so tests
	// can look for leaked tokens without knowing their values.
	IssuedTokenPrefix = "fake-sts-"
)

// stsPrefix starts the full method name of every STS call.
var stsPrefix = "/" + oidc.SecurityTokenService_ServiceDesc.ServiceName + "/"

// WithOIDCToken sets the identity token Exchange accepts, sent as
// "authorization: Bearer <token>" the way sts.Exchange sends it. Default
// DefaultOIDCToken.
func WithOIDCToken(token string) Option { return func(s *Server) { s.oidcToken = token } }

// WithIdentity sets the UIDP of the identity the OIDC token may assume
// (sts.WithIdentity). Default: a fixed identity under the organization.
func WithIdentity(uidp string) Option { return func(s *Server) { s.identity = uidp } }

// WithTokenTTL sets the lifetime of issued access tokens, by the fake's clock
// (WithClock). Default DefaultTokenTTL.
func WithTokenTTL(d time.Duration) Option { return func(s *Server) { s.tokenTTL = d } }

// issuedToken is an access token Exchange handed out.
type issuedToken struct {
	expiry time.Time
	aud    []string
}

// stsServer implements the SecurityTokenService's Exchange: an OIDC token
// for an access token of an assumed identity.
type stsServer struct {
	oidc.UnimplementedSecurityTokenServiceServer
	s *Server
}

// Exchange issues an access token for the configured identity to a caller
// presenting the configured OIDC token (checked by the interceptor). The
// token is valid for the audiences asked for, until the TTL passes or
// RevokeTokens.
func (t *stsServer) Exchange(_ context.Context, req *oidc.ExchangeRequest) (*oidc.RawToken, error) {
	s := t.s
	aud := slices.DeleteFunc(slices.Clone(req.GetAud()), func(a string) bool { return a == "" })
	if len(aud) == 0 {
		return nil, status.Error(codes.InvalidArgument, "aud is required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if req.GetIdentity() != s.identity {
		return nil, status.Errorf(codes.PermissionDenied, "the token may not assume identity %q", req.GetIdentity())
	}
	now := s.now()
	for tok, it := range s.issued {
		if now.Sub(it.expiry) > s.tokenTTL { // long expired: forget
			delete(s.issued, tok)
		}
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	tok := IssuedTokenPrefix + hex.EncodeToString(b)
	exp := now.Add(s.tokenTTL)
	s.issued[tok] = issuedToken{expiry: exp, aud: aud}
	return &oidc.RawToken{Token: tok, Expiry: timestamppb.New(exp)}, nil
}

// authenticateOIDC checks an STS call's identity token.
func (s *Server) authenticateOIDC(ctx context.Context) error {
	tok, ok := bearer(ctx)
	if !ok {
		return status.Error(codes.Unauthenticated, "missing identity token")
	}
	s.mu.Lock()
	want := s.oidcToken
	s.mu.Unlock()
	if subtle.ConstantTimeCompare([]byte(tok), []byte(want)) != 1 {
		return status.Error(codes.Unauthenticated, "the identity token is invalid or expired")
	}
	return nil
}

// bearer returns the request's "authorization" token, without any "Bearer "
// prefix.
func bearer(ctx context.Context) (string, bool) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) == 0 || vals[0] == "" {
		return "", false
	}
	return strings.TrimPrefix(vals[0], "Bearer "), true
}

// Identity is the UIDP of the identity Exchange lets the OIDC token assume.
func (s *Server) Identity() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.identity
}

// OIDCToken is the identity token Exchange accepts.
func (s *Server) OIDCToken() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.oidcToken
}

// SetOIDCToken replaces the identity token Exchange accepts, as when a
// projected service account token is rotated.
func (s *Server) SetOIDCToken(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.oidcToken = token
}

// SetToken replaces the accepted static token, as when an administrator
// issues a new one: the old token stops working at once.
func (s *Server) SetToken(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.token = token
}

// RevokeTokens invalidates every access token Exchange has issued: the next
// call with one of them is UNAUTHENTICATED, and the client must exchange its
// identity token again.
func (s *Server) RevokeTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.issued)
}
