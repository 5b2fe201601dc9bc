package main_test

import (
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	snfake "github.com/chainguard-dev/image-request-bridge/internal/fake/servicenow"
)

// setFileSizeLimit sets the soft RLIMIT_FSIZE of process pid to n bytes,
// keeping its hard limit: with n = 1, every write to a regular file fails with
// EFBIG (the Go runtime ignores SIGXFSZ), which is what a full disk is to the
// store: no page, WAL frame or journal can be written. n = 0 lifts it.
func setFileSizeLimit(t *testing.T, pid int, n uint64) {
	t.Helper()
	var old syscall.Rlimit
	if _, _, e := syscall.RawSyscall6(syscall.SYS_PRLIMIT64, uintptr(pid), syscall.RLIMIT_FSIZE, 0, uintptr(unsafe.Pointer(&old)), 0, 0); e != 0 {
		t.Fatalf("prlimit: %v", e)
	}
	lim := syscall.Rlimit{Cur: n, Max: old.Max}
	if n == 0 {
		lim.Cur = old.Max
	}
	if _, _, e := syscall.RawSyscall6(syscall.SYS_PRLIMIT64, uintptr(pid), syscall.RLIMIT_FSIZE, uintptr(unsafe.Pointer(&lim)), 0, 0, 0); e != 0 {
		t.Fatalf("prlimit: %v", e)
	}
}

// metric returns the value of the series named by prefix (name and labels)
// in the daemon's /metrics, or "".
func metric(t *testing.T, d *daemon, series string) string {
	t.Helper()
	_, body := d.get(t, "/metrics")
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return ""
	}
	return m[1]
}

// TestRunStoreFull: a daemon whose store can no longer be written (every
// file write fails, as on a full disk) says so: each failed write is logged
// at error with its ticket and counted in bridge_store_errors_total, /readyz
// answers 503 naming the store, the passes are logged as failed and the
// last-successful-poll gauge stops advancing. Once writes succeed again the
// tickets are done and the bridge is ready. Before, every pass logged
// "pass finished" at info with only an error count, /readyz stayed 200 and
// the gauge kept advancing.
func TestRunStoreFull(t *testing.T) {
	e := newEnv(t)
	dbPath := filepath.Join(filepath.Dir(e.config), "bridge.db")
	d := startDaemonWith(t, e, func(cfg string) string {
		// Passes every second, so that several fail while the disk is full.
		return strings.Replace(cfg, "servicenow:\n", "servicenow:\n  schedule: \"@every 1s\"\n", 1)
	})
	const gauge = `bridge_last_successful_poll_timestamp_seconds{source="servicenow"}`
	waitFor(t, hangGuard, func() bool { v := metric(t, d, gauge); return v != "" && v != "0" })
	if c, body := d.get(t, "/readyz"); c != http.StatusOK {
		t.Fatalf("/readyz = %d %s before the disk is full", c, body)
	}

	setFileSizeLimit(t, d.cmd.Process.Pid, 1)
	var ids []string
	for range 3 {
		ids = append(ids, e.sn.AddRITM(snfake.RITM{CatItem: catItem, Variables: map[string]string{"image_name": "python"}}).SysID)
	}
	const failedPass = "pass finished but failed"
	waitFor(t, hangGuard, func() bool { return strings.Contains(d.stderr.String(), failedPass) })
	last := metric(t, d, gauge)
	// Two more failed passes: the gauge has not moved.
	n := strings.Count(d.stderr.String(), failedPass)
	waitFor(t, hangGuard, func() bool { return strings.Count(d.stderr.String(), failedPass) >= n+2 })
	if got := metric(t, d, gauge); got != last {
		t.Errorf("last-successful-poll gauge moved from %s to %s while every write failed", last, got)
	}

	logs := d.stderr.String()
	for _, id := range ids {
		if !regexp.MustCompile(`"level":"error".*"ticket":"servicenow/` + id + `".*state store write failed`).MatchString(logs) {
			t.Errorf("no error line names ticket %s", id)
		}
	}
	if !regexp.MustCompile(`"level":"error".*` + failedPass).MatchString(logs) {
		t.Errorf("the failed pass is not logged at error")
	}
	if v := metric(t, d, `bridge_store_errors_total{op="claim"}`); v == "" || v == "0" {
		t.Errorf(`bridge_store_errors_total{op="claim"} = %q, want the failed claims`, v)
	}
	c, body := d.get(t, "/readyz")
	t.Logf("/readyz: %d %s", c, body)
	if c != http.StatusServiceUnavailable || !strings.Contains(body, "state store") || !strings.Contains(body, dbPath) {
		t.Errorf("/readyz = %d %q, want 503 naming the state store", c, body)
	}
	for _, id := range ids {
		if len(e.sn.WorkNotes(id)) != 0 {
			t.Errorf("ticket %s was noted though nothing could be stored", id)
		}
	}

	// Space again: the tickets are done, the bridge is ready, the gauge moves.
	setFileSizeLimit(t, d.cmd.Process.Pid, 0)
	waitFor(t, hangGuard, func() bool {
		for _, id := range ids {
			if r, _ := e.sn.RITM(id); r.State == "1" {
				return false
			}
		}
		return true
	})
	waitFor(t, hangGuard, func() bool { c, _ := d.get(t, "/readyz"); return c == http.StatusOK })
	waitFor(t, hangGuard, func() bool { return metric(t, d, gauge) != last })
}
