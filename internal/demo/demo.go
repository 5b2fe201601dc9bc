// Package demo runs the whole bridge on in-process fakes of ServiceNow, Jira
// and Chainguard with zero set-up: it seeds a handful of tickets, runs one
// reconcile pass through the same wiring as `bridge sync`, and prints what
// happened to each ticket.
package demo

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/rs/zerolog"

	"github.com/chainguard-dev/image-request-bridge/connectors/jira"
	"github.com/chainguard-dev/image-request-bridge/connectors/servicenow"
	"github.com/chainguard-dev/image-request-bridge/internal/app"
	"github.com/chainguard-dev/image-request-bridge/internal/config"
	cgfake "github.com/chainguard-dev/image-request-bridge/internal/fake/chainguard"
	jfake "github.com/chainguard-dev/image-request-bridge/internal/fake/jira"
	snfake "github.com/chainguard-dev/image-request-bridge/internal/fake/servicenow"
	"github.com/chainguard-dev/image-request-bridge/internal/store"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

const (
	catalogItem = "3f1dd0320a0a0b99000a53f7604a2ef9"
	otherItem   = "9d2c6f1e0a0a0b99000a53f7604a11aa"
	orgID       = "4f7a1c2e9b3d5a6c8e0f1a2b3c4d5e6f70819203"
	orgName     = "demo.example.com"
	token       = "demo-chainguard-token"
	snUser      = "svc.image-bridge"
	snPassword  = "demo-servicenow-password"
)

// Options configure a demo run.
type Options struct {
	StateDir string    // where bridge.db goes; "" = a new temporary directory
	Out      io.Writer // the tables
	Log      zerolog.Logger
}

type seed struct {
	what  string
	image string
	mod   func(*snfake.RITM)
}

var seeds = []seed{
	{what: "approved, valid image", image: "python:latest-dev"},
	{what: "approved, full reference", image: "cgr.dev/chainguard/go:1.25"},
	{what: "approved, already present", image: "node:20"},
	{what: "approved, unknown image", image: "pythn:3.12"},
	{what: "approved, malformed reference", image: "docker.io/library/Python 3.12"},
	{what: "not yet approved", image: "nginx", mod: func(r *snfake.RITM) { r.Approval = "requested" }},
	{what: "another catalog item", image: "redis", mod: func(r *snfake.RITM) { r.CatItem = otherItem }},
}

type jiraSeed struct {
	what, image, justification string
	mod                        func(*jfake.Issue)
}

var jiraSeeds = []jiraSeed{
	{what: "approved, valid image", image: "redis:latest", justification: "Cache for the checkout service"},
	{what: "approved, image field left empty", image: ""},
	{what: "approved, markup in the justification", image: "nginx", justification: "{html}<script>alert(1)</script>{html} see [here|javascript:alert(1)]"},
	{what: "waiting for approval", image: "curl", mod: func(i *jfake.Issue) { i.Status = "Waiting for approval" }},
}

