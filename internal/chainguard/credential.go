package chainguard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"chainguard.dev/sdk/sts"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// Token refresh policy of an assumed identity.
const (
	// maxRefreshMargin bounds how long before its expiry a token is
	// replaced; a tenth of its lifetime is used when that is shorter.
	maxRefreshMargin = 5 * time.Minute
	// unknownLifetime is assumed when the issuer does not say when a token
	// expires.
	unknownLifetime = 10 * time.Minute
	// maxTokenFile bounds a token file: a token is a few KiB.
	maxTokenFile = 64 << 10
	// userAgent identifies the bridge to the issuer.
	userAgent = "image-request-bridge"
)

// tokenSource yields the API token for a call.
type tokenSource interface {
	// token returns a token to send with a call bounded by ctx.
	token(ctx context.Context) (string, error)
	// invalidate reports that the API rejected tok. It returns whether a
	// call made again now may use another token, i.e. whether a retry can
	// succeed.
	invalidate(tok string) bool
}

// credential is the per-RPC credential of the API connection: it sends
// "authorization: Bearer <token>" with every call, the token coming from its
// source. Its interceptor retries a call once with a fresh token when the API
// answers UNAUTHENTICATED, which means that the call did nothing.
type credential struct {
	src    tokenSource
	secure bool
}

var _ credentials.PerRPCCredentials = (*credential)(nil)

// newCredential makes the credential o describes; o is valid and has its
// defaults.
func newCredential(o Options) *credential {
	c := &credential{secure: !plaintextLoopback(o.APIURL)}
	switch {
	case o.TokenFile != "":
		c.src = &fileSource{path: o.TokenFile, now: o.Now, every: TokenFileCheckInterval}
	case o.Identity != "":
		x := sts.New(o.Issuer, audience(o.APIURL), sts.WithIdentity(o.Identity), sts.WithUserAgent(userAgent))
		c.src = &identitySource{
			issuer:   o.Issuer,
			identity: o.Identity,
			file:     o.IdentityTokenFile,
			now:      o.Now,
			exchange: func(ctx context.Context, idToken string) (sts.TokenPair, error) {
				return x.Exchange(ctx, idToken)
			},
			lock: make(chan struct{}, 1),
		}
	default:
		c.src = staticSource(bare(o.Token))
	}
	return c
}

// bare trims a token of surrounding white space and of a "Bearer " prefix,
// which the credential adds.
func bare(tok string) string {
	tok = strings.TrimSpace(tok)
	const prefix = "bearer "
	if len(tok) > len(prefix) && strings.EqualFold(tok[:len(prefix)], prefix) {
		tok = strings.TrimSpace(tok[len(prefix):])
	}
	return tok
}

// audience is the audience of the API's tokens: its URL, without a trailing
// slash.
func audience(apiURL string) string { return strings.TrimRight(apiURL, "/") }

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (c *credential) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	tok, err := c.src.token(ctx)
	attempt, _ := ctx.Value(attemptKey{}).(*attempt)
	if attempt != nil {
		attempt.set(tok, err)
	}
	if err != nil {
		if st, ok := status.FromError(err); ok {
			return nil, st.Err()
		}
		return nil, status.FromContextError(err).Err()
	}
	return map[string]string{"authorization": "Bearer " + tok}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials: tokens
// travel over TLS only, except to a plaintext loopback address.
func (c *credential) RequireTransportSecurity() bool { return c.secure }

// attempt records the token a call attempt used, or why there was none.
type attempt struct {
	mu  sync.Mutex
	tok string
	err error
}

type attemptKey struct{}

func (a *attempt) set(tok string, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.tok, a.err = tok, err
}

func (a *attempt) get() (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.tok, a.err
}

// intercept is a unary client interceptor: when the API rejects a call's
// token (UNAUTHENTICATED, so the call did nothing, and a retry is safe even
// for CreateRepo), it drops the token and makes the call once more with a
// new one. When no token could be had, it returns the credential's own error,
// which says why (an unreadable file, a refused exchange).
func (c *credential) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	first := &attempt{}
	err := invoker(context.WithValue(ctx, attemptKey{}, first), method, req, reply, cc, opts...)
	used, credErr := first.get()
	switch {
	case credErr != nil && err != nil:
		return credErr
	case status.Code(err) != codes.Unauthenticated || used == "" || !c.src.invalidate(used):
		return err
	}
	again := &attempt{}
	err = invoker(context.WithValue(ctx, attemptKey{}, again), method, req, reply, cc, opts...)
	if _, credErr := again.get(); credErr != nil && err != nil {
		return credErr
	}
	return err
}

