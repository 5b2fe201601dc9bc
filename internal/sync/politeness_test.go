package sync_test

import (
	"net/http"
	"sort"
	"testing"
	"time"

	"github.com/chainguard-dev/image-request-bridge/connectors/servicenow"
	"github.com/chainguard-dev/image-request-bridge/internal/ratelimit"
	"github.com/chainguard-dev/image-request-bridge/internal/secret"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// Draining a backlog with many workers never sends ServiceNow more than the
// configured rate.
func TestBacklogDrainRespectsRateLimit(t *testing.T) {
	h := newHarness(t, harnessOpts{concurrency: 8})
	const rps = 30
	lim := ratelimit.New(rps, 1, 4)
	src, err := servicenow.New(servicenow.Options{
		InstanceURL: h.sn.URL(), Auth: servicenow.Auth{Username: snUser, Password: secret.New(snPass)},
		CatalogItem: catItem, PageSize: 20, Timeout: 5 * time.Second,
		WrapTransport: func(next http.RoundTripper) http.RoundTripper { return lim.RoundTripper(next) },
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
	var ts []time.Time
	for _, r := range h.sn.Requests() {
		ts = append(ts, r.Time)
	}
	if len(ts) < 63 {
		t.Fatalf("only %d requests", len(ts))
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	worst, j := 0, 0
	for i := range ts {
		for ts[i].Sub(ts[j]) >= time.Second {
			j++
		}
		worst = max(worst, i-j+1)
	}
	if worst > rps+1 {
		t.Errorf("%d requests to ServiceNow in one second; the limit is %d/s", worst, rps)
	}
	for _, r := range h.sn.Requests() {
		if r.Method == "PATCH" && r.Status != 200 {
			t.Errorf("a write failed: %d", r.Status)
		}
	}
}
