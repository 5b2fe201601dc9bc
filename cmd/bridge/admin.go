package main

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/chainguard-dev/image-request-bridge/internal/app"
	"github.com/chainguard-dev/image-request-bridge/internal/config"
	"github.com/chainguard-dev/image-request-bridge/internal/store"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// openStore opens the configured state store for the admin commands.
func openStore(cmd *cobra.Command, cfgPath string) (*config.Config, *store.SQLite, error) {
	cfg, _, err := loadConfig(cfgPath)
	if err != nil {
		return nil, nil, err
	}
	st, err := openStoreFile(cmd, cfg.State.DSN, "state.dsn")
	return cfg, st, err
}

// openReadStore opens the store of a read-only admin command (status,
// audit): the file given with --store, or the configured state.dsn. Reading
// a store needs no credentials, so --store needs no config: an administrator
// can inspect a copy of a store, or the store a `bridge demo` left.
func openReadStore(cmd *cobra.Command, cfgPath, storePath string) (*store.SQLite, error) {
	if storePath != "" {
		if cfgPath != "" {
			return nil, errors.New("give --store or --config, not both")
		}
		return openStoreFile(cmd, storePath, "--store")
	}
	_, st, err := openStore(cmd, cfgPath)
	return st, err
}

// openStoreFile opens an existing store file; what names where path came
// from, for the error.
func openStoreFile(cmd *cobra.Command, path, what string) (*store.SQLite, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("%s %s: %w (has the bridge run yet?)", what, path, err)
	}
	return store.Open(cmd.Context(), path)
}

// addStoreFlags adds --config and --store to a read-only admin command.
func addStoreFlags(cmd *cobra.Command, cfgPath, storePath *string) {
	cmd.Flags().StringVar(cfgPath, "config", "", "path to the YAML config (its state.dsn is the store)")
	cmd.Flags().StringVar(storePath, "store", "", "path to a store file to read instead (no config needed), e.g. the bridge.db a demo left")
}

// findRecords resolves a ticket given as a human key (RITM0010001, IMG-42) or
// a source id (a sys_id, a Jira issue id).
func findRecords(cmd *cobra.Command, st *store.SQLite, ticket string) ([]isync.Record, error) {
	recs, err := st.FindByKey(cmd.Context(), ticket)
	if err != nil {
		return nil, err
	}
	if len(recs) > 0 {
		return recs, nil
	}
	for _, src := range sourceNames() {
		if r, err := st.Get(cmd.Context(), src, ticket); err == nil {
			recs = append(recs, r)
		} else if !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("no ticket %q in the store (give a RITM number, a Jira key, a sys_id or an issue id)", ticket)
	}
	return recs, nil
}

