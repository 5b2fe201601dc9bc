package servicenow

import (
	"fmt"
	"regexp"
	"time"

	"github.com/chainguard-dev/image-request-bridge/internal/secret"
	"github.com/chainguard-dev/image-request-bridge/internal/source"
)

// OAuth grant types (servicenow.oauth.grant_type).
const (
	GrantPassword          = "password"
	GrantClientCredentials = "client_credentials"
)

// Defaults of the section.
const (
	DefaultImageVariable    = "image_name"
	DefaultJustificationVar = "justification"
	DefaultClosedComplete   = "3"
	DefaultClosedIncomplete = "4"
	DefaultSchedule         = "@every 1m"
	DefaultPageSize         = 100
	DefaultTimeout          = 30 * time.Second
)

// Config is the servicenow: section of the configuration.
type Config struct {
	Enabled           bool          `yaml:"enabled"`
	InstanceURL       string        `yaml:"instance_url"`
	Username          string        `yaml:"username,omitempty"`
	Password          secret.Secret `yaml:"password,omitempty"`
	PasswordFile      string        `yaml:"password_file,omitempty"`
	OAuth             OAuth         `yaml:"oauth,omitempty"`
	CatalogItem       string        `yaml:"catalog_item"` // sc_cat_item sys_id
	Variables         Variables     `yaml:"variables"`
	States            States        `yaml:"states"`
	Schedule          string        `yaml:"schedule"`
	PageSize          int           `yaml:"page_size"`
	Timeout           time.Duration `yaml:"timeout"`
	WebhookSecret     secret.Secret `yaml:"webhook_secret,omitempty"`
	WebhookSecretFile string        `yaml:"webhook_secret_file,omitempty"`
	// RateLimit paces calls to the instance (default 10/s, burst 5, 4 at once:
	// inbound REST runs in a small per-node thread pool).
	RateLimit source.RateLimit `yaml:"rate_limit"`
	// RequesterComment, "true" (default) or "false": whether each write-back
	// also adds a short customer-visible comment for the requester (the
	// pull reference, or what to do), who cannot see work notes. A string so
	// that a key left out can default to true.
	RequesterComment string `yaml:"requester_comment"`
}

// WritesRequesterComment reports whether requester_comment is on.
func (c *Config) WritesRequesterComment() bool { return c.RequesterComment != "false" }

// OAuth configures ServiceNow OAuth (POST /oauth_token.do).
type OAuth struct {
	ClientID         string        `yaml:"client_id,omitempty"`
	ClientSecret     secret.Secret `yaml:"client_secret,omitempty"`
	ClientSecretFile string        `yaml:"client_secret_file,omitempty"`
	GrantType        string        `yaml:"grant_type,omitempty"` // password | client_credentials
}

// Variables names the catalog item's variables the bridge reads.
type Variables struct {
	Image         string   `yaml:"image"`
	Justification string   `yaml:"justification"`
	Extra         []string `yaml:"extra,omitempty"`
}

// States are the sc_req_item state values the bridge closes tickets with.
type States struct {
	ClosedComplete   string `yaml:"closed_complete"`
	ClosedIncomplete string `yaml:"closed_incomplete"`
}

// UsesOAuth reports whether ServiceNow is reached with OAuth rather than basic
// authentication.
func (c *Config) UsesOAuth() bool {
	o := c.OAuth
	return o.ClientID != "" || !o.ClientSecret.IsZero() || o.ClientSecretFile != "" || o.GrantType != ""
}

// Settings implements source.Section.
func (c *Config) Settings() source.Settings {
	return source.Settings{Enabled: c.Enabled, Schedule: c.Schedule, Timeout: c.Timeout, RateLimit: c.RateLimit}
}

// Secrets implements source.Section.
func (c *Config) Secrets() []source.SecretRef {
	return []source.SecretRef{
		{Key: "password", Value: &c.Password, File: &c.PasswordFile},
		{Key: "oauth.client_secret", Value: &c.OAuth.ClientSecret, File: &c.OAuth.ClientSecretFile},
		{Key: "webhook_secret", Value: &c.WebhookSecret, File: &c.WebhookSecretFile},
	}
}

