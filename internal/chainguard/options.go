package chainguard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"
)

// Provisioning modes (Options.Mode).
const (
	ModeAuto        = "auto"        // pick by the organization's plan (GetEffectiveEntitlements)
	ModeRepo        = "repo"        // always CreateRepo (CATALOG plans)
	ModeEntitlement = "entitlement" // always AddEntitlementImages (PER_IMAGE, STARTER plans)
)

// Defaults.
const (
	DefaultRegistry   = "cgr.dev"
	DefaultPlanTTL    = 5 * time.Minute
	DefaultCatalogTTL = time.Hour
	// DefaultIssuer is Chainguard's token issuer, whose security token
	// service exchanges an identity token for an API token.
	DefaultIssuer = "https://issuer.enforce.dev"
)

// Options configure a Provisioner.
//
// The API credential is exactly one of:
//   - Token: a static API token, used as is until it expires (about an hour
//     for `chainctl auth token`);
//   - TokenFile: a file holding a static API token, re-read when it changes
//     (its size, modification time or identity, checked at most every
//     TokenFileCheckInterval) and after the API rejects the token, so a
//     rotating Kubernetes Secret or a cron job running `chainctl auth token`
//     keeps the bridge authenticated without a restart;
//   - Identity and IdentityTokenFile: an assumed identity. The OIDC token in
//     IdentityTokenFile (e.g. a projected service account token), read anew at
//     each exchange, is exchanged at Issuer's security token service for an
//     API token of Identity with audience APIURL. That token is cached until
//     shortly before it expires and exchanged again then, or at once when the
//     API rejects it.
type Options struct {
	APIURL   string        // https://console-api.enforce.dev; http only to a loopback address (tests, demo)
	OrgID    string        // the organization's UIDP (40 hex digits)
	OrgName  string        // the registry path segment: cgr.dev/<OrgName>/...
	Token    string        // Chainguard API token (secret)
	Mode     string        // ModeAuto (default), ModeRepo or ModeEntitlement
	Registry string        // registry host of pull references, default DefaultRegistry
	PlanTTL  time.Duration // how long the plan lookup is cached, default DefaultPlanTTL
	// CatalogTTL is how long the catalog listing used for "did you mean"
	// suggestions is cached, default DefaultCatalogTTL.
	CatalogTTL time.Duration

	// TokenFile is the path of a file holding the API token (one line; the
	// surrounding white space is ignored).
	TokenFile string
	// Identity is the UIDP of the Chainguard identity to assume
	// (`chainctl iam identities create ... --identity-issuer ... --subject ...`).
	Identity string
	// IdentityTokenFile is the path of the OIDC token file the identity is
	// assumed with; its issuer and subject must match the identity's.
	IdentityTokenFile string
	// Issuer is the URL of Chainguard's issuer, whose STS exchanges the
	// identity token; default DefaultIssuer. https, or http to a loopback
	// address only.
	Issuer string

	// DialOptions are added to the API connection's dial options, after the
	// SDK's defaults. Unary interceptors given here (metrics, say) wrap the
	// bridge's own: they see each call once, with its final outcome, after
	// any retry with a fresh token.
	DialOptions []grpc.DialOption

	// Retry bounds the retries in place of a call that failed transiently;
	// the zero value is the defaults (see RetryPolicy).
	Retry RetryPolicy
	// Circuit says when the API is considered down and for how long calls
	// then fail at once; the zero value is the defaults (see CircuitPolicy).
	Circuit CircuitPolicy
	// Logger gets one line when the API is found down and one when it
	// answers again. The zero Logger logs nothing.
	Logger zerolog.Logger
	// Now is the clock of the circuit, of token expiry and of the caches;
	// default time.Now.
	Now func() time.Time
	// Sleep waits d, or until ctx ends and then returns ctx.Err(); retries
	// in place wait with it. Default: a timer.
	Sleep func(ctx context.Context, d time.Duration) error
}

// TokenFileCheckInterval is how often, at most, Options.TokenFile is checked
// for a change.
const TokenFileCheckInterval = 5 * time.Second

var identityPattern = regexp.MustCompile(`^[0-9a-f]{40}(/[0-9a-f]{16})+$`)

var orgIDPattern = regexp.MustCompile(`^[0-9a-f]{40}$`)

