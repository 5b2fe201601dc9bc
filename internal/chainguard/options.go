package chainguard

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
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
)

// Options configure a Provisioner.
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
}

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
	return o
}

// Validate checks the options without contacting the API. Its errors never
// contain the token.
func (o Options) Validate() error {
	o = o.withDefaults()
	var errs []error
	if err := validateAPIURL(o.APIURL); err != nil {
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
	if strings.TrimSpace(o.Token) == "" {
		errs = append(errs, errors.New("chainguard token is empty"))
	}
	switch o.Mode {
	case ModeAuto, ModeRepo, ModeEntitlement:
	default:
		errs = append(errs, fmt.Errorf("chainguard provision mode %q must be %s, %s or %s", o.Mode, ModeAuto, ModeRepo, ModeEntitlement))
	}
	return errors.Join(errs...)
}

// validateAPIURL accepts https URLs, and http ones to a loopback address only:
// the token would otherwise cross the network in clear text. It never echoes
// a URL that carries credentials.
func validateAPIURL(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case raw == "":
		return errors.New("chainguard api_url is empty (e.g. https://console-api.enforce.dev)")
	case err != nil || u.Host == "" || u.Hostname() == "":
		return errors.New("chainguard api_url must be a URL such as https://console-api.enforce.dev")
	case u.User != nil:
		return errors.New("chainguard api_url must not contain credentials: set the token instead")
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && isLoopback(u.Hostname()):
		return nil
	case u.Scheme == "http":
		return fmt.Errorf("chainguard api_url %q: plain http is only allowed to a loopback address; use https", u.Redacted())
	default:
		return fmt.Errorf("chainguard api_url %q must start with https://", u.Redacted())
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// String describes the options with the token redacted, so that printing them
// never leaks it.
func (o Options) String() string {
	tok := "<empty>"
	if o.Token != "" {
		tok = "<redacted>"
	}
	return fmt.Sprintf("{APIURL:%s OrgID:%s OrgName:%s Token:%s Mode:%s Registry:%s PlanTTL:%s CatalogTTL:%s}",
		o.APIURL, o.OrgID, o.OrgName, tok, o.Mode, o.Registry, o.PlanTTL, o.CatalogTTL)
}

// GoString is String, for %#v.
func (o Options) GoString() string { return "chainguard.Options" + o.String() }
