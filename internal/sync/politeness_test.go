package sync_test

import (
	"testing"
	"time"

	"github.com/chainguard-dev/image-request-bridge/connectors/servicenow"
	"github.com/chainguard-dev/image-request-bridge/internal/ratelimit"
	"github.com/chainguard-dev/image-request-bridge/internal/secret"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// Draining a backlog with many workers never sends ServiceNow more than the
// configured rate: on the limiter's virtual clock, n requests at rps with a
// burst of 1 take at least (n-1)/rps, however loaded the machine is.
func TestBacklogDrainRespectsRateLimit(t *testing.T) {
	h := newHarness(t, harnessOpts{concurrency: 8})
	const rps = 30
	start := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	clk := ratelimit.NewVirtualClock(start)
	lim := ratelimit.New(rps, 1, 4, ratelimit.WithClock(clk), ratelimit.WithName(servicenow.Name))
	src, err := servicenow.New(servicenow.Options{
		InstanceURL: h.sn.URL(), Auth: servicenow.Auth{Username: snUser, Password: secret.New(snPass)},
		CatalogItem: catItem, PageSize: 20, Timeout: 5 * time.Second,
		Limiter: lim,
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 60; i++ {
		h.ritm("python", nil)
	}
	e := isync.New(h.store, h.prov, []isync.Source{src}, isync.Options{Instance: "t", Concurrency: 8, Now: h.clock.Now})
	if _, err := e.Pass(t.Context()); err != nil {
		t.Fatal(err)
	}
	reqs := h.sn.Requests()
	if len(reqs) < 63 {
		t.Fatalf("only %d requests", len(reqs))
	}
	// x/time/rate turns tokens into whole nanoseconds per wait, so the sum
	// may fall short of the exact bound by a few nanoseconds per request;
	// a microsecond each is far below one request's 33 ms.
	least := time.Duration(len(reqs)-1)*time.Second/rps - time.Duration(len(reqs))*time.Microsecond
	if took := clk.Now().Sub(start); took < least {
		t.Errorf("%d requests to ServiceNow took %s on the limiter's clock; at %d/s they take at least %s", len(reqs), took, rps, least)
	}
	for _, r := range reqs {
		if r.Method == "PATCH" && r.Status != 200 {
			t.Errorf("a write failed: %d", r.Status)
		}
	}
}