// credError is a failure to obtain a token: a token file that cannot be read,
// or an exchange the issuer refused or could not answer. Its message names
// the file or the identity, never a token.
type credError struct {
	reason    string // what failed and what to check, for the ticket note
	err       error
	code      codes.Code // the status the failed call reports
	transient bool       // may work on a later attempt without anyone acting
}

func (e *credError) Error() string {
	return "chainguard credentials: " + e.reason + ": " + e.err.Error()
}
func (e *credError) Unwrap() error { return e.err }

// GRPCStatus lets status.Code and status.Convert read the code.
func (e *credError) GRPCStatus() *status.Status { return status.New(e.code, e.Error()) }

func fileError(key, path string, err error) *credError {
	return &credError{
		reason: fmt.Sprintf("the bridge cannot read its %s %s: check chainguard.%s and the file or volume that provides it",
			strings.ReplaceAll(key, "_", " "), path, key),
		err:  err,
		code: codes.Unauthenticated,
	}
}

// staticSource is a fixed token.
type staticSource string

func (s staticSource) token(context.Context) (string, error) { return string(s), nil }
func (s staticSource) invalidate(string) bool                { return false }

// fileSource is a token read from a file, and read again when the file
// changes. The file is looked at no more often than every, so that a busy
// bridge does not stat it at every call.
type fileSource struct {
	path  string
	now   func() time.Time
	every time.Duration

	mu      sync.Mutex
	tok     string      // the last token read
	info    os.FileInfo // of the file tok was read from
	checked time.Time   // when the file was last looked at
	stale   bool        // tok was rejected: read the file again, keep no fallback
}

func (f *fileSource) token(context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	if f.tok != "" && !f.stale && now.Sub(f.checked) < f.every && !now.Before(f.checked) {
		return f.tok, nil
	}
	f.checked = now
	if f.tok != "" && !f.stale {
		if st, err := os.Stat(f.path); err == nil && sameFile(f.info, st) {
			return f.tok, nil
		}
	}
	tok, st, err := readTokenFile(f.path)
	if err != nil {
		if f.tok != "" && !f.stale {
			// A file being rewritten in place can be empty for a moment:
			// keep the token that works and look again later. Once the API
			// rejects it, the file's problem is reported.
			return f.tok, nil
		}
		return "", fileError("token_file", f.path, err)
	}
	f.tok, f.info, f.stale = tok, st, false
	return tok, nil
}

// invalidate reads the file at once: a retry can succeed only if it now holds
// another token, or if it cannot be read (the retry then reports why).
func (f *fileSource) invalidate(tok string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if tok != f.tok {
		return true // already replaced
	}
	f.checked = f.now()
	fresh, st, err := readTokenFile(f.path)
	if err != nil {
		f.stale = true
		return true
	}
	if fresh == f.tok {
		f.info = st
		return false
	}
	f.tok, f.info, f.stale = fresh, st, false
	return true
}

// sameFile reports whether b describes the same, unchanged file as a.
func sameFile(a, b os.FileInfo) bool {
	return a != nil && os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// readTokenFile reads a token file: a regular file (symbolic links are
// followed, as Kubernetes mounts secrets through them) of at most
// maxTokenFile bytes, its content trimmed of surrounding white space. Errors
// never quote the content.
func readTokenFile(path string) (string, os.FileInfo, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", nil, reason(err)
	}
	if !st.Mode().IsRegular() {
		return "", nil, errors.New("not a regular file")
	}
	// Not blocking: the file may have been replaced by a FIFO meanwhile.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return "", nil, reason(err)
	}
	defer f.Close()
	if st, err = f.Stat(); err != nil {
		return "", nil, reason(err)
	}
	if !st.Mode().IsRegular() {
		return "", nil, errors.New("not a regular file")
	}
	data, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	switch {
	case err != nil:
		return "", nil, reason(err)
	case len(data) > maxTokenFile:
		return "", nil, fmt.Errorf("larger than %d KiB", maxTokenFile>>10)
	}
	tok := bare(string(data))
	switch {
	case tok == "":
		return "", nil, errors.New("the file is empty")
	case strings.ContainsAny(tok, " \t\r\n"):
		return "", nil, errors.New("the file holds more than one line or word, not a single token")
	}
	return tok, st, nil
}

