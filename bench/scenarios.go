package bench

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"time"

	"github.com/chainguard-dev/image-request-bridge/connectors/servicenow"
	"github.com/chainguard-dev/image-request-bridge/internal/secret"
	"github.com/chainguard-dev/image-request-bridge/internal/server"
	"github.com/chainguard-dev/image-request-bridge/internal/source"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// webhookSecret signs the benchmark's ServiceNow webhook deliveries.
const webhookSecret = "bench-webhook-secret"

// WebhookOutcome is the webhook-to-closed latency of tickets sent one at a
// time: from the delivery leaving the sender to the ticket being closed
// (note written, state moved) in ServiceNow.
type WebhookOutcome struct {
	Latency  []time.Duration // per ticket
	Upstream []time.Duration // wire time of the upstream calls each one made
	Calls    map[string]int
}

// Webhook runs the daemon's webhook path in this process: the real HTTP
// server verifies each signed delivery and queues the ticket, the engine's
// queue workers (RunQueue) re-read, provision and close it. n tickets are
// created and announced one after the other; each is timed until closed.
func Webhook(ctx context.Context, u *Upstreams, n int, stateDir string) (WebhookOutcome, error) {
	closed := make(chan string, 64)
	b, err := NewBridge(ctx, Config{Endpoints: u.Endpoints(), Sources: []string{SourceServiceNow}, StateDir: stateDir}, func(ev isync.Event) {
		if ev.Decision == isync.DecisionReported {
			closed <- ev.TicketID
		}
	})
	if err != nil {
		return WebhookOutcome{}, err
	}
	defer b.Close()
	hook := servicenow.Connector.(source.Webhooker).Webhook(&servicenow.Config{Enabled: true, WebhookSecret: secret.New(webhookSecret)})
	srv, err := server.New(ctx, server.Options{Engine: b.Engine, Webhooks: []server.Webhook{{Name: servicenow.Name, Hook: hook}}, Logger: Logger()})
	if err != nil {
		return WebhookOutcome{}, err
	}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	qctx, stop := context.WithCancel(ctx)
	defer stop()
	go b.Engine.RunQueue(qctx)

	var out WebhookOutcome
	client := hs.Client()
	for i := range n {
		id := u.AddRITM()
		body := []byte(`{"sys_id":"` + id + `","event_id":"bench-` + strconv.Itoa(i) + `"}`)
		mac := hmac.New(sha256.New, []byte(webhookSecret))
		mac.Write(body)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, hs.URL+"/webhooks/servicenow", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Signature", base64.StdEncoding.EncodeToString(mac.Sum(nil)))

		wire0 := b.Meter.Wire()
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return out, err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			return out, fmt.Errorf("webhook answered %s", resp.Status)
		}
		timeout := time.After(30 * time.Second)
	wait:
		for {
			select {
			case got := <-closed:
				if got == id {
					break wait
				}
			case <-timeout:
				return out, fmt.Errorf("ticket %s not closed 30s after its webhook", id)
			}
		}
		out.Latency = append(out.Latency, time.Since(start))
		out.Upstream = append(out.Upstream, b.Meter.Wire()-wire0)
	}
	out.Calls = b.Meter.Calls()
	return out, nil
}

// IdleOutcome is what polls cost when nothing is approved.
type IdleOutcome struct {
	Passes int
	Calls  map[string]int // over the measured passes
	Wall   []time.Duration
}

// Idle runs one warm-up pass and then `passes` passes over sources whose
// fakes hold no approved ticket, with `done` finished records in the store.
func Idle(ctx context.Context, u *Upstreams, sources []string, done, passes int, stateDir string) (IdleOutcome, error) {
	b, err := NewBridge(ctx, Config{Endpoints: u.Endpoints(), Sources: sources, StateDir: stateDir}, nil)
	if err != nil {
		return IdleOutcome{}, err
	}
	defer b.Close()
	if err := SeedDone(ctx, b.Store, sources, done); err != nil {
		return IdleOutcome{}, err
	}
	if _, err := b.Engine.Pass(ctx); err != nil {
		return IdleOutcome{}, err
	}
	before := b.Meter.Calls()
	out := IdleOutcome{Passes: passes, Calls: map[string]int{}}
	for range passes {
		start := time.Now()
		if _, err := b.Engine.Pass(ctx); err != nil {
			return out, err
		}
		out.Wall = append(out.Wall, time.Since(start))
	}
	for k, v := range b.Meter.Calls() {
		if d := v - before[k]; d > 0 {
			out.Calls[k] = d
		}
	}
	return out, nil
}

// SeedDone writes n finished records per source into the store, as a bridge
// that has closed n tickets would have.
func SeedDone(ctx context.Context, st isync.Store, sources []string, n int) error {
	now := time.Now()
	for _, src := range sources {
		for i := range n {
			id := fmt.Sprintf("%032x", i)
			if src == SourceJira {
				id = strconv.Itoa(900000 + i)
			}
			rec, ok, err := st.Claim(ctx, src, id, "SEED-"+strconv.Itoa(i), "seed", now, now.Add(time.Minute))
			if err != nil || !ok {
				return fmt.Errorf("seeding %s/%s: %v", src, id, err)
			}
			rec.State = isync.StateDone
			if err := st.Save(ctx, &rec); err != nil {
				return err
			}
			if err := st.Release(ctx, src, id, "seed"); err != nil {
				return err
			}
		}
	}
	return nil
}