func newStatusCmd() *cobra.Command {
	var cfgPath, storePath string
	cmd := &cobra.Command{
		Use:   "status [TICKET] (--config FILE | --store FILE)",
		Short: "Show the bridge's state: a summary, or one ticket with its audit trail",
		Long: `Without TICKET: tickets by source and state, then every ticket not done
(retrying, blocked, syncing) with its last error. With TICKET (a RITM number,
a Jira key, a sys_id or an issue id): its state, attempts, last error, result
and audit rows. Reads the store only.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := openReadStore(cmd, cfgPath, storePath)
			if err != nil {
				return err
			}
			defer st.Close()
			out := cmd.OutOrStdout()
			if len(args) == 0 {
				return printSummary(cmd, st, out)
			}
			recs, err := findRecords(cmd, st, args[0])
			if err != nil {
				return err
			}
			for i, r := range recs {
				if i > 0 {
					fmt.Fprintln(out)
				}
				if err := printRecord(cmd, st, out, r); err != nil {
					return err
				}
			}
			return nil
		},
	}
	addStoreFlags(cmd, &cfgPath, &storePath)
	return cmd
}

func printSummary(cmd *cobra.Command, st *store.SQLite, out io.Writer) error {
	counts, err := st.Counts(cmd.Context())
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	states := []isync.State{isync.StateNew, isync.StateProvisioning, isync.StateProvisioned, isync.StateSyncing, isync.StateRejected, isync.StateBlocked, isync.StateDone}
	fmt.Fprint(tw, "SOURCE")
	for _, s := range states {
		fmt.Fprintf(tw, "\t%s", strings.ToUpper(string(s)))
	}
	fmt.Fprintln(tw)
	sources := make([]string, 0, len(counts))
	for s := range counts {
		sources = append(sources, s)
	}
	sort.Strings(sources)
	for _, src := range sources {
		fmt.Fprint(tw, src)
		for _, s := range states {
			fmt.Fprintf(tw, "\t%d", counts[src][s])
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	var open []isync.Record
	if err := st.List(cmd.Context(), func(r isync.Record) error {
		if r.State != isync.StateDone {
			open = append(open, r)
		}
		return nil
	}); err != nil {
		return err
	}
	if len(open) == 0 {
		fmt.Fprintln(out, "\nEvery ticket the bridge has seen is done.")
		return nil
	}
	// A ticket blocked at its write-back keeps the state that says what is
	// left to do (provisioned, rejected): the cause, not the state, says it
	// is blocked, as the bridge_tickets_blocked gauge counts it.
	blocked := 0
	for _, r := range open {
		if r.BlockedCause != "" {
			blocked++
		}
	}
	if blocked > 0 {
		fmt.Fprintf(out, "\n%d blocked: the bridge cannot act until an administrator fixes the cause (BLOCKED ON); it retries with backoff, or `bridge replay TICKET` now.\n", blocked)
	}
	fmt.Fprintln(out, "\nNot done:")
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TICKET\tSOURCE\tSTATE\tBLOCKED ON\tATTEMPTS\tNEXT ATTEMPT\tLAST ERROR")
	for _, r := range open {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", r.Key, r.Source, r.State, orDash(r.BlockedCause), r.Attempts, when(r.NextAttemptAt), cut(r.LastError, 100))
	}
	return tw.Flush()
}

func printRecord(cmd *cobra.Command, st *store.SQLite, out io.Writer, r isync.Record) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	rows := [][2]string{
		{"Ticket", r.Key + " (" + r.Source + " " + r.TicketID + ")"},
		{"Request id", r.RequestID},
		{"State", string(r.State)},
		{"Attempts", fmt.Sprint(r.Attempts)},
		{"Next attempt", when(r.NextAttemptAt)},
		{"Requested image", orNone(r.Image)},
		{"Last error", orNone(r.LastError)},
		{"Blocked on", orNone(r.BlockedCause)},
		{"Causes noted", orNone(r.NotedCause)},
		{"Rejection reason", orNone(r.Reason)},
		{"Pull reference", orNone(r.Result.PullRef)},
		{"Repository id", orNone(r.Result.RepoID)},
		{"Method", orNone(r.Result.Method)},
		{"Lease", orNone(strings.TrimSpace(r.LeaseOwner + " until " + when(r.LeaseUntil)))},
		{"First seen / updated", when(r.CreatedAt) + " / " + when(r.UpdatedAt)},
	}
	if r.LeaseOwner == "" {
		rows[13][1] = "none"
	}
	for _, row := range rows {
		fmt.Fprintf(tw, "%s:\t%s\n", row[0], row[1])
	}
	tw.Flush()
	fmt.Fprintln(out, "\nAudit:")
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME (UTC)\tDECISION\tACTOR\tDETAIL")
	err := st.Audit(cmd.Context(), store.AuditFilter{Source: r.Source, TicketID: r.TicketID}, func(e isync.AuditEntry) error {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.Time.UTC().Format(tableTime), e.Decision, e.Actor, cut(e.Detail, 120))
		return nil
	})
	tw.Flush()
	return err
}

func newAuditCmd() *cobra.Command {
	var cfgPath, storePath, since, source, ticket, format string
	cmd := &cobra.Command{
		Use:   "audit (--config FILE | --store FILE) [--since 24h|2026-11-01T00:00:00Z] [--source S] [--ticket T] [--format jsonl|csv]",
		Short: "Export the append-only audit log",
		Long: `Export the audit log, oldest first: one row per decision with its time,
source, ticket, request id, requester, approver, image, justification,
decision, Chainguard repository id, detail and the bridge instance that made
it. --since takes a duration back from now (24h; a week is 168h) or an RFC 3339
time.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := store.AuditFilter{Source: source, TicketID: ticket}
			if since != "" {
				if d, err := time.ParseDuration(since); err == nil {
					f.Since = time.Now().Add(-d)
				} else if t, err := time.Parse(time.RFC3339, since); err == nil {
					f.Since = t
				} else {
					return fmt.Errorf("--since %q: want a duration such as 24h or 168h (days are not a unit), or an RFC 3339 time", since)
				}
			}
			if source != "" && !slices.Contains(sourceNames(), source) {
				return fmt.Errorf("--source %q: want %s", source, orList(sourceNames()))
			}
			if format != "jsonl" && format != "csv" {
				return fmt.Errorf("--format %q: want jsonl or csv", format)
			}
			st, err := openReadStore(cmd, cfgPath, storePath)
			if err != nil {
				return err
			}
			defer st.Close()
			return exportAudit(cmd, st, f, format, cmd.OutOrStdout())
		},
	}
	addStoreFlags(cmd, &cfgPath, &storePath)
	cmd.Flags().StringVar(&since, "since", "", "only rows at or after this time (a duration back from now, or RFC 3339)")
	cmd.Flags().StringVar(&source, "source", "", "only this source: "+orList(sourceNames()))
	cmd.Flags().StringVar(&ticket, "ticket", "", "only this ticket (key or id)")
	cmd.Flags().StringVar(&format, "format", "jsonl", "jsonl or csv")
	return cmd
}

