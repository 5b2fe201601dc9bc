package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chainguard-dev/image-request-bridge/internal/ratelimit"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

var t0 = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

// script answers the n-th request with answers[n] (the last one repeats).
type script struct {
	mu      sync.Mutex
	answers []func(w http.ResponseWriter)
	methods []string
}

func (s *script) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	n := len(s.methods)
	s.methods = append(s.methods, r.Method)
	a := s.answers[min(n, len(s.answers)-1)]
	s.mu.Unlock()
	a(w)
}

func (s *script) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.methods)
}

func status(code int, hdr ...string) func(http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		for i := 0; i+1 < len(hdr); i += 2 {
			w.Header().Set(hdr[i], hdr[i+1])
		}
		w.WriteHeader(code)
		fmt.Fprint(w, `{}`)
	}
}

func reset(w http.ResponseWriter) {
	conn, _, _ := http.NewResponseController(w).Hijack()
	conn.Close()
}

func newTest(t *testing.T, answers ...func(http.ResponseWriter)) (*Client, *script, *httptest.Server, *ratelimit.VirtualClock) {
	t.Helper()
	s := &script{answers: answers}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	clk := ratelimit.NewVirtualClock(t0)
	c := New(Options{Name: "svc", Display: "Svc", Limiter: ratelimit.New(0, 1, 0, ratelimit.WithClock(clk), ratelimit.WithName("svc"))})
	return c, s, srv, clk
}

func send(t *testing.T, c *Client, method, url string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(`{"a":1}`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if resp != nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return resp, err
}

// The retry rule, method by answer.
func TestRetryRule(t *testing.T) {
	for _, c := range []struct {
		name    string
		method  string
		answers []func(http.ResponseWriter)
		calls   int
		status  int
	}{
		{"read retried after a 503", "GET", []func(http.ResponseWriter){status(503), status(200)}, 2, 200},
		{"read retried after a reset", "GET", []func(http.ResponseWriter){reset, status(200)}, 2, 200},
		{"read retried after a 429", "GET", []func(http.ResponseWriter){status(429, "Retry-After", "1"), status(200)}, 2, 200},
		{"read not retried after a 404", "GET", []func(http.ResponseWriter){status(404), status(200)}, 1, 404},
		{"read retried at most RetryMax times", "GET", []func(http.ResponseWriter){status(502)}, 1 + DefaultRetryMax, 502},
		{"write retried after a 429", "POST", []func(http.ResponseWriter){status(429, "Retry-After", "2"), status(204)}, 2, 204},
		{"write not retried after a 503", "PATCH", []func(http.ResponseWriter){status(503), status(200)}, 1, 503},
		{"write not retried after a 500", "POST", []func(http.ResponseWriter){status(500), status(200)}, 1, 500},
		{"401 not retried without a refresh", "GET", []func(http.ResponseWriter){status(401), status(200)}, 1, 401},
	} {
		t.Run(c.name, func(t *testing.T) {
			cl, s, srv, _ := newTest(t, c.answers...)
			resp, err := send(t, cl, c.method, srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != c.status || s.count() != c.calls {
				t.Errorf("HTTP %d after %d calls, want %d after %d", resp.StatusCode, s.count(), c.status, c.calls)
			}
		})
	}
}

// A write whose answer is lost is not resent, and the error says it may
// have landed.
func TestLostAnswerToAWriteIsNotResent(t *testing.T) {
	cl, s, srv, _ := newTest(t, reset, status(200))
	_, err := send(t, cl, "POST", srv.URL)
	if err == nil || s.count() != 1 || !Ambiguous(err) {
		t.Fatalf("err = %v after %d calls; want one call and an ambiguous error", err, s.count())
	}
}

// A 401 that a refresh fixes is resent once, a write too.
func TestRefreshOn401(t *testing.T) {
	s := &script{answers: []func(http.ResponseWriter){status(401), status(204)}}
	srv := httptest.NewServer(s)
	defer srv.Close()
	var mu sync.Mutex
	tok, refreshes := "old", 0
	c := New(Options{Name: "svc",
		Authorize: func(r *http.Request) error {
			mu.Lock()
			defer mu.Unlock()
			r.Header.Set("Authorization", "Bearer "+tok)
			return nil
		},
		Refresh:  func(context.Context) bool { mu.Lock(); defer mu.Unlock(); refreshes++; tok = "new"; return true },
		RetryMax: -1,
	})
	resp, err := send(t, c, "POST", srv.URL)
	if err != nil || resp.StatusCode != 204 || s.count() != 2 || refreshes != 1 {
		t.Fatalf("resp %v err %v after %d calls and %d refreshes", resp, err, s.count(), refreshes)
	}
}

// A wait longer than RetryWaitMax is never slept: the call ends at once
// with the pause in its error, and the next call fails without going out.
func TestLongRetryAfterIsNeverSleptInPlace(t *testing.T) {
	cl, s, srv, clk := newTest(t, status(503, "Retry-After", "600"), status(200))
	resp, err := send(t, cl, "GET", srv.URL)
	if err != nil || resp.StatusCode != 503 || s.count() != 1 || clk.Now() != t0 {
		t.Fatalf("resp %v err %v after %d calls, waited %s", resp, err, s.count(), clk.Now().Sub(t0))
	}
	ae := cl.NewError("GET", "/x", resp)
	if ae.RetryAfter != 10*time.Minute || ae.PausedUntil.IsZero() || ae.Class() != isync.ClassRetryable || !strings.Contains(ae.Error(), "paused until") {
		t.Errorf("error %q (retry after %s, paused until %s)", ae, ae.RetryAfter, ae.PausedUntil)
	}
	_, err = send(t, cl, "GET", srv.URL)
	var pe *ratelimit.PausedError
	if !errors.As(err, &pe) || s.count() != 1 || Ambiguous(err) || !errors.Is(err, ErrNotSent) {
		t.Fatalf("during the pause: err = %v after %d calls", err, s.count())
	}
}

// A retry whose wait outlasts the call's deadline is not attempted.
func TestRetryBoundedByDeadline(t *testing.T) {
	cl, s, srv, _ := newTest(t, status(429, "Retry-After", "20"), status(200))
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
	resp, err := cl.Do(req)
	if err != nil || resp.StatusCode != 429 || s.count() != 1 {
		t.Fatalf("resp %v err %v after %d calls", resp, err, s.count())
	}
}

// Answers are scrubbed of credentials and capped.
func TestAnswersScrubbedAndCapped(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			w.Write([]byte(strings.Repeat("x", 2<<20)))
			return
		}
		fmt.Fprint(w, `{"echo":"hunter22-secret"}`)
	}))
	defer srv.Close()
	c := New(Options{Name: "svc", MaxBody: 1 << 20, Secrets: func() []string { return []string{"hunter22-secret"} }})
	req, _ := http.NewRequestWithContext(t.Context(), "GET", srv.URL, nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if strings.Contains(string(b), "hunter22") {
		t.Errorf("answer not scrubbed: %s", b)
	}
	req, _ = http.NewRequestWithContext(t.Context(), "GET", srv.URL+"/big", nil)
	if _, err := c.Do(req); err == nil || !strings.Contains(err.Error(), "larger than the cap") {
		t.Errorf("a 2 MiB answer under a 1 MiB cap: err = %v", err)
	}
}

