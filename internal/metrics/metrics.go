// Package metrics holds the bridge's Prometheus metrics.
//
// The bridge's own series live in a private registry, so tests and several
// bridges in one process never collide. The Chainguard SDK registers its gRPC
// client metrics on the default registry; Gatherer serves both.
//
// Label values are always drawn from small fixed sets (source and upstream
// names, decisions, status codes, error reasons, webhook results). Secrets,
// URLs and ticket text never become labels.
package metrics

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// Chainguard is the upstream and event endpoint every bridge has; the
// sources' names come from the registry (see New).
const Chainguard = "chainguard"

// Webhook delivery results.
const (
	ResultAccepted     = "accepted"      // verified and queued (or handed to the engine)
	ResultDuplicate    = "duplicate"     // verified, already seen
	ResultIgnored      = "ignored"       // verified, not an event the bridge acts on
	ResultBadSignature = "bad_signature" // missing, malformed or wrong signature or token
	ResultTooLarge     = "too_large"     // body over the limit
	ResultBadRequest   = "bad_request"   // malformed body or ticket id
	ResultQueueFull    = "queue_full"    // verified, but the engine's queue is full
	ResultUnavailable  = "unavailable"   // the endpoint cannot verify deliveries yet
	ResultError        = "error"         // the handler failed
)

// Results lists every webhook delivery result.
var Results = []string{
	ResultAccepted, ResultDuplicate, ResultIgnored, ResultBadSignature, ResultTooLarge,
	ResultBadRequest, ResultQueueFull, ResultUnavailable, ResultError,
}

// Upstream error reasons.
const (
	ReasonTimeout     = "timeout"      // deadline exceeded, network timeout
	ReasonCanceled    = "canceled"     // the caller gave up
	ReasonNetwork     = "network"      // connection failures, gRPC UNAVAILABLE
	ReasonRateLimited = "rate_limited" // HTTP 429, gRPC RESOURCE_EXHAUSTED
	ReasonAuth        = "auth"         // HTTP 401/403, gRPC UNAUTHENTICATED/PERMISSION_DENIED
	ReasonServer      = "server"       // HTTP 5xx, gRPC INTERNAL/UNKNOWN/DATA_LOSS/UNIMPLEMENTED
	ReasonClient      = "client"       // other HTTP 4xx, other gRPC codes
)

// Reasons lists every upstream error reason.
var Reasons = []string{ReasonTimeout, ReasonCanceled, ReasonNetwork, ReasonRateLimited, ReasonAuth, ReasonServer, ReasonClient}

// decisions lists the engine's decisions, pre-created per source.
var decisions = []isync.Decision{
	isync.DecisionProvisioned, isync.DecisionAlreadyPresent, isync.DecisionRejected,
	isync.DecisionBlocked, isync.DecisionRetry, isync.DecisionReported, isync.DecisionNoted,
	isync.DecisionClosedElsewhere,
}

// provisionCall is the engine event that carries a provisioning call's latency.
const provisionCall isync.Decision = "provision_call"

// Metrics is the bridge's set of metrics. Its methods are safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	tickets      *prometheus.CounterVec
	provisioning prometheus.Histogram
	upRequests   *prometheus.CounterVec
	upErrors     *prometheus.CounterVec
	lastPoll     *prometheus.GaugeVec
	webhooks     *prometheus.CounterVec
	storeErrors  *prometheus.CounterVec

	queueDepth atomic.Pointer[func() int]
	blocked    atomic.Pointer[func() int]
}

// New builds the metrics in a fresh registry. sources names the enabled
// sources: their per-source, upstream and webhook series are created at 0
// (with Chainguard's), so that dashboards and alerts see them before the
// first event; a source not named gets no series until it is used.
func New(sources ...string) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.tickets = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bridge_tickets_total",
		Help: "Ticket decisions taken by the engine, by source and decision.",
	}, []string{"source", "decision"})
	m.provisioning = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "bridge_provisioning_duration_seconds",
		Help:    "Latency of provisioning calls to Chainguard.",
		Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120},
	})
	m.upRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bridge_upstream_requests_total",
		Help: "Requests to upstream services, by upstream and HTTP status or gRPC code (\"error\" when no response came back).",
	}, []string{"upstream", "code"})
	m.upErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bridge_upstream_errors_total",
		Help: "Failed requests to upstream services, by upstream and reason.",
	}, []string{"upstream", "reason"})
	m.lastPoll = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "bridge_last_successful_poll_timestamp_seconds",
		Help: "Unix time of the last poll of a source that completed without error (0: none yet).",
	}, []string{"source"})
	m.webhooks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bridge_webhook_deliveries_total",
		Help: "Webhook and event deliveries received, by endpoint and result.",
	}, []string{"endpoint", "result"})
	m.storeErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bridge_store_errors_total",
		Help: "Writes the state store failed (disk full, I/O error, file deleted), by operation.",
	}, []string{"op"})
	queue := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "bridge_queue_depth",
		Help: "Ticket ids waiting in the engine's queue.",
	}, func() float64 { return call(&m.queueDepth) })
	blocked := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "bridge_tickets_blocked",
		Help: "Tickets the bridge cannot act on (permissions, quota) and keeps open.",
	}, func() float64 { return call(&m.blocked) })

	m.reg.MustRegister(m.tickets, m.provisioning, m.upRequests, m.upErrors, m.lastPoll, m.webhooks, m.storeErrors, queue, blocked)
	for _, op := range StoreOps {
		m.storeErrors.WithLabelValues(op)
	}

	for _, s := range sources {
		for _, d := range decisions {
			m.tickets.WithLabelValues(s, string(d))
		}
		m.lastPoll.WithLabelValues(s)
	}
	// Each source is an upstream and a webhook endpoint; so is Chainguard.
	for _, u := range append(sources[:len(sources):len(sources)], Chainguard) {
		for _, r := range Reasons {
			m.upErrors.WithLabelValues(u, r)
		}
		for _, r := range Results {
			m.webhooks.WithLabelValues(u, r)
		}
	}
	return m
}

