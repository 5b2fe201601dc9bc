// Package source is the contract between the bridge and its intakes. A
// connector (one package under connectors/) provides a Connector; the one
// registry list in package connectors names them, and the configuration, the
// CLI, the HTTP server, the metrics, `validate --online` and the readiness
// check iterate that list instead of naming a source.
//
// Who implements what:
//
//	Connector  every intake: its name, its config section, how to build its sync.Source
//	Section    every intake's config section (decoded under the top-level YAML key Name())
//	Webhooker  an intake that takes webhooks at POST /webhooks/<Name()>
//	Checker    an intake with online checks (`validate --online`, /readyz)
//	Demoer     an intake shown in `bridge demo`, on its in-process fake
package source

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"time"

	"github.com/rs/zerolog"

	"github.com/chainguard-dev/image-request-bridge/internal/ratelimit"
	"github.com/chainguard-dev/image-request-bridge/internal/secret"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// Connector is one intake.
type Connector interface {
	// Name is the source's name: its top-level configuration key, its
	// webhook path (/webhooks/<name>), its label in metrics and its name in
	// the store. Lowercase letters, digits and _; it never changes.
	Name() string
	// NewSection returns a zero section for the configuration decoder to
	// fill: a pointer to a struct whose fields carry yaml tags and are of
	// the kinds internal/config decodes (strings, secret.Secret, numbers,
	// bools, durations, lists, string-keyed maps and nested structs).
	NewSection() Section
	// Build builds the source from its section (one NewSection returned,
	// decoded, defaulted and validated). It makes no upstream call.
	Build(s Section, d Deps) (isync.Source, error)
}

// Section is an intake's configuration section.
type Section interface {
	// Settings returns the settings every source has.
	Settings() Settings
	// Defaults fills every unset key with its default.
	Defaults()
	// Validate adds every problem of the section to p, with key paths
	// relative to the section ("instance_url", "oauth.client_id"). It is
	// called only for an enabled section, after Defaults.
	Validate(p *Problems)
	// Secrets lists the section's secret keys, each with its *_file twin,
	// so that the configuration reads the twins and redacts the values.
	Secrets() []SecretRef
}

// Settings are the settings every source has.
type Settings struct {
	Enabled   bool
	Schedule  string        // cron spec of the scheduled passes, e.g. "@every 1m"
	Timeout   time.Duration // longest single upstream call; bounded by the lease
	RateLimit RateLimit
}

// RateLimit paces the calls to one upstream: at most RequestsPerSecond
// (bursts of Burst) with at most Concurrency in flight; a 429/503 with
// Retry-After or X-RateLimit-Reset pauses the upstream. Zero values take the
// section's defaults; a negative RequestsPerSecond means no rate limit.
type RateLimit struct {
	RequestsPerSecond float64 `yaml:"requests_per_second"`
	Burst             int     `yaml:"burst"`
	Concurrency       int     `yaml:"concurrency"`
}

// Defaults sets each zero value of r to the given default.
func (r *RateLimit) Defaults(rps float64, burst, concurrency int) {
	if r.RequestsPerSecond == 0 {
		r.RequestsPerSecond = rps
	}
	if r.Burst == 0 {
		r.Burst = burst
	}
	if r.Concurrency == 0 {
		r.Concurrency = concurrency
	}
}

// SecretRef is one secret key of a section and its *_file twin.
type SecretRef struct {
	Key   string         // relative to the section: "password", "oauth.client_secret"
	Value *secret.Secret // the value, set by the configuration from the file when File is set
	File  *string        // the *_file twin; resolved to an absolute path when read
}

// Deps is what Build gets from the bridge besides the section.
type Deps struct {
	Logger zerolog.Logger
	// WrapTransport wraps the source's HTTP transport: the upstream's
	// metrics and the last-error record of the readiness report. Never nil.
	WrapTransport func(http.RoundTripper) http.RoundTripper
	// Limiter paces the upstream (rate, concurrency) and holds its pause
	// when the upstream asks for one (Retry-After): pass it to the upstream
	// kit (internal/upstream), which owns the retry and pause policy.
	Limiter *ratelimit.Limiter
	// ListAwaiting asks the source to also list requests still awaiting
	// approval, marked AwaitingApproval, for the auto policy tier.
	ListAwaiting bool
}

// Webhooker is implemented by a Connector that takes webhooks, served at
// POST /webhooks/<Name()> by one generic handler: body limit, HMAC-SHA256 of
// the raw body with the Webhook's secret (computed as the body streams,
// compared in constant time) before anything is parsed, dedupe on the
// delivery id and on the signed body, then the ticket id queued.
type Webhooker interface {
	// Webhook returns the webhook of an enabled section, or nil when it is
	// not configured (the path then answers 404).
	Webhook(s Section) *Webhook
}

