package metrics

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// testSources are the names the tests give New, as the bridge gives the
// enabled sources of the registry.
var testSources = []string{"servicenow", "jira"}

func TestPrecreatedSeries(t *testing.T) {
	m := New(testSources...)
	Sources := testSources
	Upstreams := append(testSources[:2:2], Chainguard)
	Endpoints := Upstreams
	for _, s := range Sources {
		for _, d := range decisions {
			if got := testutil.ToFloat64(m.tickets.WithLabelValues(s, string(d))); got != 0 {
				t.Errorf("tickets{%s,%s} = %v, want 0", s, d, got)
			}
		}
	}
	// Every pre-created series is exported before anything happened.
	if got, want := testutil.CollectAndCount(m.tickets), len(Sources)*len(decisions); got != want {
		t.Errorf("bridge_tickets_total series = %d, want %d", got, want)
	}
	if got, want := testutil.CollectAndCount(m.upErrors), len(Upstreams)*len(Reasons); got != want {
		t.Errorf("bridge_upstream_errors_total series = %d, want %d", got, want)
	}
	if got, want := testutil.CollectAndCount(m.lastPoll), len(Sources); got != want {
		t.Errorf("bridge_last_successful_poll_timestamp_seconds series = %d, want %d", got, want)
	}
	if got, want := testutil.CollectAndCount(m.webhooks), len(Endpoints)*len(Results); got != want {
		t.Errorf("bridge_webhook_deliveries_total series = %d, want %d", got, want)
	}
	if err := testutil.GatherAndCompare(m.reg, strings.NewReader(`
# HELP bridge_queue_depth Ticket ids waiting in the engine's queue.
# TYPE bridge_queue_depth gauge
bridge_queue_depth 0
# HELP bridge_tickets_blocked Tickets the bridge cannot act on (permissions, quota) and keeps open.
# TYPE bridge_tickets_blocked gauge
bridge_tickets_blocked 0
`), "bridge_queue_depth", "bridge_tickets_blocked"); err != nil {
		t.Error(err)
	}
}

