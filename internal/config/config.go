// Package config loads the bridge's YAML configuration.
//
// Loading is strict: an unknown or repeated key, a value of the wrong type, an
// unset environment variable or an unreadable secret file is an error that
// names the file, the line and the key path, and every problem is reported at
// once. Values may reference the environment as ${VAR} (expanded inside
// scalar values only, so an environment value can never add YAML structure;
// $$ is a literal $), and every secret key also accepts a <key>_file twin
// whose file holds the value. No error ever quotes a configured value, so a
// misplaced credential cannot leak through an error message.
package config

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/chainguard-dev/image-request-bridge/connectors"
	"github.com/chainguard-dev/image-request-bridge/internal/policy"
	"github.com/chainguard-dev/image-request-bridge/internal/secret"
	"github.com/chainguard-dev/image-request-bridge/internal/source"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// Defaults.
const (
	DefaultLogLevel          = "info"
	DefaultLogFormat         = "auto"
	DefaultStateDriver       = "sqlite"
	DefaultStateDSN          = "bridge.db"
	DefaultChainguardAPIURL  = "https://console-api.enforce.dev"
	DefaultChainguardIssuer  = "https://issuer.enforce.dev"
	DefaultProvision         = ProvisionAuto
	DefaultRegistry          = "cgr.dev"
	DefaultListen            = ":8080"
	DefaultInstanceIDUnknown = "bridge"
)

// Provisioning modes (chainguard.provision).
const (
	ProvisionAuto        = "auto"
	ProvisionRepo        = "repo"
	ProvisionEntitlement = "entitlement"
)

// Config is the whole configuration file. Each registered source
// (connectors.Sources) has its section under the top-level key of its name,
// between chainguard and server; Sources and Section return them.
type Config struct {
	Bridge     Bridge        `yaml:"bridge"`
	Log        Log           `yaml:"log"`
	State      State         `yaml:"state"`
	Chainguard Chainguard    `yaml:"chainguard"`
	Server     Server        `yaml:"server"`
	Policy     policy.Policy `yaml:"policy"`

	sources  []SourceConfig  // every registered source, in registry order
	file     string          // for error messages
	lines    map[string]int  // key path -> line, for error messages
	fromFile map[string]bool // secret key paths read from their *_file twin
	fromEnv  map[string]bool // key paths whose value came from ${VAR}
}

// Bridge is the worker's own settings.
type Bridge struct {
	// InstanceID names this bridge in leases and audit rows. Default: hostname.
	InstanceID string `yaml:"instance_id"`
	// Concurrency is the number of tickets processed at once (1..64, default 4).
	Concurrency int `yaml:"concurrency"`
	// Lease is how long a claimed ticket stays reserved for this instance
	// (default 5m).
	Lease time.Duration `yaml:"lease"`
	// Backoff bounds the delay between attempts on a ticket.
	Backoff Backoff `yaml:"backoff"`
	// CloseOn says when a provisioned ticket is closed: "provisioned" (at
	// once, default) or "ready" (a first note when provisioned, a second that
	// closes it once the requested tag can be pulled).
	CloseOn string `yaml:"close_on"`
	// ReadyTimeout: with close_on ready, how long to wait for the tag before
	// closing the ticket with a timeout note (default 30m).
	ReadyTimeout time.Duration `yaml:"ready_timeout"`
	// ReadyPoll: with close_on ready, how often ListTags is asked when no
	// Chainguard event has said the tag is there (default 1m).
	ReadyPoll time.Duration `yaml:"ready_poll"`
	// MaxImages caps how many images one ticket may name (default 10).
	MaxImages int `yaml:"max_images"`
	// DailyLimit caps the images provisioned per requester in any 24 hours
	// (default 0: no limit).
	DailyLimit int `yaml:"daily_limit"`
	// PassTimeout ends a reconcile pass over one source (default 10m):
	// tickets not reached by then are taken by the next pass, so a slow or
	// paused upstream never holds a pass, or `bridge sync`, for longer.
	PassTimeout time.Duration `yaml:"pass_timeout"`
}