// reason strips the path from a file error: the caller names the file.
func reason(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// identitySource exchanges an identity token for API tokens of an assumed
// identity, and caches each until shortly before it expires.
type identitySource struct {
	issuer   string
	identity string
	file     string // the identity token, read anew at each exchange
	now      func() time.Time
	exchange func(ctx context.Context, idToken string) (sts.TokenPair, error)
	lock     chan struct{} // held while exchanging: one exchange at a time

	mu       sync.Mutex
	tok      string
	expiry   time.Time     // by now's clock
	lifetime time.Duration // expiry minus the time of the exchange
}

func (s *identitySource) token(ctx context.Context) (string, error) {
	if tok, ok := s.cached(ctx); ok {
		return tok, nil
	}
	select {
	case s.lock <- struct{}{}:
		defer func() { <-s.lock }()
	case <-ctx.Done():
		return "", ctx.Err()
	}
	if tok, ok := s.cached(ctx); ok { // exchanged while this call waited
		return tok, nil
	}
	idToken, _, err := readTokenFile(s.file)
	if err != nil {
		return "", fileError("identity_token_file", s.file, err)
	}
	start := s.now()
	pair, err := s.exchange(ctx, idToken)
	if err != nil {
		return "", s.exchangeError(err, idToken)
	}
	if pair.AccessToken == "" {
		return "", &credError{reason: s.refused(), err: errors.New("the issuer returned no token"), code: codes.Unauthenticated}
	}
	expiry := pair.Expiry
	if expiry.IsZero() {
		expiry = start.Add(unknownLifetime)
	}
	lifetime := expiry.Sub(start)
	if lifetime <= 0 {
		return "", &credError{
			reason: fmt.Sprintf("the token issued for identity %s had already expired by this host's clock", s.identity),
			err:    errors.New("check the system clock"),
			code:   codes.Unauthenticated,
		}
	}
	s.mu.Lock()
	s.tok, s.expiry, s.lifetime = pair.AccessToken, expiry, lifetime
	s.mu.Unlock()
	return pair.AccessToken, nil
}

// cached returns the cached token if it is good for a call bounded by ctx:
// it must not be within its refresh margin (a tenth of its lifetime, at most
// maxRefreshMargin) nor expire before the call's deadline. A deadline longer
// than half the token's lifetime is counted as half of it, so that a fresh
// token always qualifies.
func (s *identitySource) cached(ctx context.Context) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tok == "" {
		return "", false
	}
	now := s.now()
	need := min(maxRefreshMargin, s.lifetime/10)
	if dl, ok := ctx.Deadline(); ok {
		need = max(need, min(time.Until(dl), s.lifetime/2))
	}
	if !s.expiry.After(now.Add(need)) {
		return "", false
	}
	return s.tok, true
}

func (s *identitySource) invalidate(tok string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tok == tok {
		s.tok = ""
	}
	return true
}

func (s *identitySource) refused() string {
	return fmt.Sprintf("the issuer %s refused to exchange the token in chainguard.identity_token_file (%s) for identity %s: check that the identity's issuer and subject match that token (chainctl iam identities describe %s)",
		s.issuer, s.file, s.identity, s.identity)
}

// exchangeError describes a failed exchange. A status the issuer gives for a
// bad token or identity needs an administrator; the rest may pass.
func (s *identitySource) exchangeError(err error, idToken string) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	st := status.Convert(err)
	msg := strings.ReplaceAll(st.Message(), idToken, "<redacted>")
	err = status.Error(st.Code(), msg)
	switch st.Code() {
	case codes.Unauthenticated, codes.PermissionDenied, codes.InvalidArgument, codes.NotFound,
		codes.FailedPrecondition, codes.Unimplemented, codes.OutOfRange:
		return &credError{reason: s.refused(), err: err, code: codes.Unauthenticated}
	default:
		return &credError{
			reason:    fmt.Sprintf("the issuer %s could not exchange the identity token for identity %s", s.issuer, s.identity),
			err:       err,
			code:      codes.Unavailable,
			transient: true,
		}
	}
}