// withDefaults fills the zero fields.
func (o Options) withDefaults() Options {
	if o.Mode == "" {
		o.Mode = ModeAuto
	}
	if o.Registry == "" {
		o.Registry = DefaultRegistry
	}
	if o.PlanTTL <= 0 {
		o.PlanTTL = DefaultPlanTTL
	}
	if o.CatalogTTL <= 0 {
		o.CatalogTTL = DefaultCatalogTTL
	}
	if o.Issuer == "" {
		o.Issuer = DefaultIssuer
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Sleep == nil {
		o.Sleep = sleep
	}
	o.Retry = o.Retry.withDefaults()
	o.Circuit = o.Circuit.withDefaults()
	return o
}

// Validate checks the options without contacting the API or reading the
// token files. Its errors never contain the token.
func (o Options) Validate() error {
	o = o.withDefaults()
	var errs []error
	if err := validateURL("api_url", o.APIURL, "https://console-api.enforce.dev"); err != nil {
		errs = append(errs, err)
	}
	if !orgIDPattern.MatchString(o.OrgID) {
		errs = append(errs, errors.New("chainguard org_id must be the organization's UIDP: 40 lower-case hex digits"))
	}
	if _, err := name.NewRegistry(o.Registry, name.StrictValidation); err != nil || strings.Contains(o.Registry, "/") {
		errs = append(errs, fmt.Errorf("chainguard registry %q is not a registry host name", o.Registry))
	}
	if o.OrgName == "" || strings.Contains(o.OrgName, "/") {
		errs = append(errs, fmt.Errorf("chainguard org_name %q must be the organization's registry name, the path segment of %s/<org_name>/<image>", o.OrgName, o.Registry))
	} else if _, err := name.NewRepository(o.Registry+"/"+o.OrgName+"/image", name.StrictValidation); err != nil {
		errs = append(errs, fmt.Errorf("chainguard org_name %q is not a valid registry path segment", o.OrgName))
	}
	errs = append(errs, o.validateCredential()...)
	switch o.Mode {
	case ModeAuto, ModeRepo, ModeEntitlement:
	default:
		errs = append(errs, fmt.Errorf("chainguard provision mode %q must be %s, %s or %s", o.Mode, ModeAuto, ModeRepo, ModeEntitlement))
	}
	return errors.Join(errs...)
}

// validateCredential checks that exactly one credential is configured.
func (o Options) validateCredential() []error {
	var set []string
	if strings.TrimSpace(o.Token) != "" {
		set = append(set, "token")
	}
	if o.TokenFile != "" {
		set = append(set, "token_file")
	}
	if o.Identity != "" {
		set = append(set, "identity")
	}
	var errs []error
	switch {
	case len(set) == 0 && o.IdentityTokenFile != "":
		errs = append(errs, errors.New("chainguard identity is empty: identity_token_file is used with identity, the UIDP of the identity to assume"))
	case len(set) == 0:
		errs = append(errs, errors.New("chainguard token is empty: set one of token, token_file, or identity with identity_token_file"))
	case len(set) > 1:
		errs = append(errs, fmt.Errorf("chainguard credentials: set only one of token, token_file and identity (%s are set)", strings.Join(set, " and ")))
	}
	if o.TokenFile != "" && strings.TrimSpace(o.TokenFile) == "" {
		errs = append(errs, errors.New("chainguard token_file is blank"))
	}
	if o.Identity != "" {
		if !identityPattern.MatchString(o.Identity) {
			errs = append(errs, fmt.Errorf("chainguard identity %q must be the UIDP of the identity to assume: its organization's 40 hex digits, then /16 hex digits per level (chainctl iam identities list)", o.Identity))
		}
		if strings.TrimSpace(o.IdentityTokenFile) == "" {
			errs = append(errs, errors.New("chainguard identity_token_file is empty: an assumed identity needs the OIDC token file it is assumed with (e.g. a projected service account token)"))
		}
		if err := validateURL("issuer", o.Issuer, DefaultIssuer); err != nil {
			errs = append(errs, err)
		}
	} else if o.IdentityTokenFile != "" && len(set) > 0 {
		errs = append(errs, errors.New("chainguard identity_token_file is only used with identity"))
	}
	return errs
}

// validateURL checks the URL of key: https, or http to a loopback address
// only, since a token would otherwise cross the network in clear text. It
// never echoes a URL that carries credentials.
func validateURL(key, raw, example string) error {
	u, err := url.Parse(raw)
	switch {
	case raw == "":
		return fmt.Errorf("chainguard %s is empty (e.g. %s)", key, example)
	case err != nil || u.Host == "" || u.Hostname() == "":
		return fmt.Errorf("chainguard %s must be a URL such as %s", key, example)
	case u.User != nil:
		return fmt.Errorf("chainguard %s must not contain credentials: set the token instead", key)
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && isLoopback(u.Hostname()):
		return nil
	case u.Scheme == "http":
		return fmt.Errorf("chainguard %s %q: plain http is only allowed to a loopback address; use https", key, u.Redacted())
	default:
		return fmt.Errorf("chainguard %s %q must start with https://", key, u.Redacted())
	}
}

// plaintextLoopback reports whether raw is an http URL to a loopback address,
// the only kind reached without TLS.
func plaintextLoopback(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && u.Scheme == "http" && isLoopback(u.Hostname())
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// String describes the options with the token redacted, so that printing them
// never leaks it. The token files are shown by path.
func (o Options) String() string {
	tok := "<empty>"
	if o.Token != "" {
		tok = "<redacted>"
	}
	return fmt.Sprintf("{APIURL:%s OrgID:%s OrgName:%s Token:%s TokenFile:%s Identity:%s IdentityTokenFile:%s Issuer:%s Mode:%s Registry:%s PlanTTL:%s CatalogTTL:%s DialOptions:%d Retry:%+v Circuit:%+v}",
		o.APIURL, o.OrgID, o.OrgName, tok, o.TokenFile, o.Identity, o.IdentityTokenFile, o.Issuer, o.Mode, o.Registry, o.PlanTTL, o.CatalogTTL, len(o.DialOptions), o.Retry, o.Circuit)
}

// GoString is String, for %#v.
func (o Options) GoString() string { return "chainguard.Options" + o.String() }
