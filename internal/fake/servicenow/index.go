package servicenow

import (
	"slices"
	"sort"
	"strconv"
	"strings"
)

// The bridge pages sc_req_item by keyset: "<filter>^sys_id>CURSOR^ORDERBYsys_id".
// Answering that by rendering and filtering every record costs O(n) per page,
// O(n²) per pass, which over a large backlog makes the fake, not the client,
// the bottleneck. ritmIndex keeps the records ordered by sys_id and, for the
// few filters seen last, which of them match, in a Fenwick tree; a page then
// costs O(log n) per row and the total count O(log n), whatever the size.

// maxViews bounds how many filters the index keeps up to date.
const maxViews = 4

// ritmIndex is the sc_req_item index. Its zero value is ready; every method
// runs with the server's mutex held.
type ritmIndex struct {
	byID  []*RITM        // every RITM, ordered by sys_id
	pos   map[string]int // sys_id → index in byID
	stale bool           // RITMs were added since byID was built
	views []*matchView   // most recently used first
}

// matchView is the set of records matching one filter.
type matchView struct {
	key  string
	pred func(*RITM) bool
	hit  []bool  // by position in byID
	tree fenwick // counts of hit
}

// added notes that a RITM was inserted: the order and every view are rebuilt
// on the next indexed query.
func (x *ritmIndex) added() {
	x.stale = true
	x.views = nil
}

// changed re-evaluates r against every view after an update.
func (x *ritmIndex) changed(s *Server, r *RITM) {
	if x.stale || len(x.views) == 0 {
		return
	}
	p, ok := x.pos[r.SysID]
	if !ok {
		return
	}
	for _, v := range x.views {
		if m := v.pred(r); m != v.hit[p] {
			v.hit[p] = m
			if m {
				v.tree.add(p, 1)
			} else {
				v.tree.add(p, -1)
			}
		}
	}
}

// build orders the records by sys_id if records were added.
func (x *ritmIndex) build(s *Server) {
	if !x.stale && x.pos != nil {
		return
	}
	x.byID = x.byID[:0]
	for _, id := range s.order {
		x.byID = append(x.byID, s.ritms[id])
	}
	slices.SortFunc(x.byID, func(a, b *RITM) int { return strings.Compare(a.SysID, b.SysID) })
	x.pos = make(map[string]int, len(x.byID))
	for i, r := range x.byID {
		x.pos[r.SysID] = i
	}
	x.stale = false
	x.views = nil
}

// view returns the view of filter key, building it (and evicting the least
// recently used) when there is none.
func (x *ritmIndex) view(key string, pred func(*RITM) bool) *matchView {
	for i, v := range x.views {
		if v.key == key {
			copy(x.views[1:i+1], x.views[:i])
			x.views[0] = v
			return v
		}
	}
	v := &matchView{key: key, pred: pred, hit: make([]bool, len(x.byID))}
	counts := make([]int32, len(x.byID))
	for i, r := range x.byID {
		if pred(r) {
			v.hit[i] = true
			counts[i] = 1
		}
	}
	v.tree = newFenwick(counts)
	if len(x.views) == maxViews {
		x.views = x.views[:maxViews-1]
	}
	x.views = append([]*matchView{v}, x.views...)
	return v
}

// fenwick is a binary indexed tree of counts over positions 0..n-1.
type fenwick []int32

// newFenwick builds the tree of counts in O(n).
func newFenwick(counts []int32) fenwick {
	f := make(fenwick, len(counts)+1)
	for i, c := range counts {
		j := i + 1
		f[j] += c
		if k := j + (j & -j); k < len(f) {
			f[k] += f[j]
		}
	}
	return f
}

func (f fenwick) add(i int, d int32) {
	for j := i + 1; j < len(f); j += j & -j {
		f[j] += d
	}
}

// prefix is the count over positions [0, i).
func (f fenwick) prefix(i int) int {
	n := 0
	for j := i; j > 0; j -= j & -j {
		n += int(f[j])
	}
	return n
}

