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

	"github.com/robfig/cron/v3"

	"github.com/chainguard-dev/image-request-bridge/internal/secret"
)

var (
	orgIDPattern       = regexp.MustCompile(`^[0-9a-f]{40}$`)
	orgNamePattern     = regexp.MustCompile(`^[a-z0-9]+([._-][a-z0-9]+)*$`)
	registryPattern    = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:[0-9]{1,5})?$`)
	sysIDPattern       = regexp.MustCompile(`^[0-9a-f]{32}$`)
	variablePattern    = regexp.MustCompile(`^[A-Za-z0-9_]+$`)
	statePattern       = regexp.MustCompile(`^-?[0-9]+$`)
	instanceIDPattern  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$`)
	customFieldPattern = regexp.MustCompile(`^customfield_[0-9]+$`)
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
	if !c.ServiceNow.Enabled && !c.Jira.Enabled {
		k.add("", "no source is enabled: set servicenow.enabled or jira.enabled to true")
	}
	if c.ServiceNow.Enabled {
		k.serviceNow()
	}
	if c.Jira.Enabled {
		k.jira()
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
	for _, src := range []struct {
		on   bool
		path string
		d    time.Duration
	}{
		{k.c.ServiceNow.Enabled, "servicenow.timeout", k.c.ServiceNow.Timeout},
		{k.c.Jira.Enabled, "jira.timeout", k.c.Jira.Timeout},
	} {
		if src.on && src.d > longest {
			longest, longestPath = src.d, src.path
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

func (k *checker) serviceNow() {
	sn := k.c.ServiceNow
	k.url("servicenow.instance_url", sn.InstanceURL)
	switch {
	case sn.CatalogItem == "":
		k.add("servicenow.catalog_item", "required: the sys_id of the image-request catalog item (32 lowercase hex)")
	case !sysIDPattern.MatchString(sn.CatalogItem):
		k.add("servicenow.catalog_item", "must be a sys_id: 32 lowercase hex characters (open the catalog item, right-click the header, Copy sys_id)")
	}

	if sn.UsesOAuth() {
		o := sn.OAuth
		if o.ClientID == "" {
			k.add("servicenow.oauth.client_id", "required with OAuth (System OAuth > Application Registry)")
		}
		k.secret("servicenow.oauth.client_secret", o.ClientSecret)
		switch o.GrantType {
		case GrantPassword:
			if sn.Username == "" {
				k.add("servicenow.username", "required with oauth.grant_type password")
			}
			k.secret("servicenow.password", sn.Password)
		case GrantClientCredentials:
			if sn.Username != "" || !sn.Password.IsZero() || sn.PasswordFile != "" {
				k.add("servicenow.username", "not used with oauth.grant_type client_credentials: remove username and password, or set grant_type: password")
			}
		default:
			k.add("servicenow.oauth.grant_type", "must be one of: %s, %s", GrantPassword, GrantClientCredentials)
		}
	} else {
		if sn.Username == "" && sn.Password.IsZero() {
			k.add("servicenow.password", "required: set username and password (basic authentication), or oauth.client_id and oauth.client_secret (OAuth)")
		} else {
			if sn.Username == "" {
				k.add("servicenow.username", "required with password")
			}
			k.secret("servicenow.password", sn.Password)
		}
	}

	names := map[string]string{}
	k.variable("servicenow.variables.image", sn.Variables.Image, names)
	k.variable("servicenow.variables.justification", sn.Variables.Justification, names)
	for i, v := range sn.Variables.Extra {
		k.variable(fmt.Sprintf("servicenow.variables.extra[%d]", i), v, names)
	}

	for _, s := range []struct{ path, v string }{
		{"servicenow.states.closed_complete", sn.States.ClosedComplete},
		{"servicenow.states.closed_incomplete", sn.States.ClosedIncomplete},
	} {
		if !statePattern.MatchString(s.v) {
			k.add(s.path, "must be the numeric value of a sc_req_item state choice, such as \"3\"")
		}
	}
	if sn.States.ClosedComplete != "" && sn.States.ClosedComplete == sn.States.ClosedIncomplete {
		k.add("servicenow.states.closed_incomplete", "must differ from closed_complete")
	}
	k.schedule("servicenow.schedule", sn.Schedule)
	k.between("servicenow.page_size", sn.PageSize, 1, 1000)
	k.positive("servicenow.timeout", sn.Timeout)
}

func (k *checker) jira() {
	j := k.c.Jira
	k.url("jira.url", j.URL)
	k.oneOf("jira.deployment", j.Deployment, DeploymentAuto, DeploymentCloud, DeploymentDataCenter)
	if j.IsCloud() {
		switch {
		case j.Email == "":
			k.add("jira.email", "required on Jira Cloud: the Atlassian account email the API token belongs to")
		case !strings.Contains(j.Email, "@"):
			k.add("jira.email", "must be an email address")
		}
	}
	k.secret("jira.api_token", j.APIToken)
	k.token("jira.api_token", j.APIToken)
	if strings.TrimSpace(j.JQL) == "" {
		k.add("jira.jql", "required: the JQL that finds approved image requests, such as project = IMG AND status = Approved")
	}
	seen := map[string]string{}
	k.field("jira.fields.image", j.Fields.Image, seen)
	k.field("jira.fields.justification", j.Fields.Justification, seen)
	for i, f := range j.Fields.Extra {
		k.field(fmt.Sprintf("jira.fields.extra[%d]", i), f, seen)
	}
	if strings.TrimSpace(j.Transitions.Done) == "" {
		k.add("jira.transitions.done", "required: the transition (or status) name that closes a served request")
	}
	if strings.TrimSpace(j.Transitions.Rejected) == "" {
		k.add("jira.transitions.rejected", "required: the transition (or status) name that closes a rejected request")
	}
	if j.Transitions.Done != "" && strings.EqualFold(j.Transitions.Done, j.Transitions.Rejected) {
		k.add("jira.transitions.rejected", "must differ from transitions.done")
	}
	k.schedule("jira.schedule", j.Schedule)
	k.between("jira.page_size", j.PageSize, 1, 1000)
	k.positive("jira.timeout", j.Timeout)
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

func (k *checker) oneOf(path, v string, allowed ...string) {
	for _, a := range allowed {
		if v == a {
			return
		}
	}
	k.add(path, "must be one of: %s", strings.Join(allowed, ", "))
}

// url checks an absolute http(s) URL; it reports whether the URL is usable.
// Problems never quote the URL: it might hold a credential.
func (k *checker) url(path, raw string) bool {
	if raw == "" {
		k.add(path, "required")
		return false
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Opaque != "" || u.Host == "" || u.Hostname() == "" {
		k.add(path, "must be an absolute URL such as https://example.com")
		return false
	}
	ok := true
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			k.add(path, "must have a port number between 1 and 65535")
			ok = false
		}
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
	case "http":
		if !isLoopback(u.Hostname()) {
			k.add(path, "must be an https URL (http allowed only for loopback)")
			ok = false
		}
	default:
		k.add(path, "must be an https URL (http allowed only for loopback)")
		ok = false
	}
	if u.User != nil {
		k.add(path, "must not contain a user name or password; use the credential keys")
		ok = false
	}
	if u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		k.add(path, "must not contain a query (?) or fragment (#)")
		ok = false
	}
	return ok
}

func (k *checker) secret(path string, s secret.Secret) {
	if s.IsZero() {
		k.add(path, "required: set %s, or %s_file to a file holding it", path, path)
		return
	}
}

// token checks an API token's shape: tokens never hold line breaks or
// surrounding spaces, which a stray newline in a file or variable adds.
func (k *checker) token(path string, s secret.Secret) {
	v := s.Reveal()
	if v != strings.TrimSpace(v) || strings.ContainsAny(v, "\r\n") {
		k.add(path, "must not start or end with spaces or contain line breaks (check the variable or file that sets it)")
	}
}

func (k *checker) variable(path, name string, seen map[string]string) {
	if !variablePattern.MatchString(name) {
		k.add(path, "must be a catalog variable name: letters, digits and _ (Maintain Items > the item > Variables > Name)")
		return
	}
	if first, dup := seen[name]; dup {
		k.add(path, "names the same variable as %s", first)
		return
	}
	seen[name] = path
}

func (k *checker) field(path, name string, seen map[string]string) {
	switch {
	case strings.TrimSpace(name) == "":
		k.add(path, "required: the field's name as shown in Jira, or its id such as customfield_10050")
		return
	case strings.HasPrefix(strings.ToLower(name), "customfield") && !customFieldPattern.MatchString(name):
		k.add(path, "a field id must look like customfield_10050")
		return
	}
	key := strings.ToLower(name)
	if first, dup := seen[key]; dup {
		k.add(path, "names the same field as %s", first)
		return
	}
	seen[key] = path
}

func (k *checker) schedule(path, spec string) {
	if _, err := cron.ParseStandard(spec); err != nil {
		k.add(path, "must be a cron expression with 5 fields (\"*/5 * * * *\") or a descriptor such as @every 1m or @hourly")
	}
}

func (k *checker) between(path string, v, lo, hi int) {
	if v < lo || v > hi {
		k.add(path, "must be between %d and %d", lo, hi)
	}
}

func (k *checker) positive(path string, d time.Duration) {
	if d <= 0 {
		k.add(path, "must be a positive duration")
	}
}