func TestClassify(t *testing.T) {
	c := New(Options{Name: "svc", Display: "Svc"})
	for status, want := range map[int]string{401: "svc:unauthenticated", 403: "svc:forbidden"} {
		err := c.Classify(fmt.Errorf("listing: %w", &APIError{Upstream: "Svc", Status: status}))
		if isync.ClassOf(err) != isync.ClassBlocked || isync.CauseOf(err) != want {
			t.Errorf("%d: %v (cause %q)", status, err, isync.CauseOf(err))
		}
	}
	for _, status := range []int{0, 400, 404, 429, 500, 503} {
		if err := c.Classify(&APIError{Status: status}); isync.ClassOf(err) != isync.ClassRetryable {
			t.Errorf("%d: class %s", status, isync.ClassOf(err))
		}
	}
}

func TestAmbiguous(t *testing.T) {
	for err, want := range map[error]bool{
		&APIError{Status: 500}:                  true,
		&APIError{Status: 400}:                  false,
		&APIError{Status: 429}:                  false,
		errors.New("connection reset"):          true,
		fmt.Errorf("x: %w", ErrNotSent):         false,
		isync.Blocked("svc:oauth", "r", nil):    false,
		isync.Retryable(&APIError{Status: 502}): true,
	} {
		if got := Ambiguous(err); got != want {
			t.Errorf("Ambiguous(%v) = %v", err, got)
		}
	}
}

func TestIsHTML(t *testing.T) {
	if !IsHTML(http.Header{"Content-Type": {"text/html; charset=utf-8"}}, nil) || !IsHTML(http.Header{}, []byte("\ufeff \n<html>")) || IsHTML(http.Header{}, []byte(`{"a":"<b>"}`)) {
		t.Error("IsHTML")
	}
	err := New(Options{Name: "svc", Display: "Svc", HTMLHint: "asleep?"}).HTMLError("GET", "/x", 200)
	if !errors.Is(err, ErrHTML) || !strings.Contains(err.Error(), "asleep?") {
		t.Errorf("HTMLError = %v", err)
	}
}

// The read after a lost write answer runs past the write's deadline, under
// its own bound, but not past a shutdown: a cancelled context makes no read.
func TestRecheckContext(t *testing.T) {
	c := New(Options{Name: "x", RecheckTimeout: time.Minute})

	expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	rctx, rcancel := c.Recheck(expired)
	defer rcancel()
	if rctx.Err() != nil {
		t.Fatalf("after the write's deadline: recheck context done (%v), want it live", rctx.Err())
	}
	if dl, ok := rctx.Deadline(); !ok || time.Until(dl) > time.Minute {
		t.Fatalf("recheck deadline %v (set %v), want within RecheckTimeout", dl, ok)
	}

	stopped, stop := context.WithCancel(context.Background())
	stop()
	sctx, scancel := c.Recheck(stopped)
	defer scancel()
	select {
	case <-sctx.Done():
	case <-time.After(time.Minute): // a hang guard, not a latency bound
		t.Fatal("after shutdown cancelled the write: the recheck context is live, want it done")
	}

	// A shutdown during the read ends it too.
	running, shutdown := context.WithCancel(context.Background())
	mctx, mcancel := c.Recheck(running)
	defer mcancel()
	if mctx.Err() != nil {
		t.Fatal("recheck context done before any shutdown")
	}
	shutdown()
	select {
	case <-mctx.Done():
	case <-time.After(time.Minute):
		t.Fatal("a shutdown during the recheck did not end it")
	}
}
