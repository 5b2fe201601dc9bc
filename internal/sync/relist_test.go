package sync_test

import (
	"context"
	"fmt"
	stdsync "sync"
	"testing"
	"time"

	cgfake "github.com/chainguard-dev/image-request-bridge/internal/fake/chainguard"
	"github.com/chainguard-dev/image-request-bridge/internal/store"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// offsetSource pages its open tickets by offset, as Jira Data Center's
// startAt does: a ticket closed while it pages shifts the rest down, and the
// next page skips as many. A Report closes the ticket.
type offsetSource struct {
	mu       stdsync.Mutex
	open     []string // ticket ids, in listing order
	reports  map[string]int
	listings int
	relists  bool
	// lastPages counts the pages of the last listing.
	lastPages int
	pageSize  int
}

func (s *offsetSource) Name() string { return "jira" }

// PagingMaySkip: only a listing of more than one page can have skipped.
func (s *offsetSource) PagingMaySkip() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.relists && s.lastPages > 1
}

func (s *offsetSource) Approved(ctx context.Context, fn func(isync.Ticket) error) error {
	s.mu.Lock()
	s.listings++
	s.lastPages = 0
	s.mu.Unlock()
	for start := 0; ; start += s.pageSize {
		s.mu.Lock()
		var page []string
		for i := start; i < len(s.open) && i < start+s.pageSize; i++ {
			page = append(page, s.open[i])
		}
		if len(page) > 0 {
			s.lastPages++
		}
		s.mu.Unlock()
		if len(page) == 0 {
			return nil
		}
		for _, id := range page {
			if err := fn(s.ticket(id)); err != nil {
				return err
			}
		}
	}
}

func (s *offsetSource) ticket(id string) isync.Ticket {
	return isync.Ticket{ID: id, Key: "IMG-" + id, Open: true, Image: "python", Requester: "dev"}
}

func (s *offsetSource) Get(_ context.Context, id string) (isync.Ticket, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range s.open {
		if o == id {
			return s.ticket(id), nil
		}
	}
	t := s.ticket(id)
	t.Open, t.Closed = false, true
	return t, nil
}

func (s *offsetSource) Report(_ context.Context, t isync.Ticket, _ isync.Report) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reports[t.ID]++
	for i, o := range s.open {
		if o == t.ID {
			s.open = append(s.open[:i], s.open[i+1:]...)
			break
		}
	}
	return nil
}

// A source whose paging skips tickets closed while it pages is listed again
// once the work is done, until a listing finds nothing new: every ticket is
// handled in the same pass, once. Without it (the control), tickets are left
// for a later pass.
func TestRelistFindsTicketsSkippedByOffsetPaging(t *testing.T) {
	t.Parallel()
	for _, relists := range []bool{true, false} {
		t.Run(fmt.Sprintf("relists=%v", relists), func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessOpts{})
			src := &offsetSource{reports: map[string]int{}, relists: relists, pageSize: 3}
			for i := range 30 {
				src.open = append(src.open, fmt.Sprint(10000+i))
			}
			e := isync.New(h.store, h.prov, []isync.Source{src}, isync.Options{Instance: "test-bridge", Concurrency: 2, Now: h.clock.Now, Logger: testLogger(t)})
			if _, err := e.Pass(context.Background()); err != nil {
				t.Fatal(err)
			}
			src.mu.Lock()
			defer src.mu.Unlock()
			for id, n := range src.reports {
				if n != 1 {
					t.Errorf("ticket %s reported %d times", id, n)
				}
			}
			if relists && (len(src.open) != 0 || len(src.reports) != 30) {
				t.Errorf("%d tickets left open after the pass (%d listings), want 0", len(src.open), src.listings)
			}
			if !relists && len(src.open) == 0 {
				t.Errorf("control: offset paging skipped nothing, so this test proves nothing")
			}
		})
	}
}

// A pass cancelled mid-way (shutdown) does not start the tickets queued
// ahead of the workers: only tickets already in progress can record an
// interrupted attempt, and the others are left untouched for the next pass.
func TestCancelledPassStartsNoQueuedTicket(t *testing.T) {
	t.Parallel()
	const workers = 4
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Shutdown comes as the first provisioning call ends: the workers are
	// busy and the listing has tickets queued ahead of them.
	var once stdsync.Once
	h := newHarness(t, harnessOpts{concurrency: workers, cgOpts: []cgfake.Option{cgfake.WithLatency(50 * time.Millisecond)},
		engineOpts: func(o *isync.Options) {
			o.Observer = func(ev isync.Event) {
				if ev.Decision == "provision_call" {
					once.Do(cancel)
				}
			}
		}})
	for range 40 {
		h.ritm("python", nil)
	}
	_, _ = h.engine().Pass(ctx)
	retries := 0
	if err := h.store.Audit(context.Background(), store.AuditFilter{}, func(a isync.AuditEntry) error {
		if a.Decision == isync.DecisionRetry {
			retries++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if retries > workers {
		t.Fatalf("%d interrupted attempts recorded, want at most %d (the tickets in progress)", retries, workers)
	}
}
