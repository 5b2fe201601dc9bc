package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/chainguard-dev/image-request-bridge/internal/store"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// A ticket blocked at its write-back keeps its state (provisioned) and is
// shown as blocked by its cause, as the bridge_tickets_blocked gauge counts it.
func TestStatusShowsTicketsBlockedAtWriteBack(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "bridge.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	rec, _, err := st.Claim(ctx, "jira", "10001", "IMG-1", "test", now, now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	rec.State, rec.BlockedCause, rec.LastError, rec.LeaseOwner = isync.StateProvisioned, "jira:transition_missing", "no transition named \"Finish\"", ""
	if err := st.Save(ctx, &rec); err != nil {
		t.Fatal(err)
	}
	cmd := &cobra.Command{}
	cmd.SetContext(ctx)
	var out bytes.Buffer
	if err := printSummary(cmd, st, &out); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{"1 blocked:", "BLOCKED ON", "jira:transition_missing", "bridge replay"} {
		if !strings.Contains(got, want) {
			t.Errorf("status output lacks %q:\n%s", want, got)
		}
	}
}