func TestObserve(t *testing.T) {
	m := New(testSources...)
	m.Observe(isync.Event{Source: "jira", TicketID: "10482", Decision: isync.DecisionProvisioned})
	m.Observe(isync.Event{Source: "jira", TicketID: "10483", Decision: isync.DecisionProvisioned})
	m.Observe(isync.Event{Source: "servicenow", Decision: isync.DecisionRejected})
	m.Observe(isync.Event{Source: "servicenow", Decision: "provision_call", Duration: 1500 * time.Millisecond})
	m.Observe(isync.Event{Source: "servicenow", Decision: "provision_call", Duration: 30 * time.Millisecond})

	if got := testutil.ToFloat64(m.tickets.WithLabelValues("jira", "provisioned")); got != 2 {
		t.Errorf("jira provisioned = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.tickets.WithLabelValues("servicenow", "rejected")); got != 1 {
		t.Errorf("servicenow rejected = %v, want 1", got)
	}
	// provision_call is a latency sample, not a ticket decision.
	if got := testutil.CollectAndCount(m.tickets); got != len(testSources)*len(decisions) {
		t.Errorf("provision_call created a ticket series: %d series", got)
	}
	if err := testutil.GatherAndCompare(m.reg, strings.NewReader(`
# HELP bridge_provisioning_duration_seconds Latency of provisioning calls to Chainguard.
# TYPE bridge_provisioning_duration_seconds histogram
bridge_provisioning_duration_seconds_bucket{le="0.05"} 1
bridge_provisioning_duration_seconds_bucket{le="0.1"} 1
bridge_provisioning_duration_seconds_bucket{le="0.25"} 1
bridge_provisioning_duration_seconds_bucket{le="0.5"} 1
bridge_provisioning_duration_seconds_bucket{le="1"} 1
bridge_provisioning_duration_seconds_bucket{le="2.5"} 2
bridge_provisioning_duration_seconds_bucket{le="5"} 2
bridge_provisioning_duration_seconds_bucket{le="10"} 2
bridge_provisioning_duration_seconds_bucket{le="20"} 2
bridge_provisioning_duration_seconds_bucket{le="30"} 2
bridge_provisioning_duration_seconds_bucket{le="60"} 2
bridge_provisioning_duration_seconds_bucket{le="120"} 2
bridge_provisioning_duration_seconds_bucket{le="+Inf"} 2
bridge_provisioning_duration_seconds_sum 1.53
bridge_provisioning_duration_seconds_count 2
`), "bridge_provisioning_duration_seconds"); err != nil {
		t.Error(err)
	}
}

func TestGaugesAndPolls(t *testing.T) {
	m := New(testSources...)
	depth := 3
	m.SetQueueDepth(func() int { return depth })
	m.SetBlocked(func() int { return 2 })
	depth = 5
	m.PollSucceeded("servicenow", time.Unix(1700000000, 500_000_000))
	m.WebhookReceived("jira", ResultAccepted)
	m.WebhookReceived("jira", ResultDuplicate)
	m.WebhookReceived("jira", ResultDuplicate)

	if err := testutil.GatherAndCompare(m.reg, strings.NewReader(`
# HELP bridge_queue_depth Ticket ids waiting in the engine's queue.
# TYPE bridge_queue_depth gauge
bridge_queue_depth 5
# HELP bridge_tickets_blocked Tickets the bridge cannot act on (permissions, quota) and keeps open.
# TYPE bridge_tickets_blocked gauge
bridge_tickets_blocked 2
# HELP bridge_last_successful_poll_timestamp_seconds Unix time of the last poll of a source that completed without error (0: none yet).
# TYPE bridge_last_successful_poll_timestamp_seconds gauge
bridge_last_successful_poll_timestamp_seconds{source="jira"} 0
bridge_last_successful_poll_timestamp_seconds{source="servicenow"} 1.7000000005e+09
`), "bridge_queue_depth", "bridge_tickets_blocked", "bridge_last_successful_poll_timestamp_seconds"); err != nil {
		t.Error(err)
	}
	if got := testutil.ToFloat64(m.webhooks.WithLabelValues("jira", ResultDuplicate)); got != 2 {
		t.Errorf("jira duplicate = %v, want 2", got)
	}
	m.SetQueueDepth(nil)
	if got := gaugeValue(t, m, "bridge_queue_depth"); got != 0 {
		t.Errorf("queue depth with nil func = %v, want 0", got)
	}
}

func gaugeValue(t *testing.T, m *Metrics, name string) float64 {
	t.Helper()
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

type rtFunc func(*http.Request) (*http.Response, error)

func (f rtFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestRoundTripper(t *testing.T) {
	m := New(testSources...)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			w.WriteHeader(http.StatusOK)
		case "/limited":
			w.WriteHeader(http.StatusTooManyRequests)
		case "/denied":
			w.WriteHeader(http.StatusForbidden)
		default:
			w.WriteHeader(http.StatusBadGateway)
		}
	}))
	defer srv.Close()

	c := &http.Client{Transport: m.RoundTripper("servicenow", nil)}
	for _, p := range []string{"/ok", "/ok", "/limited", "/denied", "/broken"} {
		resp, err := c.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}

	failing := &http.Client{Transport: m.RoundTripper("jira", rtFunc(func(*http.Request) (*http.Response, error) {
		return nil, errors.New("dial tcp: connection refused")
	}))}
	if _, err := failing.Get("http://user:pass@jira.invalid/"); err == nil {
		t.Fatal("want an error")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel()
	<-ctx.Done()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/ok", nil)
	if _, err := c.Do(req); err == nil {
		t.Fatal("want a deadline error")
	}

	for _, tc := range []struct {
		upstream, code string
		want           float64
	}{
		{"servicenow", "200", 2}, {"servicenow", "429", 1}, {"servicenow", "403", 1}, {"servicenow", "502", 1},
		{"servicenow", "error", 1}, {"jira", "error", 1},
	} {
		if got := testutil.ToFloat64(m.upRequests.WithLabelValues(tc.upstream, tc.code)); got != tc.want {
			t.Errorf("requests{%s,%s} = %v, want %v", tc.upstream, tc.code, got, tc.want)
		}
	}
	for _, tc := range []struct {
		upstream, reason string
		want             float64
	}{
		{"servicenow", ReasonRateLimited, 1}, {"servicenow", ReasonAuth, 1}, {"servicenow", ReasonServer, 1},
		{"servicenow", ReasonTimeout, 1}, {"jira", ReasonNetwork, 1}, {"chainguard", ReasonNetwork, 0},
	} {
		if got := testutil.ToFloat64(m.upErrors.WithLabelValues(tc.upstream, tc.reason)); got != tc.want {
			t.Errorf("errors{%s,%s} = %v, want %v", tc.upstream, tc.reason, got, tc.want)
		}
	}

	// No URL, host or credential ever becomes a label value.
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, metric := range mf.GetMetric() {
			for _, l := range metric.GetLabel() {
				for _, bad := range []string{"pass", "jira.invalid", "127.0.0.1", "/ok"} {
					if strings.Contains(l.GetValue(), bad) {
						t.Errorf("%s label %s=%q mentions %q", mf.GetName(), l.GetName(), l.GetValue(), bad)
					}
				}
			}
		}
	}
}

