package bench

import (
	"sync"
	"testing"
)

func TestGoidDistinguishesGoroutines(t *testing.T) {
	here := goid()
	if here == 0 || goid() != here {
		t.Fatalf("goid not stable: %d", here)
	}
	const n = 8
	var wg sync.WaitGroup
	got := make(chan int64, n)
	block := make(chan struct{})
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := goid()
			got <- id
			<-block // stay alive until every id is recorded
			if goid() != id {
				t.Error("goid changed within a goroutine")
			}
		}()
	}
	seen := map[int64]bool{here: true}
	for range n {
		id := <-got
		if seen[id] {
			t.Errorf("two live goroutines share id %d", id)
		}
		seen[id] = true
	}
	close(block)
	wg.Wait()
}