// Defaults implements source.Section.
func (c *Config) Defaults() {
	if c.UsesOAuth() && c.OAuth.GrantType == "" {
		c.OAuth.GrantType = GrantClientCredentials
	}
	source.Default(&c.Variables.Image, DefaultImageVariable)
	source.Default(&c.Variables.Justification, DefaultJustificationVar)
	source.Default(&c.States.ClosedComplete, DefaultClosedComplete)
	source.Default(&c.States.ClosedIncomplete, DefaultClosedIncomplete)
	source.Default(&c.Schedule, DefaultSchedule)
	source.Default(&c.RequesterComment, "true")
	source.Default(&c.PageSize, DefaultPageSize)
	source.Default(&c.Timeout, DefaultTimeout)
	c.RateLimit.Defaults(10, 5, 4)
}

var (
	variablePattern = regexp.MustCompile(`^[A-Za-z0-9_]+$`)
	statePattern    = regexp.MustCompile(`^-?[0-9]+$`)
)

// Validate implements source.Section.
func (c *Config) Validate(p *source.Problems) {
	p.URL("instance_url", c.InstanceURL)
	switch {
	case c.CatalogItem == "":
		p.Add("catalog_item", "required: the sys_id of the image-request catalog item (32 lowercase hex)")
	case !sysIDRe.MatchString(c.CatalogItem):
		p.Add("catalog_item", "must be a sys_id: 32 lowercase hex characters (open the catalog item, right-click the header, Copy sys_id)")
	}

	if c.UsesOAuth() {
		o := c.OAuth
		if o.ClientID == "" {
			p.Add("oauth.client_id", "required with OAuth (System OAuth > Application Registry)")
		}
		p.Secret("oauth.client_secret", o.ClientSecret)
		switch o.GrantType {
		case GrantPassword:
			if c.Username == "" {
				p.Add("username", "required with oauth.grant_type password")
			}
			p.Secret("password", c.Password)
		case GrantClientCredentials:
			if c.Username != "" || !c.Password.IsZero() || c.PasswordFile != "" {
				p.Add("username", "not used with oauth.grant_type client_credentials: remove username and password, or set grant_type: password")
			}
		default:
			p.Add("oauth.grant_type", "must be one of: %s, %s", GrantPassword, GrantClientCredentials)
		}
	} else {
		if c.Username == "" && c.Password.IsZero() {
			p.Add("password", "required: set username and password (basic authentication), or oauth.client_id and oauth.client_secret (OAuth)")
		} else {
			if c.Username == "" {
				p.Add("username", "required with password")
			}
			p.Secret("password", c.Password)
		}
	}

	names := map[string]string{}
	variable(p, "variables.image", c.Variables.Image, names)
	variable(p, "variables.justification", c.Variables.Justification, names)
	for i, v := range c.Variables.Extra {
		variable(p, fmt.Sprintf("variables.extra[%d]", i), v, names)
	}

	for _, s := range []struct{ key, v string }{
		{"states.closed_complete", c.States.ClosedComplete},
		{"states.closed_incomplete", c.States.ClosedIncomplete},
	} {
		if !statePattern.MatchString(s.v) {
			p.Add(s.key, "must be the numeric value of a sc_req_item state choice, such as \"3\"")
		}
	}
	if c.States.ClosedComplete != "" && c.States.ClosedComplete == c.States.ClosedIncomplete {
		p.Add("states.closed_incomplete", "must differ from closed_complete")
	}
	p.OneOf("requester_comment", c.RequesterComment, "true", "false")
	p.Schedule("schedule", c.Schedule)
	p.Between("page_size", c.PageSize, 1, 1000)
	p.Positive("timeout", c.Timeout)
}

// variable checks a catalog variable name; seen maps the names already
// given to their key path.
func variable(p *source.Problems, key, name string, seen map[string]string) {
	if !variablePattern.MatchString(name) {
		p.Add(key, "must be a catalog variable name: letters, digits and _ (Maintain Items > the item > Variables > Name)")
		return
	}
	if first, dup := seen[name]; dup {
		p.Add(key, "names the same variable as %s", first)
		return
	}
	seen[name] = p.Path(key)
}