// Backoff bounds an exponential backoff.
type Backoff struct {
	Min time.Duration `yaml:"min"` // default 30s
	Max time.Duration `yaml:"max"` // default 1h
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level"`  // debug | info | warn | error (default info)
	Format string `yaml:"format"` // auto | json | console (default auto)
}

// State configures the durable store.
type State struct {
	Driver string `yaml:"driver"` // sqlite (default)
	DSN    string `yaml:"dsn"`    // sqlite: a file path (default bridge.db)
}

// Chainguard configures the Chainguard platform API.
//
// The bridge authenticates with exactly one of: token (a static API token),
// token_file (a file holding one, which the bridge re-reads when it changes:
// Load reads it into Token for validation, and leaves TokenFile set, resolved
// against the configuration's directory, for the provisioner to re-read), or
// identity with identity_token_file (an assumed identity: the OIDC token in
// the file is exchanged at issuer for API tokens).
type Chainguard struct {
	APIURL    string        `yaml:"api_url"`
	OrgID     string        `yaml:"org_id"`   // organization UIDP: 40 lowercase hex
	OrgName   string        `yaml:"org_name"` // as in cgr.dev/<org_name>/...
	Token     secret.Secret `yaml:"token,omitempty"`
	TokenFile string        `yaml:"token_file,omitempty"`
	// Identity is the UIDP of the identity to assume.
	Identity string `yaml:"identity,omitempty"`
	// IdentityTokenFile holds the OIDC token the identity is assumed with,
	// such as a projected Kubernetes service account token. Load resolves it
	// against the configuration's directory and checks that it can be read.
	IdentityTokenFile string `yaml:"identity_token_file,omitempty"`
	// Issuer is Chainguard's token issuer (default
	// https://issuer.enforce.dev).
	Issuer    string `yaml:"issuer"`
	Provision string `yaml:"provision"` // auto | repo | entitlement
	Registry  string `yaml:"registry"`  // default cgr.dev
	// RateLimit paces calls to the Chainguard API (default 20/s, burst 10, 8 at once).
	RateLimit RateLimit `yaml:"rate_limit"`
}

// RateLimit paces the calls to one upstream (see source.RateLimit).
type RateLimit = source.RateLimit

// Server configures the HTTP server (webhooks, health, metrics).
type Server struct {
	Listen string `yaml:"listen"`
}

// Load reads the file at path and parses it with Parse. Relative *_file paths
// are resolved against the file's directory. The file must be a regular file
// (or a symbolic link to one) of at most 1 MiB.
func Load(path string) (*Config, error) {
	data, err := readRegular(path, maxConfigFile)
	var big *tooLargeError
	if errors.As(err, &big) {
		return nil, &FieldError{File: path, Msg: fmt.Sprintf("cannot read: larger than %d MiB; is it the right file?", maxConfigFile>>20)}
	}
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(data, path)
}

// Parse decodes data, expands ${VAR} references, reads *_file secrets
// (relative paths against filename's directory), applies defaults and
// validates. filename names the configuration in error messages. All
// problems are returned together, joined.
func Parse(data []byte, filename string) (*Config, error) {
	return parse(data, filename, os.LookupEnv, connectors.Sources)
}

// ParseWith is Parse with the sources conns instead of the registry
// (connectors.Sources): each connector's section is read under the
// top-level key of its name.
func ParseWith(data []byte, filename string, conns []source.Connector) (*Config, error) {
	return parse(data, filename, os.LookupEnv, conns)
}