// Webhook is how one intake's deliveries are verified and read.
type Webhook struct {
	// Secret is the HMAC-SHA256 key. Zero: not configured (404).
	Secret secret.Secret
	// Signature returns the HMAC-SHA256 the delivery's headers carry, or
	// false when it is missing or malformed.
	Signature func(h http.Header) ([]byte, bool)
	// Parse reads a verified delivery. A non-nil error is answered 400 with
	// the error's text, which must be fixed text that quotes nothing from
	// the body; the Delivery's log fields are logged either way.
	Parse func(h http.Header, body []byte) (Delivery, error)
	// MaxBody is the largest body accepted, in bytes, sized to the intake's
	// real payloads; a larger one is answered 413 having read at most
	// MaxBody+1 bytes. 0: DefaultWebhookMaxBody.
	MaxBody int64
}

// DefaultWebhookMaxBody is a Webhook's body limit when it sets none: 64 KiB.
const DefaultWebhookMaxBody = 64 << 10

// Delivery is what a verified webhook delivery says.
type Delivery struct {
	// TicketID is the source's ticket id to re-read ("" with Ignored).
	TicketID string
	// Ignored: the delivery is not an event the bridge acts on (200).
	Ignored bool
	// DedupeID identifies the delivery for dedupe (a signed body field, or
	// a header); "" dedupes on the body's hash (a retry resends the bytes).
	DedupeID string
	// Log fields, each "" unless well-formed: the human key (RITM0010001,
	// IMG-42), the delivery id, and extra details.
	Key, ID string
	Detail  map[string]string
}

// Checker is implemented by a Connector with online checks.
type Checker interface {
	// Checks returns the checks of src (built by the same Connector).
	Checks(src isync.Source) []Check
}

// Check is one online check: one authenticated call proving that the bridge
// can do its work with the configured credentials.
type Check struct {
	Name string // "servicenow", "jira": names the upstream in reports
	// Run returns nil when the check passes, else an error naming the call
	// and the answer (never a secret). It returns when ctx ends.
	Run func(ctx context.Context) error
}

// Names returns the connectors' names, in order.
func Names(cs []Connector) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Name()
	}
	return out
}

// Find returns the connector named name, or nil.
func Find(cs []Connector, name string) Connector {
	for _, c := range cs {
		if c.Name() == name {
			return c
		}
	}
	return nil
}

var deliveryIDRe = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// LogSafe returns v when it is safe to log as an id (1 to 128 letters,
// digits and . _ : -), else "". Webhook connectors pass unverified header
// values through it before they reach a log line.
func LogSafe(v string) string {
	if deliveryIDRe.MatchString(v) {
		return v
	}
	return ""
}

// Demoer is implemented by a Connector that shows itself in `bridge demo`:
// it starts its in-process fake (internal/fake/<name>), seeds it with a few
// example requests and says how to configure the source against it. The demo
// iterates the registry, so a new intake appears there by implementing this.
type Demoer interface {
	Demo(ctx context.Context) (*Demo, error)
}

// Demo is one intake's part of `bridge demo`.
type Demo struct {
	// Upstream names the fake and where it listens: "ServiceNow fake at
	// http://127.0.0.1:41234".
	Upstream string
	// Seeded says what was seeded: "7 requested items (RITMs)".
	Seeded string
	// Section is the YAML of the source's section, pointing at the fake,
	// without its top-level key: "enabled: true\ninstance_url: ...".
	Section string
	// Tickets prints a table of the seeded tickets after the pass; state
	// gives the bridge's state of a ticket by its id ("" when the bridge
	// never recorded it).
	Tickets func(w io.Writer, state func(ticketID string) string)
	// Notes prints the notes or comments the bridge wrote into the tickets.
	Notes func(w io.Writer)
	// Close stops the fake.
	Close func()
}

// DemoCell renders a value for a demo table: "-" when empty, cut to 80
// characters.
func DemoCell(s string) string {
	if s == "" {
		return "-"
	}
	if r := []rune(s); len(r) > 80 {
		return string(r[:79]) + "…"
	}
	return s
}

// DemoState renders the bridge's state of a ticket for a demo table.
func DemoState(state string) string {
	if state == "" {
		return "not touched"
	}
	return state
}

// Default sets *p to def while *p is its type's zero value: what a section's
// Defaults does for each of its keys.
func Default[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}