// auditRow is the export shape of an audit entry; its field names are part of
// the export's contract.
type auditRow struct {
	Time          string `json:"time"`
	Source        string `json:"source"`
	TicketID      string `json:"ticket_id"`
	Ticket        string `json:"ticket"`
	RequestID     string `json:"request_id"`
	Requester     string `json:"requester"`
	Approver      string `json:"approver"`
	Image         string `json:"image"`
	Justification string `json:"justification"`
	Decision      string `json:"decision"`
	RepoID        string `json:"repo_id"`
	Detail        string `json:"detail"`
	Actor         string `json:"actor"`
}

var auditHeader = []string{"time", "source", "ticket_id", "ticket", "request_id", "requester", "approver", "image", "justification", "decision", "repo_id", "detail", "actor"}

func exportAudit(cmd *cobra.Command, st *store.SQLite, f store.AuditFilter, format string, out io.Writer) error {
	enc := json.NewEncoder(out)
	cw := csv.NewWriter(out)
	if format == "csv" {
		if err := cw.Write(auditHeader); err != nil {
			return err
		}
	}
	err := st.Audit(cmd.Context(), f, func(e isync.AuditEntry) error {
		r := auditRow{e.Time.UTC().Format(exportTime), e.Source, e.TicketID, e.Key, e.RequestID, e.Requester, e.Approver,
			e.Image, e.Justification, string(e.Decision), e.RepoID, e.Detail, e.Actor}
		if format == "jsonl" {
			return enc.Encode(r)
		}
		// Cells a spreadsheet would run as formulas are quoted with a leading '.
		row := []string{r.Time, r.Source, r.TicketID, r.Ticket, r.RequestID, csvSafe(r.Requester), csvSafe(r.Approver),
			csvSafe(r.Image), csvSafe(r.Justification), r.Decision, r.RepoID, csvSafe(r.Detail), r.Actor}
		return cw.Write(row)
	})
	cw.Flush()
	if err == nil {
		err = cw.Error()
	}
	return err
}

func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

func newReplayCmd() *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "replay TICKET --config FILE",
		Short: "Re-drive one ticket now, safely",
		Long: `Re-read one ticket and process it now, whatever its backoff: a blocked or
retrying ticket tries again; a done ticket that was reopened in the ITSM starts
over (provisioning is idempotent, and the result note is written once); a
closed ticket is left alone. TICKET is a RITM number, a Jira key, a sys_id or
an issue id the bridge has seen.

Replay writes to the store, so, like a pass, it is refused while a daemon
(bridge run) uses the same store.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, log, err := loadConfig(cfgPath)
			if err != nil {
				return err
			}
			a, err := app.Build(cmd.Context(), cfg, log, app.Options{})
			if held := (*store.HeldError)(nil); errors.As(err, &held) {
				return fmt.Errorf("replay writes to the store, so it needs the store to itself: %w. "+
					"Stop the daemon and replay (it resumes every ticket when started again), or let the daemon act: "+
					"it tries a blocked or retrying ticket again when its backoff ends, and takes up a reopened one at its next pass", err)
			}
			if err != nil {
				return err
			}
			defer a.Close()
			recs, err := findRecords(cmd, a.Store, args[0])
			if err != nil {
				return err
			}
			for _, r := range recs {
				d, err := a.Engine.Replay(cmd.Context(), r.Source, r.TicketID)
				if err != nil {
					return err
				}
				after, _ := a.Store.Get(cmd.Context(), r.Source, r.TicketID)
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %s; state now %s\n", r.Key, orNone(string(d)), after.State)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "path to the YAML config")
	return cmd
}

func printPlan(out io.Writer, steps []isync.Step) {
	if len(steps) == 0 {
		fmt.Fprintln(out, "Dry run: no approved ticket; nothing would be done.")
		return
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TICKET\tSOURCE\tIMAGE\tSTORE STATE\tWOULD")
	for _, s := range steps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Ticket.Key, s.Source, cut(s.Ticket.Image, 40), orNone(string(s.State)), cut(s.Action, 140))
	}
	tw.Flush()
	for _, s := range steps {
		if s.Report == nil {
			continue
		}
		fmt.Fprintf(out, "\n%s: would write (%s):\n  %s\n", s.Ticket.Key, s.Report.Outcome, s.Report.Marker)
		for _, f := range s.Report.Fields {
			fmt.Fprintf(out, "  %s: %s\n", f.Name, cut(f.Value, 200))
		}
	}
	fmt.Fprintln(out, "\nDry run: nothing was written upstream or in the store.")
}

// Times: tables to the second, with the zone; exports to the nanosecond in a
// fixed width, so that rows line up and sort as text.
const (
	tableTime  = "2006-01-02 15:04:05Z07:00"
	exportTime = "2006-01-02T15:04:05.000000000Z07:00"
)

func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(tableTime)
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func cut(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
