package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/chainguard-dev/image-request-bridge/internal/secret"
	"github.com/chainguard-dev/image-request-bridge/internal/source"
)

var (
	orgIDPattern      = regexp.MustCompile(`^[0-9a-f]{40}$`)
	orgNamePattern    = regexp.MustCompile(`^[a-z0-9]+([._-][a-z0-9]+)*$`)
	registryPattern   = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:[0-9]{1,5})?$`)
	instanceIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$`)
)

// Validate checks the configuration and returns every problem at once, joined;
// each names its key path ("servicenow.instance_url: must be an https URL
// (http allowed only for loopback)"). It does not apply defaults: Load and
// Parse do that first.
func (c *Config) Validate() error {
	ps := c.problems()
	if len(ps) == 0 {
		return nil
	}
	errs := make([]error, len(ps))
	for i, p := range ps {
		errs[i] = p
	}
	return errors.Join(errs...)
}

type checker struct {
	c    *Config
	errs []*FieldError
}

func (k *checker) add(path, format string, args ...any) {
	line := 0
	if k.c.lines != nil {
		line = k.c.lines[path]
	}
	k.errs = append(k.errs, &FieldError{File: k.c.file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (c *Config) problems() []*FieldError {
	k := &checker{c: c}
	k.bridge()
	k.log()
	k.state()
	k.chainguard()
	if len(c.EnabledSources()) == 0 {
		keys := make([]string, len(c.sources))
		for i, s := range c.sources {
			keys[i] = s.Name() + ".enabled"
		}
		k.add("", "no source is enabled: set %s to true", strings.Join(keys, " or "))
	}
	for _, s := range c.EnabledSources() {
		p := source.NewProblems(s.Name())
		s.Section.Validate(p)
		k.addAll(p)
	}
	k.server()
	if err := c.Policy.Validate(); err != nil {
		k.add("policy", "%v", err)
	}
	return k.errs
}

// minLease is the shortest bridge.lease accepted.
const minLease = 30 * time.Second

func (k *checker) bridge() {
	b := k.c.Bridge
	if !instanceIDPattern.MatchString(b.InstanceID) {
		k.add("bridge.instance_id", "must be 1 to 128 letters, digits or . _ : @ -, starting with a letter or digit (default: the host name)")
	}
	if b.Concurrency < 1 || b.Concurrency > 64 {
		k.add("bridge.concurrency", "must be between 1 and 64")
	}
	// Each upstream call must finish well within the lease (the engine
	// bounds every call by half of it), so the lease must be longer than
	// twice the longest source timeout.
	const why = "each upstream call must finish well within the lease so a second bridge never takes over a ticket in flight"
	longest, longestPath := time.Duration(0), ""
	for _, src := range k.c.EnabledSources() {
		if d := src.Section.Settings().Timeout; d > longest {
			longest, longestPath = d, src.Name()+".timeout"
		}
	}
	switch {
	case b.Lease < minLease:
		k.add("bridge.lease", "must be at least %s: %s", minLease, why)
	case longest > 0 && b.Lease <= 2*longest:
		k.add("bridge.lease", "must be longer than twice the longest source timeout (%s: %s), so more than %s: %s", longestPath, longest, 2*longest, why)
	}
	if b.Backoff.Min <= 0 {
		k.add("bridge.backoff.min", "must be a positive duration")
	}
	if b.Backoff.Max < b.Backoff.Min {
		k.add("bridge.backoff.max", "must not be shorter than bridge.backoff.min")
	}
	k.oneOf("bridge.close_on", b.CloseOn, "provisioned", "ready")
	if b.MaxImages < 1 || b.MaxImages > 100 {
		k.add("bridge.max_images", "must be between 1 and 100")
	}
	if b.DailyLimit < 0 {
		k.add("bridge.daily_limit", "must be 0 (no limit) or a positive number of images")
	}
	if b.PassTimeout < time.Minute {
		k.add("bridge.pass_timeout", "must be at least 1m: a pass lists every approved ticket before it ends")
	}
	if b.ReadyTimeout < time.Minute {
		k.add("bridge.ready_timeout", "must be at least 1m: images take a few minutes to sync")
	}
	if b.ReadyPoll < 5*time.Second || b.ReadyPoll > b.ReadyTimeout {
		k.add("bridge.ready_poll", "must be between 5s and bridge.ready_timeout")
	}
}

func (k *checker) log() {
	k.oneOf("log.level", k.c.Log.Level, "debug", "info", "warn", "error")
	k.oneOf("log.format", k.c.Log.Format, "auto", "json", "console")
}

func (k *checker) state() {
	k.oneOf("state.driver", k.c.State.Driver, "sqlite")
	if strings.TrimSpace(k.c.State.DSN) == "" {
		k.add("state.dsn", "required: the SQLite database file")
	}
}

func (k *checker) chainguard() {
	cg := k.c.Chainguard
	if k.url("chainguard.api_url", cg.APIURL) {
		if u, _ := url.Parse(cg.APIURL); strings.EqualFold(u.Hostname(), "localhost") {
			k.add("chainguard.api_url", "use 127.0.0.1 instead of localhost (the Chainguard client cannot dial localhost)")
		}
	}
	switch {
	case cg.OrgID == "":
		k.add("chainguard.org_id", "required: the organization's UIDP (chainctl iam organizations list -o table)")
	case !orgIDPattern.MatchString(cg.OrgID):
		k.add("chainguard.org_id", "must be the organization's UIDP: 40 lowercase hex characters (chainctl iam organizations list -o table)")
	}
	switch {
	case cg.OrgName == "":
		k.add("chainguard.org_name", "required: the organization name, as in cgr.dev/<org_name>/<image>")
	case !orgNamePattern.MatchString(cg.OrgName):
		k.add("chainguard.org_name", "must be the organization name as it appears in cgr.dev/<org_name>/<image>: lowercase letters, digits, '.', '_' and '-'")
	}
	k.chainguardCredential()
	if k.url("chainguard.issuer", cg.Issuer) {
		if u, _ := url.Parse(cg.Issuer); strings.EqualFold(u.Hostname(), "localhost") {
			k.add("chainguard.issuer", "use 127.0.0.1 instead of localhost (the Chainguard client cannot dial localhost)")
		}
	}
	k.oneOf("chainguard.provision", cg.Provision, ProvisionAuto, ProvisionRepo, ProvisionEntitlement)
	if !registryPattern.MatchString(cg.Registry) {
		k.add("chainguard.registry", "must be a registry host name such as cgr.dev (no scheme, no path)")
	}
}

// identityPattern matches the UIDP of an identity: its organization's UID,
// then one 16-hex-digit segment per level.
var identityPattern = regexp.MustCompile(`^[0-9a-f]{40}(/[0-9a-f]{16})+$`)

// chainguardCredential checks that exactly one of token, token_file and
// identity (with identity_token_file) is set. A token read from token_file
// counts as token_file.
func (k *checker) chainguardCredential() {
	cg := k.c.Chainguard
	var set []string
	if !cg.Token.IsZero() && cg.TokenFile == "" {
		set = append(set, "chainguard.token")
	}
	if cg.TokenFile != "" {
		set = append(set, "chainguard.token_file")
	}
	if cg.Identity != "" {
		set = append(set, "chainguard.identity")
	}
	switch {
	case len(set) == 0 && cg.IdentityTokenFile != "":
		k.add("chainguard.identity", "required with chainguard.identity_token_file: the UIDP of the identity to assume (chainctl iam identities list)")
	case len(set) == 0:
		k.add("chainguard.token", "required: set chainguard.token, chainguard.token_file (a file holding it), or chainguard.identity with chainguard.identity_token_file (an assumed identity)")
	case len(set) > 1:
		k.add(set[len(set)-1], "set only one of chainguard.token, chainguard.token_file and chainguard.identity (%s are set)", strings.Join(set, " and "))
	}
	if !cg.Token.IsZero() {
		k.token("chainguard.token", cg.Token)
	}
	if cg.Identity != "" {
		if !identityPattern.MatchString(cg.Identity) {
			k.add("chainguard.identity", "must be the UIDP of the identity to assume: the organization's 40 lowercase hex characters, then /16 hex characters per level (chainctl iam identities list)")
		}
		if cg.IdentityTokenFile == "" {
			k.add("chainguard.identity_token_file", "required with chainguard.identity: the file holding the OIDC token the identity is assumed with, such as a projected service account token")
		}
	} else if cg.IdentityTokenFile != "" && len(set) > 0 {
		k.add("chainguard.identity_token_file", "only used with chainguard.identity: remove it, or set chainguard.identity instead of %s", set[0])
	}
}

func (k *checker) server() {
	_, port, err := net.SplitHostPort(k.c.Server.Listen)
	if err != nil {
		k.add("server.listen", "must be host:port or :port, such as :8080 or 127.0.0.1:8080")
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		k.add("server.listen", "must have a port number between 0 and 65535")
	}
}

// addAll adds the problems p collected.
func (k *checker) addAll(p *source.Problems) {
	for _, e := range p.List() {
		k.add(e.Path, "%s", e.Msg)
	}
}

// Helpers shared with the sources' sections (source.Problems), for the
// keys at the top level.

func (k *checker) oneOf(path, v string, allowed ...string) {
	p := source.NewProblems("")
	p.OneOf(path, v, allowed...)
	k.addAll(p)
}

func (k *checker) url(path, raw string) bool {
	p := source.NewProblems("")
	ok := p.URL(path, raw)
	k.addAll(p)
	return ok
}

func (k *checker) token(path string, s secret.Secret) {
	p := source.NewProblems("")
	p.Token(path, s)
	k.addAll(p)
}
