package source

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/chainguard-dev/image-request-bridge/internal/secret"
)

// Problem is one configuration problem: a full key path
// ("servicenow.instance_url") and a message that never quotes a configured
// value.
type Problem struct {
	Path string
	Msg  string
}

// Problems collects the problems of one configuration section. Keys given to
// its methods are relative to the section; the recorded paths are full.
type Problems struct {
	prefix string
	list   []Problem
}

// NewProblems returns an empty collection for the section at prefix ("" for
// the top level).
func NewProblems(prefix string) *Problems { return &Problems{prefix: prefix} }

// Path returns the full key path of key.
func (p *Problems) Path(key string) string {
	switch {
	case p.prefix == "":
		return key
	case key == "":
		return p.prefix
	}
	return p.prefix + "." + key
}

// List returns the problems added so far, in order.
func (p *Problems) List() []Problem { return p.list }

// Add records a problem at key.
func (p *Problems) Add(key, format string, args ...any) {
	p.list = append(p.list, Problem{Path: p.Path(key), Msg: fmt.Sprintf(format, args...)})
}

// OneOf checks that v is one of allowed.
func (p *Problems) OneOf(key, v string, allowed ...string) {
	for _, a := range allowed {
		if v == a {
			return
		}
	}
	p.Add(key, "must be one of: %s", strings.Join(allowed, ", "))
}

// URL checks an absolute https URL (http only for loopback) without user
// information, query or fragment, and reports whether it is usable. Problems
// never quote the URL: it might hold a credential.
func (p *Problems) URL(key, raw string) bool {
	if raw == "" {
		p.Add(key, "required")
		return false
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Opaque != "" || u.Host == "" || u.Hostname() == "" {
		p.Add(key, "must be an absolute URL such as https://example.com")
		return false
	}
	ok := true
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			p.Add(key, "must have a port number between 1 and 65535")
			ok = false
		}
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
	case "http":
		if !IsLoopback(u.Hostname()) {
			p.Add(key, "must be an https URL (http allowed only for loopback)")
			ok = false
		}
	default:
		p.Add(key, "must be an https URL (http allowed only for loopback)")
		ok = false
	}
	if u.User != nil {
		p.Add(key, "must not contain a user name or password; use the credential keys")
		ok = false
	}
	if u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		p.Add(key, "must not contain a query (?) or fragment (#)")
		ok = false
	}
	return ok
}

// Secret checks that a required secret is set.
func (p *Problems) Secret(key string, s secret.Secret) {
	if s.IsZero() {
		path := p.Path(key)
		p.Add(key, "required: set %s, or %s_file to a file holding it", path, path)
	}
}

// Token checks an API token's shape: tokens never hold line breaks or
// surrounding spaces, which a stray newline in a file or variable adds.
func (p *Problems) Token(key string, s secret.Secret) {
	v := s.Reveal()
	if v != strings.TrimSpace(v) || strings.ContainsAny(v, "\r\n") {
		p.Add(key, "must not start or end with spaces or contain line breaks (check the variable or file that sets it)")
	}
}

// Schedule checks a cron spec of 5 fields or a descriptor.
func (p *Problems) Schedule(key, spec string) {
	if _, err := cron.ParseStandard(spec); err != nil {
		p.Add(key, "must be a cron expression with 5 fields (\"*/5 * * * *\") or a descriptor such as @every 1m or @hourly")
	}
}

// Between checks lo <= v <= hi.
func (p *Problems) Between(key string, v, lo, hi int) {
	if v < lo || v > hi {
		p.Add(key, "must be between %d and %d", lo, hi)
	}
}

// Positive checks d > 0.
func (p *Problems) Positive(key string, d time.Duration) {
	if d <= 0 {
		p.Add(key, "must be a positive duration")
	}
}

// IsLoopback reports whether host is a loopback name or address.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
