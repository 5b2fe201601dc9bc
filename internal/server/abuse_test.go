package server

import (
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	stdsync "sync"
	"sync/atomic"
	"testing"

	"github.com/chainguard-dev/image-request-bridge/connectors/jira"
	"github.com/chainguard-dev/image-request-bridge/internal/store"
)

// slowBody is a 1 MiB request body that sends nothing until release is
// closed, and counts the bytes the server read of it.
type slowBody struct {
	release <-chan struct{}
	started chan struct{} // closed at the first Read
	once    stdsync.Once
	left    int
	read    *atomic.Int64
}

func (b *slowBody) Read(p []byte) (int, error) {
	b.once.Do(func() { close(b.started) })
	<-b.release
	if b.left == 0 {
		return 0, io.EOF
	}
	n := min(len(p), b.left)
	clear(p[:n])
	b.left -= n
	b.read.Add(int64(n))
	return n, nil
}

// Many slow 1 MiB bodies at once: unsigned ones are refused unread, forged
// ones fill the in-flight cap and the rest are answered 503, none is read
// beyond its endpoint's limit, and a signed delivery gets through.
func TestSlowLargeBodiesAreBounded(t *testing.T) {
	const (
		attack  = 1 << 20
		forged  = DefaultMaxInFlight
		extra   = 50
		nosig   = 500
		jiraURL = "/webhooks/jira"
	)
	h := newHarness(t, nil)
	handler := h.srv.Handler()
	release := make(chan struct{})
	var read atomic.Int64
	serve := func(hdr map[string]string) (*httptest.ResponseRecorder, *slowBody, chan struct{}) {
		b := &slowBody{release: release, started: make(chan struct{}), left: attack, read: &read}
		req := httptest.NewRequest(http.MethodPost, jiraURL, b)
		req.ContentLength = -1 // chunked: the limit is found by reading
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		done := make(chan struct{})
		go func() { defer close(done); handler.ServeHTTP(rec, req) }()
		return rec, b, done
	}
	forgedSig := map[string]string{"X-Hub-Signature": "sha256=" + hex.EncodeToString(make([]byte, 32))}

	// Forged signatures take every slot and wait in their reads.
	var held []chan struct{}
	var heldRecs []*httptest.ResponseRecorder
	for range forged {
		rec, b, done := serve(forgedSig)
		<-b.started
		held, heldRecs = append(held, done), append(heldRecs, rec)
	}
	// More forged bodies: 503 with Retry-After, unread.
	for range extra {
		rec, _, done := serve(forgedSig)
		<-done
		if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
			t.Fatalf("over the cap: status %d, Retry-After %q; want 503 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
		}
	}
	// Unsigned bodies: 401, unread, and they take no slot.
	for range nosig {
		rec, _, done := serve(nil)
		<-done
		if rec.Code != http.StatusUnauthorized {
			t.Fatalf("unsigned: status %d, want 401", rec.Code)
		}
	}
	if n := read.Load(); n != 0 {
		t.Fatalf("%d bytes read before release, want 0", n)
	}
	close(release)
	for i, done := range held {
		<-done
		if heldRecs[i].Code != http.StatusRequestEntityTooLarge {
			t.Fatalf("forged 1 MiB body: status %d, want 413", heldRecs[i].Code)
		}
	}
	if n, max := read.Load(), int64(forged)*(jira.MaxWebhookBody+1); n > max {
		t.Fatalf("read %d bytes of %d bodies, want at most %d (limit+1 each)", n, forged, max)
	}
	// Slots are free again: a signed delivery gets through.
	body, hdr := jiraFixture(t)
	if r := h.post(jiraURL, body, hdr); r.status != http.StatusAccepted {
		t.Fatalf("signed delivery after the attack: status %d %q", r.status, r.body)
	}
	h.wantQueued("jira/10482")
	// Refusals were logged a few lines at a time, with their counts.
	if n := bytes.Count([]byte(h.logs.String()), []byte(`"result":"bad_signature"`)); n > 2 {
		t.Errorf("%d log lines for %d refused deliveries, want at most 2", n, nosig)
	}
}

// While unsigned bodies are being sent, a signed delivery gets through over
// real HTTP: unsigned ones hold no slot.
func TestSignedDeliveryDuringUnsignedFlood(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.MaxInFlight = 1 })
	release := make(chan struct{})
	var read atomic.Int64
	var wg stdsync.WaitGroup
	defer wg.Wait()
	defer close(release) // before the wait
	for range 20 {
		b := &slowBody{release: release, started: make(chan struct{}), left: 1 << 20, read: &read}
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, h.http.URL+"/webhooks/jira", b)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := h.http.Client().Do(req)
			if err == nil {
				resp.Body.Close()
			}
		}()
	}
	body, hdr := jiraFixture(t)
	if r := h.post("/webhooks/jira", body, hdr); r.status != http.StatusAccepted {
		t.Fatalf("signed delivery during the flood: status %d %q", r.status, r.body)
	}
}

// A forged-signature sender that never finishes its body holds its slot for
// BodyTimeout only: with one slot, a signed delivery then gets through.
func TestSlowBodyLosesItsSlot(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.MaxInFlight, o.BodyTimeout = 1, 50e6 })
	pr, pw := io.Pipe()
	defer pw.Close()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, h.http.URL+"/webhooks/jira", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Hub-Signature", "sha256="+hex.EncodeToString(make([]byte, 32)))
	slow := make(chan int, 1)
	go func() {
		resp, err := h.http.Client().Do(req)
		if err != nil {
			slow <- 0
			return
		}
		resp.Body.Close()
		slow <- resp.StatusCode
	}()
	if _, err := pw.Write([]byte("{")); err != nil { // the handler has the slot once this is read
		t.Fatal(err)
	}
	<-slow // the read deadline ends the slow request
	body, hdr := jiraFixture(t)
	if r := h.post("/webhooks/jira", body, hdr); r.status != http.StatusAccepted {
		t.Fatalf("signed delivery after the slow one: status %d %q", r.status, r.body)
	}
}

// A captured signed Jira delivery replayed with fresh delivery ids is
// accepted once, and still refused by a new server on the same store.
func TestJiraReplayWithFreshIDs(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "bridge.db")
	st, err := store.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, func(o *Options) { o.Deliveries = st })
	body, hdr := jiraFixture(t)
	accepted := 0
	for i := range 50 {
		hdr["x-atlassian-webhook-identifier"] = "replay-" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		r := h.post("/webhooks/jira", body, hdr)
		if r.status == http.StatusAccepted {
			accepted++
		} else if r.status != http.StatusOK {
			t.Fatalf("replay %d: status %d %q", i, r.status, r.body)
		}
	}
	if accepted != 1 {
		t.Fatalf("accepted %d times, want 1", accepted)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st, err = store.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	h2 := newHarness(t, func(o *Options) { o.Deliveries = st })
	hdr["x-atlassian-webhook-identifier"] = "after-restart"
	if r := h2.post("/webhooks/jira", body, hdr); r.status != http.StatusOK || r.body != "duplicate\n" {
		t.Fatalf("replay after restart: status %d %q, want 200 duplicate", r.status, r.body)
	}
	h2.wantQueued()
}