func TestUnaryClientInterceptor(t *testing.T) {
	m := New(testSources...)
	ic := m.UnaryClientInterceptor("chainguard")
	call := func(err error) error {
		return ic(context.Background(), "/chainguard.platform.registry.Registry/CreateRepo", nil, nil, nil,
			func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return err })
	}
	wantErr := status.Error(codes.PermissionDenied, "nope")
	if err := call(wantErr); !errors.Is(err, wantErr) {
		t.Fatalf("interceptor changed the error: %v", err)
	}
	_ = call(nil)
	_ = call(status.Error(codes.AlreadyExists, "exists"))
	_ = call(status.Error(codes.Unavailable, "down"))
	_ = call(context.DeadlineExceeded)

	for code, want := range map[string]float64{"OK": 1, "PermissionDenied": 1, "AlreadyExists": 1, "Unavailable": 1, "DeadlineExceeded": 1} {
		if got := testutil.ToFloat64(m.upRequests.WithLabelValues("chainguard", code)); got != want {
			t.Errorf("requests{chainguard,%s} = %v, want %v", code, got, want)
		}
	}
	for reason, want := range map[string]float64{ReasonAuth: 1, ReasonNetwork: 1, ReasonTimeout: 1, ReasonClient: 0} {
		if got := testutil.ToFloat64(m.upErrors.WithLabelValues("chainguard", reason)); got != want {
			t.Errorf("errors{chainguard,%s} = %v, want %v", reason, got, want)
		}
	}
}

func TestGathererIncludesDefaultRegistry(t *testing.T) {
	m := New(testSources...)
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "test_default_registry_counter_total", Help: "x"})
	if err := prometheus.Register(c); err != nil {
		t.Fatal(err)
	}
	defer prometheus.Unregister(c)
	c.Inc()

	mfs, err := m.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, mf := range mfs {
		seen[mf.GetName()] = true
	}
	for _, name := range []string{"test_default_registry_counter_total", "bridge_tickets_total", "go_goroutines"} {
		if !seen[name] {
			t.Errorf("Gatherer misses %s", name)
		}
	}
	// A second set of metrics in the same process registers without conflict.
	if testutil.CollectAndCount(New(testSources...).tickets) == 0 {
		t.Error("second Metrics has no ticket series")
	}
}

// TestSeriesFollowTheSourcesGiven: the per-source series are those of the
// names given (the enabled sources of the registry), whatever they are; a
// source not given has none.
func TestSeriesFollowTheSourcesGiven(t *testing.T) {
	m := New("example")
	if got, want := testutil.CollectAndCount(m.tickets), len(decisions); got != want {
		t.Errorf("bridge_tickets_total series = %d, want %d", got, want)
	}
	if got := testutil.ToFloat64(m.lastPoll.WithLabelValues("example")); got != 0 {
		t.Errorf("last poll of example = %v", got)
	}
	if got, want := testutil.CollectAndCount(m.webhooks), 2*len(Results); got != want {
		t.Errorf("bridge_webhook_deliveries_total series = %d, want %d (example and chainguard)", got, want)
	}
	if got, want := testutil.CollectAndCount(m.upErrors), 2*len(Reasons); got != want {
		t.Errorf("bridge_upstream_errors_total series = %d, want %d (example and chainguard)", got, want)
	}
	if testutil.CollectAndCount(m.lastPoll) != 1 {
		t.Error("a source not given has a last-poll series")
	}
}

// TestStoreWriteFailed: bridge_store_errors_total is exported at 0 for each
// store operation before any failure, and counts failures by operation.
func TestStoreWriteFailed(t *testing.T) {
	m := New(testSources...)
	if got, want := testutil.CollectAndCount(m.storeErrors), len(StoreOps); got != want {
		t.Fatalf("bridge_store_errors_total series = %d, want %d", got, want)
	}
	m.StoreWriteFailed("claim")
	m.StoreWriteFailed("claim")
	m.StoreWriteFailed("something else")
	if got := testutil.ToFloat64(m.storeErrors.WithLabelValues("claim")); got != 2 {
		t.Errorf(`store errors{op="claim"} = %v, want 2`, got)
	}
	if got := testutil.ToFloat64(m.storeErrors.WithLabelValues("write")); got != 1 {
		t.Errorf(`store errors{op="write"} = %v, want 1`, got)
	}
}