// Run starts the fakes, seeds them, runs one pass and prints the outcome.
func Run(ctx context.Context, o Options) error {
	if o.Out == nil {
		o.Out = os.Stdout
	}
	dir, tempDir := o.StateDir, o.StateDir == ""
	if tempDir {
		d, err := os.MkdirTemp("", "bridge-demo-")
		if err != nil {
			return fmt.Errorf("creating a state directory: %w", err)
		}
		dir = d
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating state directory %s: %w", dir, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "bridge.db")); err == nil {
		// The fakes start empty: an old store would mix two runs' tickets.
		return fmt.Errorf("%s already holds a bridge.db from an earlier demo; remove it or choose another --state-dir", dir)
	}

	sn := snfake.New(snfake.WithBasicAuth(snUser, snPassword))
	defer sn.Close()
	cg, err := cgfake.New(cgfake.WithToken(token), cgfake.WithOrg(orgID, orgName))
	if err != nil {
		return fmt.Errorf("starting the Chainguard fake: %w", err)
	}
	defer cg.Close()
	cg.AddOrgRepo("node")

	requesters := []string{"Alex Example", "Sam Rivera", "Priya Natarajan", "Jordan Lee"}
	for _, name := range requesters {
		sn.SetDisplayValue(snfake.UserSysID(name), name)
	}
	var ritms []snfake.RITM
	for i, s := range seeds {
		r := snfake.RITM{CatItem: catalogItem, RequestedFor: snfake.UserSysID(requesters[i%len(requesters)]),
			Variables: map[string]string{"image_name": s.image, "justification": "Demo: " + s.what, "team": "platform"}}
		if s.mod != nil {
			s.mod(&r)
		}
		ritms = append(ritms, sn.AddRITM(r))
	}

	jf := jfake.New(jfake.WithDeployment(jfake.Cloud))
	defer jf.Close()
	var issues []jfake.Issue
	for i, s := range jiraSeeds {
		is := jfake.Issue{Summary: "Image request: " + s.what, Reporter: jfake.User{AccountID: fmt.Sprintf("5b10ac8d82e05b22cc7d4e%02d", i), DisplayName: requesters[(i+1)%len(requesters)]},
			Fields: map[string]any{jf.FieldID("Image name"): s.image, jf.FieldID("Justification"): s.justification}}
		if s.mod != nil {
			s.mod(&is)
		}
		issues = append(issues, jf.AddIssue(is))
	}

	dbPath := filepath.Join(dir, "bridge.db")
	cfg, err := config.Parse([]byte(fmt.Sprintf(demoConfig, dbPath, cg.Addr(), orgID, orgName, token, sn.URL(), snUser, snPassword, catalogItem,
		jf.URL(), jfake.DefaultEmail, jfake.DefaultAPIToken)), "demo.yaml")
	if err != nil {
		return fmt.Errorf("demo config: %w", err)
	}
	a, err := app.Build(ctx, cfg, o.Log, app.Options{})
	if err != nil {
		return err
	}
	defer a.Close()

	fmt.Fprintf(o.Out, "Image Request Bridge demo: ServiceNow fake at %s, Jira Cloud fake at %s, Chainguard fake at %s\n", sn.URL(), jf.URL(), cg.Addr())
	fmt.Fprintf(o.Out, "Seeded %d ServiceNow requested items (RITMs) and %d Jira issues; running one reconcile pass...\n\n", len(ritms), len(issues))
	st, err := a.Engine.Pass(ctx)
	if err != nil {
		return fmt.Errorf("demo pass: %w", err)
	}

	tw := tabwriter.NewWriter(o.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TICKET\tREQUESTED IMAGE\tSCENARIO\tRITM STATE\tBRIDGE\tCLOSE NOTES")
	for i, r := range ritms {
		cur, _ := sn.RITM(r.SysID)
		rec, err := a.Store.Get(ctx, servicenow.Name, r.SysID)
		bridge := "not touched"
		if err == nil {
			bridge = string(rec.State)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", cur.Number, r.Variables["image_name"], seeds[i].what, stateLabel(cur.State), bridge, orDash(cur.CloseNotes))
	}
	tw.Flush()

	fmt.Fprintln(o.Out)
	tw = tabwriter.NewWriter(o.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ISSUE\tIMAGE NAME\tSCENARIO\tSTATUS\tRESOLUTION\tBRIDGE")
	for i, is := range issues {
		cur, _ := jf.Issue(is.Key)
		rec, err := a.Store.Get(ctx, jira.Name, is.ID)
		bridge := "not touched"
		if err == nil {
			bridge = string(rec.State)
		}
		img, _ := is.Fields[jf.FieldID("Image name")].(string)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", cur.Key, orDash(img), jiraSeeds[i].what, cur.Status, orDash(cur.Resolution), bridge)
	}
	tw.Flush()

	fmt.Fprintln(o.Out, "\nWork notes written by the bridge:")
	for _, r := range ritms {
		for _, j := range sn.Journal(r.SysID) {
			fmt.Fprintf(o.Out, "\n  %s (%s):\n    %s\n", r.Number, j.Element, strings.ReplaceAll(j.Value, "\n", "\n    "))
		}
	}

	fmt.Fprintln(o.Out, "\nJira comments written by the bridge (wiki markup; user text escaped):")
	for _, is := range issues {
		for _, c := range jf.Comments(is.Key) {
			fmt.Fprintf(o.Out, "\n  %s:\n    %s\n", is.Key, strings.ReplaceAll(c.Body, "\n", "\n    "))
		}
	}

	fmt.Fprintf(o.Out, "\nChainguard calls: %d CreateRepo, %d ListRepos, %d GetEffectiveEntitlements; org repositories now: %s\n",
		cg.CountCalls("CreateRepo"), cg.CountCalls("ListRepos"), cg.CountCalls("GetEffectiveEntitlements"), repoNames(cg))
	fmt.Fprintf(o.Out, "Pass: %d listed, %d errors.\n", st.Listed, st.Errors)

	fmt.Fprintln(o.Out, "\nAudit trail (append-only):")
	tw = tabwriter.NewWriter(o.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME (UTC)\tTICKET\tREQUEST ID\tDECISION\tDETAIL")
	var rows []isync.AuditEntry
	err = a.Store.Audit(ctx, store.AuditFilter{}, func(e isync.AuditEntry) error {
		rows = append(rows, e)
		return nil
	})
	if err != nil {
		return fmt.Errorf("reading the audit log: %w", err)
	}
	// Grouped by ticket for reading; the store keeps them in write order.
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].Key < rows[j].Key })
	for _, e := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Time.UTC().Format("2006-01-02 15:04:05Z"), e.Key, e.RequestID, e.Decision, truncate(e.Detail, 90))
	}
	tw.Flush()
	n := len(rows)
	fmt.Fprintf(o.Out, "\nState and audit (%d rows) live in the SQLite store %s\n", n, dbPath)
	fmt.Fprintf(o.Out, "Look around: `bridge status --store %s [TICKET]`, `bridge audit --store %s --format csv`.\n", dbPath, dbPath)
	if tempDir {
		fmt.Fprintf(o.Out, "(%s is a temporary directory: remove it when done, or give --state-dir.)\n", filepath.Dir(dbPath))
	}
	fmt.Fprintln(o.Out, "Run the bridge for real: copy config.example.yaml to config.yaml, fill it in, then `bridge validate --config config.yaml --online` and `bridge sync --config config.yaml`.")
	return nil
}

const demoConfig = `
bridge: { instance_id: demo, concurrency: 4 }
log: { level: warn }
state: { driver: sqlite, dsn: %q }
chainguard: { api_url: %q, org_id: %q, org_name: %q, token: %q, provision: auto }
servicenow:
  enabled: true
  instance_url: %q
  username: %q
  password: %q
  catalog_item: %q
  variables: { image: image_name, justification: justification, extra: [team] }
  timeout: 10s
jira:
  enabled: true
  url: %q
  deployment: cloud
  email: %q
  api_token: %q
  jql: project = IMG AND status = Approved
  fields: { image: Image name, justification: Justification }
  transitions: { done: Done, rejected: Reject }
  timeout: 10s
`

func stateLabel(s string) string {
	labels := map[string]string{"1": "1 Open", "2": "2 Work in Progress", "3": "3 Closed Complete", "4": "4 Closed Incomplete", "7": "7 Closed Skipped"}
	if l, ok := labels[s]; ok {
		return l
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return truncate(s, 80)
}

func truncate(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

func repoNames(cg *cgfake.Server) string {
	var names []string
	for _, r := range cg.OrgRepos() {
		names = append(names, r.GetName())
	}
	return strings.Join(names, ", ")
}
