package jira

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/chainguard-dev/image-request-bridge/internal/secret"
	"github.com/chainguard-dev/image-request-bridge/internal/source"
)

// Defaults of the section.
const (
	DefaultTransitionDone   = "Done"
	DefaultTransitionReject = "Reject"
	DefaultSchedule         = "@every 1m"
	DefaultPageSize         = 50
	DefaultTimeout          = 30 * time.Second
)

// Config is the jira: section of the configuration.
type Config struct {
	Enabled    bool   `yaml:"enabled"`
	URL        string `yaml:"url"`
	Deployment string `yaml:"deployment"` // cloud | datacenter | auto
	// Auth overrides how the token is sent: basic (email + token) or bearer
	// (a personal access token); auto (default) follows the deployment.
	Auth              string        `yaml:"auth"`
	Email             string        `yaml:"email,omitempty"`
	APIToken          secret.Secret `yaml:"api_token,omitempty"`
	APITokenFile      string        `yaml:"api_token_file,omitempty"`
	JQL               string        `yaml:"jql"`
	Fields            Fields        `yaml:"fields"`
	Transitions       Transitions   `yaml:"transitions"`
	Schedule          string        `yaml:"schedule"`
	PageSize          int           `yaml:"page_size"`
	Timeout           time.Duration `yaml:"timeout"`
	WebhookSecret     secret.Secret `yaml:"webhook_secret,omitempty"`
	WebhookSecretFile string        `yaml:"webhook_secret_file,omitempty"`
	// AwaitingJQL selects requests still awaiting approval, for policy rules
	// with tier auto (e.g. project = IMG AND status = "Waiting for approval").
	AwaitingJQL string `yaml:"awaiting_jql,omitempty"`
	// RateLimit paces calls to Jira (default 10/s, burst 5, 4 at once).
	RateLimit source.RateLimit `yaml:"rate_limit"`
	// CommentVisibility is who sees the bridge's comments on a Jira Service
	// Management project: internal (default: agents only) or public (also
	// the request's customers, who are emailed).
	CommentVisibility string `yaml:"comment_visibility"`
}

// Fields names the issue fields the bridge reads: a field's name as shown in
// Jira, or its id (customfield_10050).
type Fields struct {
	Image         string   `yaml:"image"`
	Justification string   `yaml:"justification"`
	Extra         []string `yaml:"extra,omitempty"`
}

// Transitions name the workflow transitions (or target statuses) used to close
// an issue.
type Transitions struct {
	Done     string `yaml:"done"`
	Rejected string `yaml:"rejected"`
	// Approve is taken first on an issue the auto policy tier serves while
	// it still awaits approval (optional, e.g. "Approve").
	Approve string `yaml:"approve,omitempty"`
}

// IsCloud reports whether the Jira site is Jira Cloud: deployment cloud, or
// auto with an Atlassian-hosted URL.
func (c *Config) IsCloud() bool {
	switch c.Deployment {
	case Cloud:
		return true
	case DataCenter:
		return false
	}
	return atlassianHosted(c.URL)
}

// atlassianHosted reports whether rawURL is on a host of Atlassian's cloud.
func atlassianHosted(rawURL string) bool {
	u, err := url.Parse(rawURL)
	if err != nil {
		return false
	}
	h := strings.ToLower(u.Hostname())
	for _, suffix := range []string{".atlassian.net", ".jira.com", ".jira-dev.com"} {
		if strings.HasSuffix(h, suffix) {
			return true
		}
	}
	return false
}

// usesBasic reports whether the token is sent with basic auth: jira.auth
// basic, or auto on Jira Cloud.
func (c *Config) usesBasic() bool {
	switch c.Auth {
	case AuthBasic:
		return true
	case AuthBearer:
		return false
	}
	return c.IsCloud()
}

// Settings implements source.Section.
func (c *Config) Settings() source.Settings {
	return source.Settings{Enabled: c.Enabled, Schedule: c.Schedule, Timeout: c.Timeout, RateLimit: c.RateLimit}
}

