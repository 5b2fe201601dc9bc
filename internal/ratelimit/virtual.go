package ratelimit

import (
	"context"
	"sync"
	"time"
)

// VirtualClock is a Clock for tests: it reads a time that moves only when
// told to, and Sleep returns at once after moving the clock to the end of
// the sleep (never backwards). Elapsed virtual time is then exactly the
// waiting the limiter asked for, however loaded the machine is.
type VirtualClock struct {
	mu  sync.Mutex
	now time.Time
}

// NewVirtualClock returns a virtual clock reading start.
func NewVirtualClock(start time.Time) *VirtualClock { return &VirtualClock{now: start} }

// Now returns the virtual time.
func (c *VirtualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *VirtualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Sleep moves the clock to at least its reading at the call plus d and
// returns at once (ctx.Err() if ctx has ended).
func (c *VirtualClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if d > 0 {
		if end := c.now.Add(d); end.After(c.now) {
			c.now = end
		}
	}
	return nil
}
