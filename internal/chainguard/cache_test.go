package chainguard

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// loader is a load function whose answers the test controls: each call
// takes the next answer from its channel.
type loader struct {
	calls   atomic.Int32
	answers chan answer
}

type answer struct {
	v   int
	err error
}

func (l *loader) load(ctx context.Context) (int, error) {
	l.calls.Add(1)
	select {
	case a := <-l.answers:
		return a.v, a.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func TestCachedServesStaleWhileReloading(t *testing.T) {
	const ttl = 10 * time.Minute
	clk := newClock()
	l := &loader{answers: make(chan answer, 1)}
	c := newCached(ttl, clk.Now, l.load)
	ctx := context.Background()

	// Concurrent first reads: one load, every caller gets its answer.
	l.answers <- answer{v: 1}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if v, err := c.get(ctx); v != 1 || err != nil {
				t.Errorf("first get = %d, %v", v, err)
			}
		}()
	}
	wg.Wait()
	if n := l.calls.Load(); n != 1 {
		t.Fatalf("%d loads for concurrent first reads, want 1", n)
	}

	// Stale: the old value at once while the reload is still waiting for
	// its answer, and only one reload however many reads.
	clk.Advance(ttl)
	for range 5 {
		if v, err := c.get(ctx); v != 1 || err != nil {
			t.Fatalf("stale get = %d, %v, want 1 at once", v, err)
		}
	}
	l.answers <- answer{v: 2}
	c.wait()
	if n := l.calls.Load(); n != 2 {
		t.Fatalf("%d loads, want 2 (one background reload)", n)
	}
	if v, _ := c.get(ctx); v != 2 {
		t.Fatalf("after the reload get = %d, want 2", v)
	}

	// A failed reload keeps the value and is not retried on every read...
	clk.Advance(ttl)
	c.get(ctx)
	l.answers <- answer{err: errors.New("unavailable")}
	c.wait()
	for range 5 {
		if v, err := c.get(ctx); v != 2 || err != nil {
			t.Fatalf("after a failed reload get = %d, %v, want the old 2", v, err)
		}
	}
	if n := l.calls.Load(); n != 3 {
		t.Fatalf("%d loads, want 3 (no retry before the retry delay)", n)
	}
	// ...but after the retry delay.
	clk.Advance(c.retry)
	c.get(ctx)
	l.answers <- answer{v: 3}
	c.wait()
	if v, _ := c.get(ctx); v != 3 || l.calls.Load() != 4 {
		t.Fatalf("after the retry get = %d with %d loads, want 3 with 4", v, l.calls.Load())
	}

	// Invalidated: the next read waits for a fresh load, and a reload that
	// was already running cannot put its older answer back.
	clk.Advance(ttl)
	c.get(ctx) // starts a reload
	c.invalidate()
	l.answers <- answer{v: 4} // the old reload's answer
	c.wait()
	l.answers <- answer{v: 5}
	if v, err := c.get(ctx); v != 5 || err != nil {
		t.Fatalf("after invalidate get = %d, %v, want a fresh 5", v, err)
	}
}

// A value is served stale for one TTL at most: when reloads keep failing,
// reads then wait for a load and get its error, not an ever older answer.
func TestCachedStopsServingTooOldAValue(t *testing.T) {
	const ttl = 10 * time.Minute
	clk := newClock()
	l := &loader{answers: make(chan answer, 1)}
	c := newCached(ttl, clk.Now, l.load)
	ctx := context.Background()
	l.answers <- answer{v: 1}
	c.get(ctx)
	clk.Advance(ttl)
	for age := ttl; age < 2*ttl; age += c.retry {
		if v, err := c.get(ctx); v != 1 || err != nil {
			t.Fatalf("at %s old: get = %d, %v, want the stale 1", age, v, err)
		}
		l.answers <- answer{err: errors.New("unavailable")} // the reload that get started
		c.wait()
		clk.Advance(c.retry)
	}
	l.answers <- answer{err: errors.New("unavailable")}
	if _, err := c.get(ctx); err == nil {
		t.Fatal("a value twice the TTL old was served while its reloads fail")
	}
	if n := l.calls.Load(); n != 12 {
		t.Fatalf("%d loads, want 12 (the first, one reload a minute, the last)", n)
	}
}

// A reader waits for another's load no longer than its own context allows.
func TestCachedWaitIsBoundedByTheCallersContext(t *testing.T) {
	l := &loader{answers: make(chan answer)}
	c := newCached(time.Minute, time.Now, l.load)
	go c.get(context.Background()) // loads, and waits for an answer
	for l.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := c.get(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a reader behind a hanging load: %v, want its own deadline", err)
	}
	l.answers <- answer{v: 1} // let the first reader finish
}

func TestCachedFirstLoadErrorIsReturned(t *testing.T) {
	l := &loader{answers: make(chan answer, 1)}
	c := newCached(time.Minute, time.Now, l.load)
	l.answers <- answer{err: errors.New("refused")}
	if _, err := c.get(context.Background()); err == nil {
		t.Fatal("a failed first load returned no error")
	}
	if _, ok := c.peek(); ok {
		t.Fatal("a failed first load left a value")
	}
	l.answers <- answer{v: 7}
	if v, err := c.get(context.Background()); v != 7 || err != nil {
		t.Fatalf("get after a failed first load = %d, %v", v, err)
	}
}