// Secrets implements source.Section.
func (c *Config) Secrets() []source.SecretRef {
	return []source.SecretRef{
		{Key: "api_token", Value: &c.APIToken, File: &c.APITokenFile},
		{Key: "webhook_secret", Value: &c.WebhookSecret, File: &c.WebhookSecretFile},
	}
}

// Defaults implements source.Section.
func (c *Config) Defaults() {
	source.Default(&c.Deployment, Auto)
	source.Default(&c.Auth, Auto)
	source.Default(&c.CommentVisibility, VisibilityInternal)
	source.Default(&c.Transitions.Done, DefaultTransitionDone)
	source.Default(&c.Transitions.Rejected, DefaultTransitionReject)
	source.Default(&c.Schedule, DefaultSchedule)
	source.Default(&c.PageSize, DefaultPageSize)
	source.Default(&c.Timeout, DefaultTimeout)
	c.RateLimit.Defaults(10, 5, 4)
}

var customFieldPattern = regexp.MustCompile(`^customfield_[0-9]+$`)

// Validate implements source.Section.
func (c *Config) Validate(p *source.Problems) {
	p.URL("url", c.URL)
	p.OneOf("deployment", c.Deployment, Auto, Cloud, DataCenter)
	p.OneOf("auth", c.Auth, Auto, AuthBasic, AuthBearer)
	p.OneOf("comment_visibility", c.CommentVisibility, VisibilityInternal, VisibilityPublic)
	switch {
	case c.IsCloud() && c.Auth != AuthBearer:
		switch {
		case c.Email == "":
			p.Add("email", "required on Jira Cloud: the Atlassian account email the API token belongs to")
		case !strings.Contains(c.Email, "@"):
			p.Add("email", "must be an email address")
		}
	case c.usesBasic() && c.Email == "":
		p.Add("email", "required with auth: basic: the user name (Data Center) or account email (Cloud) the token or password belongs to")
	}
	p.Secret("api_token", c.APIToken)
	p.Token("api_token", c.APIToken)
	if strings.TrimSpace(c.JQL) == "" {
		p.Add("jql", "required: the JQL that finds approved image requests, such as project = IMG AND status = Approved")
	}
	seen := map[string]string{}
	field(p, "fields.image", c.Fields.Image, seen)
	field(p, "fields.justification", c.Fields.Justification, seen)
	for i, f := range c.Fields.Extra {
		field(p, fmt.Sprintf("fields.extra[%d]", i), f, seen)
	}
	if strings.TrimSpace(c.Transitions.Done) == "" {
		p.Add("transitions.done", "required: the transition (or status) name that closes a served request")
	}
	if strings.TrimSpace(c.Transitions.Rejected) == "" {
		p.Add("transitions.rejected", "required: the transition (or status) name that closes a rejected request")
	}
	if c.Transitions.Done != "" && strings.EqualFold(c.Transitions.Done, c.Transitions.Rejected) {
		p.Add("transitions.rejected", "must differ from transitions.done")
	}
	p.Schedule("schedule", c.Schedule)
	p.Between("page_size", c.PageSize, 1, 1000)
	p.Positive("timeout", c.Timeout)
}

// field checks a field name or id; seen maps the fields already given to
// their key path.
func field(p *source.Problems, key, name string, seen map[string]string) {
	switch {
	case strings.TrimSpace(name) == "":
		p.Add(key, "required: the field's name as shown in Jira, or its id such as customfield_10050")
		return
	case strings.HasPrefix(strings.ToLower(name), "customfield") && !customFieldPattern.MatchString(name):
		p.Add(key, "a field id must look like customfield_10050")
		return
	}
	k := strings.ToLower(name)
	if first, dup := seen[k]; dup {
		p.Add(key, "names the same field as %s", first)
		return
	}
	seen[k] = p.Path(key)
}