// ApplyDefaults fills every unset key with its default.
func (c *Config) ApplyDefaults() {
	b := &c.Bridge
	if b.InstanceID == "" {
		b.InstanceID = defaultInstanceID()
	}
	// The engine's own defaults, written once in internal/sync.
	if b.Concurrency == 0 {
		b.Concurrency = isync.DefaultConcurrency
	}
	if b.Lease == 0 {
		b.Lease = isync.DefaultLease
	}
	if b.Backoff.Min == 0 {
		b.Backoff.Min = isync.DefaultBackoffMin
	}
	if b.Backoff.Max == 0 {
		b.Backoff.Max = isync.DefaultBackoffMax
	}
	setDefault(&b.CloseOn, "provisioned")
	if b.ReadyTimeout == 0 {
		b.ReadyTimeout = isync.DefaultReadyTimeout
	}
	if b.ReadyPoll == 0 {
		b.ReadyPoll = isync.DefaultReadyPoll
	}
	if b.MaxImages == 0 {
		b.MaxImages = isync.DefaultMaxImages
	}
	if b.PassTimeout == 0 {
		b.PassTimeout = isync.DefaultPassTimeout
	}
	setDefault(&c.Log.Level, DefaultLogLevel)
	setDefault(&c.Log.Format, DefaultLogFormat)
	setDefault(&c.State.Driver, DefaultStateDriver)
	setDefault(&c.State.DSN, DefaultStateDSN)

	cg := &c.Chainguard
	setDefault(&cg.APIURL, DefaultChainguardAPIURL)
	setDefault(&cg.Issuer, DefaultChainguardIssuer)
	setDefault(&cg.Provision, DefaultProvision)
	setDefault(&cg.Registry, DefaultRegistry)
	cg.RateLimit.Defaults(20, 10, 8)

	for _, sc := range c.sources {
		sc.Section.Defaults()
	}

	setDefault(&c.Server.Listen, DefaultListen)
}

func setDefault(p *string, v string) {
	if *p == "" {
		*p = v
	}
}

func defaultInstanceID() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return DefaultInstanceIDUnknown
	}
	return h
}

// Redacted renders the effective configuration as YAML with every secret
// shown as <secret>. It is what `bridge validate` prints. A secret read from
// its *_file twin is shown as that key only, as the file had it: printing
// both keys would read as the "set either, not both" mistake.
func (c *Config) Redacted() string {
	shown := *c
	refs := []secretRef{{"chainguard.token", &shown.Chainguard.Token, &shown.Chainguard.TokenFile}}
	sections := make([]source.Section, len(c.sources))
	for i, s := range c.sources {
		sections[i] = copySection(s)
		refs = append(refs, sectionRefs(s.Name(), sections[i])...)
	}
	for _, r := range refs {
		if c.fromFile[r.path] {
			*r.val = secret.Secret{}
		}
	}
	var node yaml.Node
	if err := node.Encode(shown.toFile(sections).Interface()); err != nil {
		// Only reachable through a programming error; never echo values.
		return "# the configuration cannot be rendered\n"
	}
	shortenDurations(&node)
	out, err := yaml.Marshal(&node)
	if err != nil {
		return "# the configuration cannot be rendered\n"
	}
	return string(out)
}

// durationText matches a rendered time.Duration ("5m0s", "1h0m0s", "250ms").
var durationText = regexp.MustCompile(`^([0-9]+h)?([0-9]+m)?[0-9]+(\.[0-9]+)?(s|ms|µs|ns)$`)

// shortenDurations rewrites the durations of a rendered configuration the
// way they are written in one: "5m" and "1h", not "5m0s" and "1h0m0s".
func shortenDurations(n *yaml.Node) {
	if n.Kind == yaml.ScalarNode && durationText.MatchString(n.Value) {
		if d, err := time.ParseDuration(n.Value); err == nil {
			n.Value = ShortDuration(d)
		}
	}
	for _, c := range n.Content {
		shortenDurations(c)
	}
}

// ShortDuration renders d as it would be written in a configuration: without
// the zero units time.Duration.String adds ("5m", "1h30m", "90ms", "0s").
func ShortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