// find returns the position of the k-th counted element (k ≥ 1), or
// len(f)-1 (past the end) when there are fewer than k.
func (f fenwick) find(k int) int {
	pos := 0
	step := 1
	for step*2 < len(f) {
		step *= 2
	}
	for ; step > 0; step /= 2 {
		if next := pos + step; next < len(f) && int(f[next]) < k {
			pos = next
			k -= int(f[next])
		}
	}
	return pos // 0-based position of the k-th element
}

// ritmGetter returns the value-only fields of r, for matching and ordering.
func (s *Server) ritmGetter(r *RITM) func(string) cell {
	return func(field string) cell {
		c, _ := s.ritmCellLocked(r, field, false)
		return c
	}
}

// listRITMsLocked filters, orders and pages sc_req_item without rendering
// records outside the page: it returns the page's records and the total
// count of matches.
func (s *Server) listRITMsLocked(q query, offset, limit int) ([]*RITM, int) {
	if q.invalid && s.invalidNoRows {
		return nil, 0
	}
	if page, total, ok := s.listIndexedLocked(q, offset, limit); ok {
		return page, total
	}
	var candidates []*RITM
	if id, ok := q.singleEquals("sys_id"); ok {
		if r := s.ritms[id]; r != nil {
			candidates = []*RITM{r}
		}
	} else {
		candidates = make([]*RITM, 0, len(s.order))
		for _, id := range s.order {
			candidates = append(candidates, s.ritms[id])
		}
	}
	var matched []*RITM
	for _, r := range candidates {
		if q.matchesFunc(s.ritmGetter(r)) {
			matched = append(matched, r)
		}
	}
	if len(q.orders) > 0 {
		slices.SortStableFunc(matched, func(a, b *RITM) int { return q.compare(s.ritmGetter(a), s.ritmGetter(b)) })
	}
	total := len(matched)
	return matched[min(offset, total):min(offset+limit, total)], total
}

// listIndexedLocked answers the keyset-paging shape, one alternative ordered
// by sys_id alone, from the index; ok is false for any other query.
func (s *Server) listIndexedLocked(q query, offset, limit int) ([]*RITM, int, bool) {
	if len(q.alternatives) != 1 || len(q.orders) != 1 || q.orders[0].field != "sys_id" || q.orders[0].desc {
		return nil, 0, false
	}
	if _, ok := q.singleEquals("sys_id"); ok {
		return nil, 0, false // one record: the plain path is cheaper
	}
	// Split the sys_id lower bounds (the cursor) from the filter.
	var bounds []condition
	rest := query{orders: q.orders}
	var and [][]condition
	for _, or := range q.alternatives[0] {
		if len(or) == 1 && or[0].field == "sys_id" && (or[0].op == ">" || or[0].op == ">=") {
			bounds = append(bounds, or[0])
			continue
		}
		and = append(and, or)
	}
	rest.alternatives = [][][]condition{and}

	x := &s.index
	x.build(s)
	pred := func(r *RITM) bool { return rest.matchesFunc(s.ritmGetter(r)) }
	v := x.view(filterKey(and), pred)

	lower := 0
	for _, b := range bounds {
		i := sort.Search(len(x.byID), func(i int) bool {
			if b.op == ">" {
				return x.byID[i].SysID > b.value
			}
			return x.byID[i].SysID >= b.value
		})
		lower = max(lower, i)
	}
	before := v.tree.prefix(lower)
	total := v.tree.prefix(len(x.byID)) - before
	var page []*RITM
	for k := before + offset + 1; len(page) < limit && k <= before+total; k++ {
		page = append(page, x.byID[v.tree.find(k)])
	}
	return page, total, true
}

// singleEquals returns X when q is one alternative that ANDs "field=X".
func (q query) singleEquals(field string) (string, bool) {
	if len(q.alternatives) != 1 {
		return "", false
	}
	for _, or := range q.alternatives[0] {
		if len(or) == 1 && or[0].field == field && or[0].op == "=" {
			return or[0].value, true
		}
	}
	return "", false
}

// filterKey identifies a conjunction of conditions.
func filterKey(and [][]condition) string {
	var b strings.Builder
	for _, or := range and {
		b.WriteByte('(')
		for _, c := range or {
			b.WriteString(strconv.Quote(c.field))
			b.WriteString(strconv.Quote(c.op))
			b.WriteString(strconv.Quote(c.value))
		}
		b.WriteByte(')')
	}
	return b.String()
}
