package servicenow

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	snfake "github.com/chainguard-dev/image-request-bridge/internal/fake/servicenow"
	"github.com/chainguard-dev/image-request-bridge/internal/source"
)

var _ source.Demoer = connector{}

// The demo's catalog items and integration user (fake values: the fake
// accepts nothing else).
const (
	demoCatalogItem = "3f1dd0320a0a0b99000a53f7604a2ef9"
	demoOtherItem   = "9d2c6f1e0a0a0b99000a53f7604a11aa"
	demoUser        = "svc.image-bridge"
	demoPassword    = "demo-servicenow-password"
)

// demoSeeds are the RITMs `bridge demo` shows: one of each outcome.
var demoSeeds = []struct {
	what  string
	image string
	mod   func(*snfake.RITM)
}{
	{what: "approved, valid image", image: "python:latest-dev"},
	{what: "approved, full reference", image: "cgr.dev/chainguard/go:1.25"},
	{what: "approved, already present", image: "node:20"},
	{what: "approved, unknown image", image: "pythn:3.12"},
	{what: "approved, malformed reference", image: "docker.io/library/Python 3.12"},
	{what: "not yet approved", image: "nginx", mod: func(r *snfake.RITM) { r.Approval = "requested" }},
	{what: "another catalog item", image: "redis", mod: func(r *snfake.RITM) { r.CatItem = demoOtherItem }},
}

var demoRequesters = []string{"Alex Example", "Sam Rivera", "Priya Natarajan", "Jordan Lee"}

// Demo starts the ServiceNow fake with one RITM of each outcome.
func (connector) Demo(context.Context) (*source.Demo, error) {
	sn := snfake.New(snfake.WithBasicAuth(demoUser, demoPassword))
	for _, name := range demoRequesters {
		sn.SetDisplayValue(snfake.UserSysID(name), name)
	}
	ritms := make([]snfake.RITM, 0, len(demoSeeds))
	for i, s := range demoSeeds {
		r := snfake.RITM{CatItem: demoCatalogItem, RequestedFor: snfake.UserSysID(demoRequesters[i%len(demoRequesters)]),
			Variables: map[string]string{"image_name": s.image, "justification": "Demo: " + s.what, "team": "platform"}}
		if s.mod != nil {
			s.mod(&r)
		}
		ritms = append(ritms, sn.AddRITM(r))
	}
	return &source.Demo{
		Upstream: "ServiceNow fake at " + sn.URL(),
		Seeded:   fmt.Sprintf("%d requested items (RITMs)", len(ritms)),
		Section: fmt.Sprintf(`enabled: true
instance_url: %q
username: %q
password: %q
catalog_item: %q
variables: { image: image_name, justification: justification, extra: [team] }
timeout: 10s
`, sn.URL(), demoUser, demoPassword, demoCatalogItem),
		Tickets: func(w io.Writer, state func(string) string) {
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TICKET\tREQUESTED IMAGE\tSCENARIO\tRITM STATE\tBRIDGE\tCLOSE NOTES")
			for i, r := range ritms {
				cur, _ := sn.RITM(r.SysID)
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", cur.Number, r.Variables["image_name"], demoSeeds[i].what,
					demoStateLabel(cur.State), source.DemoState(state(r.SysID)), source.DemoCell(cur.CloseNotes))
			}
			tw.Flush()
		},
		Notes: func(w io.Writer) {
			fmt.Fprintln(w, "Work notes written by the bridge:")
			for _, r := range ritms {
				for _, j := range sn.Journal(r.SysID) {
					fmt.Fprintf(w, "\n  %s (%s):\n    %s\n", r.Number, j.Element, strings.ReplaceAll(j.Value, "\n", "\n    "))
				}
			}
		},
		Close: sn.Close,
	}, nil
}

func demoStateLabel(s string) string {
	labels := map[string]string{"1": "1 Open", "2": "2 Work in Progress", "3": "3 Closed Complete", "4": "4 Closed Incomplete", "7": "7 Closed Skipped"}
	if l, ok := labels[s]; ok {
		return l
	}
	return s
}
