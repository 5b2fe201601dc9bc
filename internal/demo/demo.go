// Package demo runs the whole bridge on in-process fakes with zero set-up:
// Chainguard's, and the fake of every registered intake that can show itself
// (source.Demoer: ServiceNow and Jira today). Each intake seeds a handful of
// tickets; the demo runs one reconcile pass through the same wiring as
// `bridge sync` and prints what happened to each ticket.
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

	"github.com/chainguard-dev/image-request-bridge/connectors"
	"github.com/chainguard-dev/image-request-bridge/internal/app"
	"github.com/chainguard-dev/image-request-bridge/internal/config"
	cgfake "github.com/chainguard-dev/image-request-bridge/internal/fake/chainguard"
	"github.com/chainguard-dev/image-request-bridge/internal/source"
	"github.com/chainguard-dev/image-request-bridge/internal/store"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

const (
	orgID   = "4f7a1c2e9b3d5a6c8e0f1a2b3c4d5e6f70819203"
	orgName = "demo.example.com"
	token   = "demo-chainguard-token"
)

// Options configure a demo run.
type Options struct {
	StateDir string    // where bridge.db goes; "" = a new temporary directory
	Out      io.Writer // the tables
	Log      zerolog.Logger
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

	cg, err := cgfake.New(cgfake.WithToken(token), cgfake.WithOrg(orgID, orgName))
	if err != nil {
		return fmt.Errorf("starting the Chainguard fake: %w", err)
	}
	defer cg.Close()
	cg.AddOrgRepo("node")

	// Every registered intake that can show itself starts its fake and
	// seeds it; its section goes into the demo's configuration.
	type shown struct {
		name string
		demo *source.Demo
	}
	var demos []shown
	defer func() {
		for _, d := range demos {
			d.demo.Close()
		}
	}()
	var sections strings.Builder
	for _, c := range connectors.Sources {
		d, ok := c.(source.Demoer)
		if !ok {
			continue
		}
		dm, err := d.Demo(ctx)
		if err != nil {
			return fmt.Errorf("starting the %s demo: %w", c.Name(), err)
		}
		demos = append(demos, shown{c.Name(), dm})
		fmt.Fprintf(&sections, "%s:\n  %s\n", c.Name(), strings.ReplaceAll(strings.TrimSpace(dm.Section), "\n", "\n  "))
	}

	dbPath := filepath.Join(dir, "bridge.db")
	cfg, err := config.Parse([]byte(fmt.Sprintf(demoConfig, dbPath, cg.Addr(), orgID, orgName, token)+sections.String()), "demo.yaml")
	if err != nil {
		return fmt.Errorf("demo config: %w", err)
	}
	a, err := app.Build(ctx, cfg, o.Log, app.Options{})
	if err != nil {
		return err
	}
	defer a.Close()

	var upstreams, seeded []string
	for _, d := range demos {
		upstreams = append(upstreams, d.demo.Upstream)
		seeded = append(seeded, d.demo.Seeded)
	}
	fmt.Fprintf(o.Out, "Image Request Bridge demo: %s, Chainguard fake at %s\n", strings.Join(upstreams, ", "), cg.Addr())
	fmt.Fprintf(o.Out, "Seeded %s; running one reconcile pass...\n\n", strings.Join(seeded, " and "))
	st, err := a.Engine.Pass(ctx)
	if err != nil {
		return fmt.Errorf("demo pass: %w", err)
	}

	for i, d := range demos {
		if i > 0 {
			fmt.Fprintln(o.Out)
		}
		name := d.name
		d.demo.Tickets(o.Out, func(id string) string {
			rec, err := a.Store.Get(ctx, name, id)
			if err != nil {
				return ""
			}
			return string(rec.State)
		})
	}
	for _, d := range demos {
		fmt.Fprintln(o.Out)
		d.demo.Notes(o.Out)
	}

	fmt.Fprintf(o.Out, "\nChainguard calls: %d CreateRepo, %d ListRepos, %d GetEffectiveEntitlements; org repositories now: %s\n",
		cg.CountCalls("CreateRepo"), cg.CountCalls("ListRepos"), cg.CountCalls("GetEffectiveEntitlements"), repoNames(cg))
	fmt.Fprintf(o.Out, "Pass: %d listed, %d errors.\n", st.Listed, st.Errors)

	fmt.Fprintln(o.Out, "\nAudit trail (append-only):")
	tw := tabwriter.NewWriter(o.Out, 0, 4, 2, ' ', 0)
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

// demoConfig is the demo's configuration before the sources' sections.
const demoConfig = `
bridge: { instance_id: demo, concurrency: 4 }
log: { level: warn }
state: { driver: sqlite, dsn: %q }
chainguard: { api_url: %q, org_id: %q, org_name: %q, token: %q, provision: auto }
`

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