func call(p *atomic.Pointer[func() int]) float64 {
	if f := p.Load(); f != nil && *f != nil {
		return float64((*f)())
	}
	return 0
}

// StoreOps lists the state store's write operations (store.WriteError.Op).
var StoreOps = []string{"claim", "save", "release", "append", "write"}

// StoreWriteFailed counts one failed write of the state store; op is one of
// StoreOps (any other value counts as "write").
func (m *Metrics) StoreWriteFailed(op string) {
	for _, o := range StoreOps {
		if o == op {
			m.storeErrors.WithLabelValues(op).Inc()
			return
		}
	}
	m.storeErrors.WithLabelValues("write").Inc()
}

// Registry is the private registry, for tests and extra collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Gatherer gathers the bridge's metrics and the default registry's (the
// Chainguard SDK's gRPC client metrics, Go runtime and process metrics).
func (m *Metrics) Gatherer() prometheus.Gatherer {
	return prometheus.Gatherers{m.reg, prometheus.DefaultGatherer}
}

// Observe records one engine event; use it as the engine's Observer.
func (m *Metrics) Observe(ev isync.Event) {
	if ev.Decision == provisionCall {
		m.provisioning.Observe(ev.Duration.Seconds())
		return
	}
	if ev.Source == "" || ev.Decision == "" {
		return
	}
	m.tickets.WithLabelValues(ev.Source, string(ev.Decision)).Inc()
}

// PollSucceeded records that a poll of source completed without error at t.
func (m *Metrics) PollSucceeded(source string, t time.Time) {
	m.lastPoll.WithLabelValues(source).Set(float64(t.UnixNano()) / 1e9)
}

// SetQueueDepth sets the function bridge_queue_depth reports. It may be
// called again to replace it; nil reports 0.
func (m *Metrics) SetQueueDepth(f func() int) { m.queueDepth.Store(&f) }

// SetBlocked sets the function bridge_tickets_blocked reports. It may be
// called again to replace it; nil reports 0.
func (m *Metrics) SetBlocked(f func() int) { m.blocked.Store(&f) }

// WebhookReceived counts one delivery to endpoint with result (one of Results).
func (m *Metrics) WebhookReceived(endpoint, result string) {
	m.webhooks.WithLabelValues(endpoint, result).Inc()
}

// RoundTripper counts every request next makes to upstream. A nil next is
// http.DefaultTransport. Each attempt counts, so retries show up.
func (m *Metrics) RoundTripper(upstream string, next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return &roundTripper{m: m, upstream: upstream, next: next}
}

type roundTripper struct {
	m        *Metrics
	upstream string
	next     http.RoundTripper
}

func (rt *roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := rt.next.RoundTrip(req)
	if err != nil {
		rt.m.upRequests.WithLabelValues(rt.upstream, "error").Inc()
		rt.m.upErrors.WithLabelValues(rt.upstream, transportReason(err)).Inc()
		return resp, err
	}
	rt.m.upRequests.WithLabelValues(rt.upstream, strconv.Itoa(resp.StatusCode)).Inc()
	if r := httpReason(resp.StatusCode); r != "" {
		rt.m.upErrors.WithLabelValues(rt.upstream, r).Inc()
	}
	return resp, nil
}

// UnaryClientInterceptor counts every unary gRPC call to upstream by its code.
// OK and ALREADY_EXISTS (the idempotent-success answer to provisioning) are
// not errors.
func (m *Metrics) UnaryClientInterceptor(upstream string) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		err := invoker(ctx, method, req, reply, cc, opts...)
		code := status.Code(err)
		if err != nil && code == codes.Unknown {
			// A context error that did not come back as a status.
			switch {
			case errors.Is(err, context.DeadlineExceeded):
				code = codes.DeadlineExceeded
			case errors.Is(err, context.Canceled):
				code = codes.Canceled
			}
		}
		m.upRequests.WithLabelValues(upstream, code.String()).Inc()
		if r := grpcReason(code); r != "" {
			m.upErrors.WithLabelValues(upstream, r).Inc()
		}
		return err
	}
}

func transportReason(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled):
		return ReasonCanceled
	case errors.Is(err, context.DeadlineExceeded):
		return ReasonTimeout
	case errors.As(err, &ne) && ne.Timeout():
		return ReasonTimeout
	default:
		return ReasonNetwork
	}
}

func httpReason(code int) string {
	switch {
	case code < 400:
		return ""
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return ReasonAuth
	case code == http.StatusTooManyRequests:
		return ReasonRateLimited
	case code >= 500:
		return ReasonServer
	default:
		return ReasonClient
	}
}

func grpcReason(c codes.Code) string {
	switch c {
	case codes.OK, codes.AlreadyExists:
		return ""
	case codes.Canceled:
		return ReasonCanceled
	case codes.DeadlineExceeded:
		return ReasonTimeout
	case codes.Unavailable:
		return ReasonNetwork
	case codes.ResourceExhausted:
		return ReasonRateLimited
	case codes.Unauthenticated, codes.PermissionDenied:
		return ReasonAuth
	case codes.Internal, codes.Unknown, codes.DataLoss, codes.Unimplemented:
		return ReasonServer
	default:
		return ReasonClient
	}
}
