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

// add reports whether none of ids was present (true: first delivery), and
// then records them all; one seen id makes the delivery a duplicate.
func (s *seen) add(ids ...string) bool {
	ks := make([][32]byte, len(ids))
	for i, id := range ids {
		ks[i] = sha256.Sum256([]byte(id))
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(now)
	for _, k := range ks {
		if _, ok := s.items[k]; ok {
			return false
		}
	}
	for _, k := range ks {
		// Stale entries left by forget count towards a looser bound on order.
		for len(s.order) > 0 && (len(s.items) >= s.max || len(s.order) >= 2*s.max) {
			s.pop()
		}
		s.seq++
		s.items[k] = seenItem{until: now.Add(s.ttl), seq: s.seq}
		s.order = append(s.order, seenRef{key: k, seq: s.seq})
	}
	return true
}

// forget removes ids, so that a retry of a delivery that was not acted on is
// not taken for a duplicate.
func (s *seen) forget(ids ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		delete(s.items, sha256.Sum256([]byte(id))) // its order entry is dropped when it reaches the front
	}
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

// limitedLog lets one log line through per key and interval, and counts the
// events it held back.
type limitedLog struct {
	every time.Duration
	now   func() time.Time

	mu   sync.Mutex
	keys map[string]*limitedKey
}

type limitedKey struct {
	next time.Time
	n    int // events since the last line
}

func newLimitedLog(every time.Duration, now func() time.Time) *limitedLog {
	return &limitedLog{every: every, now: now, keys: make(map[string]*limitedKey)}
}

// allow counts an event of key and reports whether to log it, with the
// number of events it stands for (itself and those held back since the last
// line). Keys are few (endpoint and result), so the map stays small.
func (l *limitedLog) allow(key string) (int, bool) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	k := l.keys[key]
	if k == nil {
		k = &limitedKey{}
		l.keys[key] = k
	}
	k.n++
	if now.Before(k.next) {
		return 0, false
	}
	n := k.n
	k.n, k.next = 0, now.Add(l.every)
	return n, true
}
