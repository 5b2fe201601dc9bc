package servicenow

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// The keyset index must page exactly as filtering and sorting every record
// does, while records change between pages.
func TestIndexedListingMatchesScan(t *testing.T) {
	s := New()
	defer s.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	cats := []string{"aaaa", "bbbb"}
	for i := range 600 {
		r := RITM{CatItem: cats[rng.IntN(2)], Variables: map[string]string{"image_name": fmt.Sprint("img", i)}}
		if rng.IntN(4) == 0 {
			r.Approval = "requested"
		}
		s.AddRITM(r)
	}
	scan := func(q query) []string {
		var out []string
		for _, id := range s.order {
			if q.matchesFunc(s.ritmGetter(s.ritms[id])) {
				out = append(out, id)
			}
		}
		slices.Sort(out)
		return out
	}
	ids := func(rs []*RITM) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.SysID)
		}
		return out
	}
	for round := range 3 {
		cursor := ""
		for page := 0; ; page++ {
			raw := "active=true^approval=approved^cat_item=aaaa"
			if cursor != "" {
				raw += "^sys_id>" + cursor
			}
			q := parseQuery(raw+"^ORDERBYsys_id", tables["sc_req_item"].valid)
			offset := 0
			if page%5 == 4 {
				offset = 3 // the empty-page step-over
			}
			s.mu.Lock()
			got, total := s.listRITMsLocked(q, offset, 17)
			want := scan(q)
			s.mu.Unlock()
			if total != len(want) {
				t.Fatalf("round %d page %d: total %d, want %d", round, page, total, len(want))
			}
			exp := want[min(offset, len(want)):min(offset+17, len(want))]
			if !slices.Equal(ids(got), exp) {
				t.Fatalf("round %d page %d: got %v, want %v", round, page, ids(got), exp)
			}
			if len(got) == 0 {
				break
			}
			// Close some of the page, approve others, as the bridge and people do.
			for _, r := range got {
				switch rng.IntN(3) {
				case 0:
					s.Update(r.SysID, func(x *RITM) { x.State = StateClosedComplete })
				case 1:
					s.AddJournal(r.SysID, ElementWorkNotes, "note", "admin")
				}
			}
			for range 3 {
				id := s.order[rng.IntN(len(s.order))]
				s.Update(id, func(x *RITM) { x.Approval, x.Active, x.State = "approved", "true", StateOpen })
			}
			cursor = got[len(got)-1].SysID
		}
		if round == 1 {
			s.AddRITM(RITM{CatItem: "aaaa", SysID: strings.Repeat("0", 32)}) // invalidates the index
		}
	}
}
