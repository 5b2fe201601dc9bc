package jira

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	jfake "github.com/chainguard-dev/image-request-bridge/internal/fake/jira"
	"github.com/chainguard-dev/image-request-bridge/internal/source"
)

var _ source.Demoer = connector{}

// demoSeeds are the issues `bridge demo` shows.
var demoSeeds = []struct {
	what, image, justification string
	mod                        func(*jfake.Issue)
}{
	{what: "approved, valid image", image: "redis:latest", justification: "Cache for the checkout service"},
	{what: "approved, image field left empty", image: ""},
	{what: "approved, markup in the justification", image: "nginx", justification: "{html}<script>alert(1)</script>{html} see [here|javascript:alert(1)]"},
	{what: "waiting for approval", image: "curl", mod: func(i *jfake.Issue) { i.Status = "Waiting for approval" }},
}

var demoReporters = []string{"Sam Rivera", "Priya Natarajan", "Jordan Lee", "Alex Example"}

// Demo starts the Jira Cloud fake with one issue of each kind.
func (connector) Demo(context.Context) (*source.Demo, error) {
	jf := jfake.New(jfake.WithDeployment(jfake.Cloud))
	issues := make([]jfake.Issue, 0, len(demoSeeds))
	for i, s := range demoSeeds {
		is := jfake.Issue{Summary: "Image request: " + s.what,
			Reporter: jfake.User{AccountID: fmt.Sprintf("5b10ac8d82e05b22cc7d4e%02d", i), DisplayName: demoReporters[i%len(demoReporters)]},
			Fields:   map[string]any{jf.FieldID("Image name"): s.image, jf.FieldID("Justification"): s.justification}}
		if s.mod != nil {
			s.mod(&is)
		}
		issues = append(issues, jf.AddIssue(is))
	}
	return &source.Demo{
		Upstream: "Jira Cloud fake at " + jf.URL(),
		Seeded:   fmt.Sprintf("%d Jira issues", len(issues)),
		Section: fmt.Sprintf(`enabled: true
url: %q
deployment: cloud
email: %q
api_token: %q
jql: project = IMG AND status = Approved
fields: { image: Image name, justification: Justification }
transitions: { done: Done, rejected: Reject }
timeout: 10s
`, jf.URL(), jfake.DefaultEmail, jfake.DefaultAPIToken),
		Tickets: func(w io.Writer, state func(string) string) {
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ISSUE\tIMAGE NAME\tSCENARIO\tSTATUS\tRESOLUTION\tBRIDGE")
			for i, is := range issues {
				cur, _ := jf.Issue(is.Key)
				img, _ := is.Fields[jf.FieldID("Image name")].(string)
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", cur.Key, source.DemoCell(img), demoSeeds[i].what, cur.Status,
					source.DemoCell(cur.Resolution), source.DemoState(state(is.ID)))
			}
			tw.Flush()
		},
		Notes: func(w io.Writer) {
			fmt.Fprintln(w, "Jira comments written by the bridge (wiki markup; user text escaped):")
			for _, is := range issues {
				for _, c := range jf.Comments(is.Key) {
					fmt.Fprintf(w, "\n  %s:\n    %s\n", is.Key, strings.ReplaceAll(c.Body, "\n", "\n    "))
				}
			}
		},
		Close: jf.Close,
	}, nil
}
