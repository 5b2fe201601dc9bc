package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	stdsync "sync"
	"time"

	"github.com/chainguard-dev/image-request-bridge/internal/metrics"
	"github.com/chainguard-dev/image-request-bridge/internal/secret"
	"github.com/chainguard-dev/image-request-bridge/internal/source"
)

// Readiness timing.
const (
	// readyTTL keeps probes from hammering the upstreams.
	readyTTL = 2 * time.Second
	// checkTimeout bounds each readiness check, under the 5s the HTTP
	// server gives the whole probe, so that a slow upstream is named with
	// its own error instead of the probe timing out.
	checkTimeout = 4 * time.Second
	// checkMargin is kept from the caller's deadline for the report.
	checkMargin = 250 * time.Millisecond
	// checkGrace is how long a check that ran out of time gets to return
	// its own error (which often holds the cause, e.g. gRPC's "latest
	// balancer error") before it is reported without.
	checkGrace = 200 * time.Millisecond
)

// Checks returns the online checks (`validate --online`, /readyz):
// Chainguard's and each built source's, in name order.
func (a *App) Checks() []source.Check {
	out := []source.Check{{Name: metrics.Chainguard, Run: a.Prov.Check}}
	for _, cs := range a.checks {
		out = append(out, cs...)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Ready checks, at most every readyTTL, that the store answers and that every
// built source and Chainguard accept the bridge's credentials. It is what
// /readyz reports: a bridge that cannot authenticate is not ready.
//
// The checks run at once, each with its own deadline (4s, less when ctx ends
// sooner), so one slow upstream neither delays nor hides the others. The
// error joins one line per failing check, "<upstream>: <cause>", e.g.
// "jira: GET rest/api/2/myself: 401 Unauthorized" or "servicenow: timed out
// after 4s; last error: GET /api/now/table/sc_req_item: dial tcp
// 127.0.0.1:1: connect: connection refused". Configured secrets never appear
// in it.
func (a *App) Ready(ctx context.Context) error {
	a.readyMu.Lock()
	defer a.readyMu.Unlock()
	if time.Since(a.readyAt) < readyTTL {
		return a.readyErr
	}
	checks := append([]source.Check{{Name: "state store", Run: a.Store.Ping}}, a.Checks()...)
	timeout := checkTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl)-checkMargin-checkGrace)
	}
	errs := make([]error, len(checks))
	var wg stdsync.WaitGroup
	for i, c := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = a.runCheck(ctx, c, timeout)
		}()
	}
	wg.Wait()
	a.readyErr, a.readyAt = errors.Join(errs...), time.Now()
	return a.readyErr
}

// runCheck runs c within timeout and describes its failure, naming c.
func (a *App) runCheck(ctx context.Context, c source.Check, timeout time.Duration) error {
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, max(timeout, 0))
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Run(cctx) }()
	var err error
	answered := true
	select {
	case err = <-done:
	case <-cctx.Done():
		// A check that honours its context returns at once with its
		// own error; one that does not is not waited for.
		t := time.NewTimer(checkGrace)
		select {
		case err = <-done:
		case <-t.C:
			answered = false
		}
		t.Stop()
	}
	if answered && err == nil {
		return nil
	}
	msg := ""
	if answered {
		msg = strings.TrimPrefix(err.Error(), c.Name+": ")
	}
	if !answered || (cctx.Err() != nil && ctx.Err() == nil) {
		// Out of time: say so, with the last failure the upstream's
		// transport saw during this check, when there was one.
		why := fmt.Sprintf("timed out after %s", max(timeout, 0).Round(time.Millisecond))
		if last := a.lastErr[c.Name].since(start); last != "" {
			why += "; last error: " + last
		}
		if msg != "" && !isContextText(msg) {
			why += ": " + msg
		}
		msg = why
	}
	return fmt.Errorf("%s: %s", c.Name, a.redact(msg))
}

// isContextText reports whether msg says no more than that a context ended.
func isContextText(msg string) bool {
	return msg == context.DeadlineExceeded.Error() || msg == context.Canceled.Error()
}

// redact replaces every configured secret in msg with <secret>: check
// errors quote upstream answers, which may echo a credential.
func (a *App) redact(msg string) string {
	cfg := a.Config
	vals := []secret.Secret{cfg.Chainguard.Token}
	for _, sc := range cfg.EnabledSources() {
		for _, r := range sc.Section.Secrets() {
			vals = append(vals, *r.Value)
		}
	}
	for _, v := range vals {
		if s := v.Reveal(); len(s) >= 4 {
			msg = strings.ReplaceAll(msg, s, "<secret>")
		}
	}
	return msg
}

// lastError remembers the last failed call of one upstream: a transport
// error, or an HTTP status of 400 or more. A nil *lastError remembers
// nothing.
type lastError struct {
	mu  stdsync.Mutex
	at  time.Time
	msg string
}

func (l *lastError) set(msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.at, l.msg = time.Now(), msg
}

// since returns the last failure recorded at or after t, or "".
func (l *lastError) since(t time.Time) string {
	if l == nil {
		return ""
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.at.Before(t) {
		return ""
	}
	return l.msg
}

func (l *lastError) roundTripper(next http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		resp, err := next.RoundTrip(req)
		switch {
		case err != nil && req.Context().Err() == nil:
			// The transport's own error (dial, TLS, reset), without the
			// URL's query, which the caller does not need here.
			l.set(req.Method + " " + req.URL.Path + ": " + err.Error())
		case err == nil && resp.StatusCode >= 400:
			l.set(fmt.Sprintf("%s %s: HTTP %d", req.Method, req.URL.Path, resp.StatusCode))
		}
		return resp, err
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
