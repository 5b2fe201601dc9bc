package chainguard

import (
	"context"
	"sync"
	"time"
)

// reloadTimeout bounds a background reload of a cached API answer.
const reloadTimeout = 30 * time.Second

// cached is an API answer (the catalog listing, the effective entitlements)
// kept for a TTL. Past the TTL, get still answers at once with the value it
// has and reloads it in the background, one reload at a time: after the first
// load no ticket waits on a catalog or plan read, and a catalog of thousands
// of repositories is never read while every worker waits for it. A value is
// served this way for one more TTL at most (maxAge is twice the TTL): past
// that, get loads it again and waits, as for the first load, and an error
// reaches the caller (validation then leaves the judgement to the
// provisioning call) instead of an ever older answer.
//
// A background reload that fails keeps the old value and is tried again
// after retry. Only one caller loads at a time; the others wait for its
// answer, each no longer than its own context allows.
type cached[T any] struct {
	ttl, retry time.Duration
	now        func() time.Time
	load       func(context.Context) (T, error)

	mu        sync.Mutex
	val       T
	ok        bool
	at        time.Time     // when val was loaded
	until     time.Time     // val is fresh until then; past it, a reload starts
	loading   chan struct{} // closed when the caller loading now is done; nil if none
	reloading bool
	gen       int // incremented by invalidate: an older load's answer is not kept
	bg        sync.WaitGroup
}

func newCached[T any](ttl time.Duration, now func() time.Time, load func(context.Context) (T, error)) *cached[T] {
	return &cached[T]{ttl: ttl, retry: min(ttl, time.Minute), now: now, load: load}
}

// get returns the value, loading it first if there is none that may be
// served.
func (c *cached[T]) get(ctx context.Context) (T, error) {
	for {
		if v, ok := c.peek(); ok {
			return v, nil
		}
		c.mu.Lock()
		if ch := c.loading; ch != nil {
			c.mu.Unlock()
			select {
			case <-ch:
				continue // loaded, or failed: look again
			case <-ctx.Done():
				var zero T
				return zero, ctx.Err()
			}
		}
		if c.ok && c.now().Before(c.at.Add(2*c.ttl)) {
			// Loaded by another caller between peek and here: serve it
			// rather than load a second time.
			c.mu.Unlock()
			continue
		}
		ch := make(chan struct{})
		c.loading = ch
		gen := c.gen
		c.mu.Unlock()
		v, err := c.load(ctx)
		c.mu.Lock()
		c.loading = nil
		close(ch)
		if err == nil && gen == c.gen {
			c.setLocked(v)
		}
		c.mu.Unlock()
		return v, err
	}
}

// peek returns the value if there is one that may be served, without
// loading; a stale one starts a background reload.
func (c *cached[T]) peek() (T, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if !c.ok || !now.Before(c.at.Add(2*c.ttl)) {
		var zero T
		return zero, false // nothing to serve: get loads, and waits
	}
	if !now.Before(c.until) && !c.reloading {
		c.reloading = true
		c.bg.Add(1)
		go c.reload(c.gen)
	}
	return c.val, true
}

// refresh loads the value now and keeps it.
func (c *cached[T]) refresh(ctx context.Context) (T, error) {
	v, err := c.load(ctx)
	if err != nil {
		var zero T
		return zero, err
	}
	c.mu.Lock()
	c.setLocked(v)
	c.mu.Unlock()
	return v, nil
}

func (c *cached[T]) setLocked(v T) {
	now := c.now()
	c.val, c.ok, c.at, c.until = v, true, now, now.Add(c.ttl)
}

func (c *cached[T]) reload(gen int) {
	defer c.bg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), reloadTimeout)
	defer cancel()
	v, err := c.load(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reloading = false
	switch {
	case gen != c.gen:
		// Invalidated while loading: this answer may predate the reason.
	case err == nil:
		c.setLocked(v)
	case c.ok:
		c.until = c.now().Add(c.retry)
	}
}

// invalidate drops the value: the next get loads it again and waits for it.
func (c *cached[T]) invalidate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	var zero T
	c.val, c.ok = zero, false
	c.gen++
}

// wait waits for background reloads to end (Close).
func (c *cached[T]) wait() { c.bg.Wait() }
