package server

import (
	"crypto/sha256"
	"sync"
	"time"
)

// seen is a bounded set of delivery ids that forgets each id after a TTL, or
// earlier when it is full (oldest first). Keys are hashed, so a long id costs
// no more memory than a short one.
type seen struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu    sync.Mutex
	seq   uint64
	items map[[32]byte]seenItem
	order []seenRef // insertion order, which is expiry order (the TTL is fixed)
}

type seenItem struct {
	until time.Time
	seq   uint64
}

type seenRef struct {
	key [32]byte
	seq uint64
}

func newSeen(ttl time.Duration, max int, now func() time.Time) *seen {
	return &seen{ttl: ttl, max: max, now: now, items: make(map[[32]byte]seenItem)}
}

// add records id and reports whether it was absent (true: first delivery).
func (s *seen) add(id string) bool {
	k := sha256.Sum256([]byte(id))
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(now)
	if _, ok := s.items[k]; ok {
		return false
	}
	// Stale entries left by forget count towards a looser bound on order.
	for len(s.order) > 0 && (len(s.items) >= s.max || len(s.order) >= 2*s.max) {
		s.pop()
	}
	s.seq++
	s.items[k] = seenItem{until: now.Add(s.ttl), seq: s.seq}
	s.order = append(s.order, seenRef{key: k, seq: s.seq})
	return true
}

// forget removes id, so that a retry of a delivery that was not acted on is
// not taken for a duplicate.
func (s *seen) forget(id string) {
	k := sha256.Sum256([]byte(id))
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.items, k) // its order entry is dropped when it reaches the front
}

func (s *seen) expire(now time.Time) {
	for len(s.order) > 0 {
		ref := s.order[0]
		if it, ok := s.items[ref.key]; ok && it.seq == ref.seq && now.Before(it.until) {
			return
		}
		s.pop()
	}
}

// pop drops the oldest order entry and its item, unless the item was
// forgotten or added again since (then the entry is stale).
func (s *seen) pop() {
	ref := s.order[0]
	s.order = s.order[1:]
	if it, ok := s.items[ref.key]; ok && it.seq == ref.seq {
		delete(s.items, ref.key)
	}
	if len(s.order) == 0 {
		s.order = nil // let the backing array go
	}
}

func (s *seen) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.items)
}
