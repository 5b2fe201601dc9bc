package servicenow_test

import (
	"strings"
	"testing"

	"github.com/chainguard-dev/image-request-bridge/connectors/servicenow"
	snfake "github.com/chainguard-dev/image-request-bridge/internal/fake/servicenow"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// A page whose last row carries a sys_id with "^NQ…" (a broken proxy, a
// hostile instance) must not become the paging cursor: "sys_id>x^NQactive=true"
// would OR a second query in and list every active RITM of every catalog item.
// The response is refused; no request ever carries the injected terms.
func TestHostileSysIDNeverReachesTheQuery(t *testing.T) {
	for name, sysID := range map[string]string{
		"new query":  "ffffffffffffffffffffffffffffffff^NQactive=true",
		"order by":   "ffffffffffffffffffffffffffffffff^ORDERBYDESCsys_id",
		"line break": "ffffffffffffffffffffffffffffffff\nactive=false",
		"upper case": "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF",
	} {
		t.Run(name, func(t *testing.T) {
			fake := snfake.New()
			defer fake.Close()
			seed(fake, 3, "python")
			body := `{"result":[{"sys_id":` + jsonString(sysID) + `,"number":"RITM0019999","active":"true","approval":"approved","cat_item":"` + catItem + `"}]}`
			fake.InjectFault(snfake.Fault{Method: "GET", PathContains: "/sc_req_item", Body: body})
			src := newSource(t, fake, func(o *servicenow.Options) { o.PageSize = 1 })
			var got []isync.Ticket
			err := src.Approved(ctx(t), func(tk isync.Ticket) error { got = append(got, tk); return nil })
			if err == nil || !strings.Contains(err.Error(), "sys_id") {
				t.Fatalf("Approved = %v after a malformed sys_id, want an error naming it", err)
			}
			if len(got) != 0 {
				t.Errorf("%d tickets handed on from a refused page", len(got))
			}
			for _, r := range fake.Requests() {
				if strings.Contains(r.RawQuery, "NQ") || strings.Contains(r.RawQuery, "ORDERBYDESC") || strings.Contains(r.RawQuery, "%0A") {
					t.Errorf("a request carries the injected terms: %s", r.RawQuery)
				}
			}
		})
	}
}

func jsonString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}
