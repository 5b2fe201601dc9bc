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
// of repositories is never read while every worker waits for it. Only the
// first get, and the first after invalidate, wait for the load (and only one
// caller loads; the others wait for its answer).
//
// A background reload that fails keeps the old value and is tried again
// after retry; the value is advisory (validation, suggestions, the choice of
// call), and the provisioning call itself remains the judge.
type cached[T any] struct {
	ttl, retry time.Duration
	now        func() time.Time
	load       func(context.Context) (T, error)

	loadMu sync.Mutex // held by the one caller loading synchronously

	mu        sync.Mutex
	val       T
	ok        bool
	until     time.Time
	reloading bool
	gen       int // incremented by invalidate: an older reload's answer is dropped
	bg        sync.WaitGroup
}

func newCached[T any](ttl time.Duration, now func() time.Time, load func(context.Context) (T, error)) *cached[T] {
	return &cached[T]{ttl: ttl, retry: min(ttl, time.Minute), now: now, load: load}
}

// get returns the value, loading it first if there is none.
func (c *cached[T]) get(ctx context.Context) (T, error) {
	if v, ok := c.peek(); ok {
		return v, nil
	}
	c.loadMu.Lock()
	defer c.loadMu.Unlock()
	if v, ok := c.peek(); ok {
		return v, nil // loaded by the caller this one waited for
	}
	return c.refresh(ctx)
}

// peek returns the value if there is one, without loading; a stale value
// starts a background reload.
func (c *cached[T]) peek() (T, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ok && !c.now().Before(c.until) && !c.reloading {
		c.reloading = true
		c.bg.Add(1)
		go c.reload(c.gen)
	}
	return c.val, c.ok
}

// refresh loads the value now and keeps it.
func (c *cached[T]) refresh(ctx context.Context) (T, error) {
	v, err := c.load(ctx)
	if err != nil {
		var zero T
		return zero, err
	}
	c.mu.Lock()
	c.val, c.ok, c.until = v, true, c.now().Add(c.ttl)
	c.mu.Unlock()
	return v, nil
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
		c.val, c.ok, c.until = v, true, c.now().Add(c.ttl)
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
