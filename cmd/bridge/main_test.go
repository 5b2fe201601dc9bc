package main_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	cgfake "github.com/chainguard-dev/image-request-bridge/internal/fake/chainguard"
	jfake "github.com/chainguard-dev/image-request-bridge/internal/fake/jira"
	snfake "github.com/chainguard-dev/image-request-bridge/internal/fake/servicenow"
	"github.com/chainguard-dev/image-request-bridge/internal/store"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

const (
	catItem = "3f1dd0320a0a0b99000a53f7604a2ef9"
	orgID   = "0123456789abcdef0123456789abcdef01234567"
	cgTok   = "cg-secret-token-7c1e"
	snPass  = "sn-secret-password-9f2a"
)

var bridgeBin string

// TestMain builds the real binary once; the tests drive it as an admin would.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "bridge-bin-")
	if err != nil {
		panic(err)
	}
	bridgeBin = filepath.Join(dir, "bridge")
	out, err := exec.Command("go", "build", "-o", bridgeBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building bridge: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func run(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(bridgeBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

type env struct {
	sn     *snfake.Server
	cg     *cgfake.Server
	config string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	sn := snfake.New(snfake.WithBasicAuth("svc.bridge", snPass))
	t.Cleanup(sn.Close)
	cg, err := cgfake.New(cgfake.WithToken(cgTok), cgfake.WithOrg(orgID, "example.com"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cg.Close)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cg-token"), []byte(cgTok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`
bridge: { instance_id: blackbox }
log: { level: info, format: json }
state: { driver: sqlite, dsn: %q }
chainguard: { api_url: %q, org_id: %q, org_name: example.com, token_file: cg-token }
servicenow:
  enabled: true
  instance_url: %q
  username: svc.bridge
  password: ${SN_PASSWORD}
  catalog_item: %q
`, filepath.Join(dir, "bridge.db"), cg.Addr(), orgID, sn.URL(), catItem)
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return &env{sn: sn, cg: cg, config: path}
}

func TestSyncBlackBox(t *testing.T) {
	e := newEnv(t)
	ok := e.sn.AddRITM(snfake.RITM{CatItem: catItem, Variables: map[string]string{"image_name": "python:latest-dev"}})
	bad := e.sn.AddRITM(snfake.RITM{CatItem: catItem, Variables: map[string]string{"image_name": "ghcr.io/x/y"}})
	stdout, stderr, code := run(t, []string{"SN_PASSWORD=" + snPass}, "sync", "--config", e.config)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if r, _ := e.sn.RITM(ok.SysID); r.State != "3" {
		t.Errorf("valid RITM state %q", r.State)
	}
	if r, _ := e.sn.RITM(bad.SysID); r.State != "4" {
		t.Errorf("invalid RITM state %q", r.State)
	}
	if !strings.Contains(stdout, "tickets listed") {
		t.Errorf("no summary on stdout:\n%s", stdout)
	}
	// Every log line about a ticket names source, ticket and request id.
	for _, line := range strings.Split(strings.TrimSpace(stderr), "\n") {
		if strings.Contains(line, `"decision"`) && !(strings.Contains(line, `"source":"servicenow"`) && strings.Contains(line, `"ticket":"RITM`) && strings.Contains(line, `"request_id":"ibr-`)) {
			t.Errorf("log line lacks ticket context: %s", line)
		}
	}
	for _, s := range []string{cgTok, snPass} {
		if strings.Contains(stdout+stderr, s) {
			t.Errorf("output leaks a secret")
		}
	}
	// A second run writes nothing.
	before := len(e.sn.Requests())
	if _, stderr, code := run(t, []string{"SN_PASSWORD=" + snPass}, "sync", "--config", e.config); code != 0 {
		t.Fatalf("second run exit %d: %s", code, stderr)
	}
	for _, r := range e.sn.Requests()[before:] {
		if r.Method != "GET" {
			t.Errorf("second run wrote: %s %s", r.Method, r.Path)
		}
	}
}

func TestSyncFailsWhenSourceUnreachable(t *testing.T) {
	e := newEnv(t)
	_, stderr, code := run(t, []string{"SN_PASSWORD=wrong"}, "sync", "--config", e.config)
	if code == 0 {
		t.Fatal("sync exited 0 although ServiceNow refused the credentials")
	}
	if !strings.Contains(stderr, "401") {
		t.Errorf("stderr does not explain the failure:\n%s", stderr)
	}
}

func TestValidate(t *testing.T) {
	e := newEnv(t)
	stdout, stderr, code := run(t, []string{"SN_PASSWORD=" + snPass}, "validate", "--config", e.config, "--online")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	if strings.Contains(stdout+stderr, snPass) || strings.Contains(stdout+stderr, cgTok) {
		t.Error("validate output leaks a secret")
	}
	if !strings.Contains(stdout, "servicenow") || !strings.Contains(stdout, "ok") {
		t.Errorf("validate --online output:\n%s", stdout)
	}

	// A misspelt key is an error naming the key and its line.
	data, _ := os.ReadFile(e.config)
	bad := filepath.Join(filepath.Dir(e.config), "bad.yaml")
	os.WriteFile(bad, []byte(strings.Replace(string(data), "catalog_item:", "catalog_itme:", 1)), 0o600)
	_, stderr, code = run(t, []string{"SN_PASSWORD=" + snPass}, "validate", "--config", bad)
	if code == 0 || !strings.Contains(stderr, "catalog_itme") || !strings.Contains(stderr, ":11:") {
		t.Errorf("exit %d, stderr:\n%s", code, stderr)
	}
	// An unset variable is named.
	_, stderr, code = run(t, []string{"SN_PASSWORD="}, "validate", "--config", e.config)
	_ = stderr
	if code == 0 {
		t.Error("validate accepted an empty password")
	}
}

func TestVersion(t *testing.T) {
	stdout, stderr, code := run(t, nil, "version")
	if code != 0 || !regexp.MustCompile(`^image-request-bridge \S+ go1\.\S+ \w+/\w+\n$`).MatchString(stdout) {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

func TestDemo(t *testing.T) {
	dir := t.TempDir()
	stdout, stderr, code := run(t, nil, "demo", "--state-dir", dir)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, want := range []string{"TICKET", "IMG-1", "Won't Do", "3 Closed Complete", "4 Closed Incomplete", "not touched", "did you mean", "Audit trail", "bridge.db"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}

	// The store the demo leaves reads with --store, and no config.
	db := filepath.Join(dir, "bridge.db")
	if !strings.Contains(stdout, "bridge status --store "+db) {
		t.Errorf("the demo does not say how to look at its store:\n%s", stdout)
	}
	stdout, stderr, code = run(t, nil, "status", "--store", db, "IMG-1")
	if code != 0 || !strings.Contains(stdout, "State:") || !strings.Contains(stdout, "reported") {
		t.Errorf("status --store: exit %d\n%s\n%s", code, stdout, stderr)
	}
	stdout, stderr, code = run(t, nil, "audit", "--store", db, "--format", "csv", "--ticket", "IMG-1")
	if lines := strings.Split(strings.TrimSpace(stdout), "\n"); code != 0 || len(lines) < 3 || !strings.HasPrefix(lines[0], "time,") {
		t.Errorf("audit --store: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if _, stderr, code = run(t, nil, "status", "--store", db, "--config", "bridge.yaml"); code == 0 || !strings.Contains(stderr, "not both") {
		t.Errorf("status with --store and --config: exit %d, %s", code, stderr)
	}
	if _, stderr, code = run(t, nil, "status", "--store", filepath.Join(dir, "missing.db")); code == 0 || !strings.Contains(stderr, "--store") {
		t.Errorf("status with a missing --store: exit %d, %s", code, stderr)
	}
}

// Both sources enabled in one `bridge sync`.
func TestSyncBothSources(t *testing.T) {
	e := newEnv(t)
	jf := jfake.New(jfake.WithDeployment(jfake.DataCenter))
	defer jf.Close()
	is := jf.AddIssue(jfake.Issue{Fields: map[string]any{jf.FieldID("Image name"): "go:latest"}})
	r := e.sn.AddRITM(snfake.RITM{CatItem: catItem, Variables: map[string]string{"image_name": "python"}})
	data, _ := os.ReadFile(e.config)
	cfg := string(data) + fmt.Sprintf(`
jira:
  enabled: true
  url: %q
  deployment: datacenter
  api_token: ${JIRA_PAT}
  jql: project = IMG AND status = Approved
  fields: { image: Image name, justification: Justification }
`, jf.URL())
	os.WriteFile(e.config, []byte(cfg), 0o600)
	stdout, stderr, code := run(t, []string{"SN_PASSWORD=" + snPass, "JIRA_PAT=" + jfake.DefaultPAT}, "sync", "--config", e.config)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	if got, _ := e.sn.RITM(r.SysID); got.State != "3" {
		t.Errorf("RITM state %q", got.State)
	}
	if got, _ := jf.Issue(is.Key); got.Status != "Done" || len(jf.Comments(is.Key)) != 1 {
		t.Errorf("issue status %q, %d comments", got.Status, len(jf.Comments(is.Key)))
	}
	if strings.Contains(stdout+stderr, jfake.DefaultPAT) {
		t.Error("output leaks the Jira token")
	}
}

// daemon starts `bridge run` on the env's config with the HTTP server on a
// free loopback port; it is stopped with SIGTERM at cleanup.
type daemon struct {
	cmd    *exec.Cmd
	base   string
	stderr *syncBuffer
	exited chan error
}

// syncBuffer is a bytes.Buffer safe for the process's writes and the test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func startDaemon(t *testing.T, e *env, extra string, envv ...string) *daemon {
	t.Helper()
	return startDaemonWith(t, e, func(cfg string) string {
		return strings.Replace(cfg, "servicenow:\n", "servicenow:\n  schedule: \"@every 1h\"\n  webhook_secret: ${SN_HOOK}\n", 1) + extra
	}, envv...)
}

// startDaemonWith starts `bridge run` on the env's config as edit changes it,
// with server.listen on a free loopback port.
func startDaemonWith(t *testing.T, e *env, edit func(string) string, envv ...string) *daemon {
	t.Helper()
	addr := freePort(t)
	data, _ := os.ReadFile(e.config)
	cfg := edit(string(data)) + fmt.Sprintf("server: { listen: %q }\n", addr)
	path := filepath.Join(filepath.Dir(e.config), "run.yaml")
	os.WriteFile(path, []byte(cfg), 0o600)
	cmd := exec.Command(bridgeBin, "run", "--config", path)
	cmd.Env = append(append(os.Environ(), "SN_PASSWORD="+snPass, "SN_HOOK="+hookSecret), envv...)
	d := &daemon{cmd: cmd, base: "http://" + addr, stderr: &syncBuffer{}, exited: make(chan error, 1)}
	cmd.Stderr = d.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(40 * time.Second):
			_ = cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("bridge run stderr:\n%s", d.stderr.String())
		}
	})
	deadline := time.Now().Add(hangGuard)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(d.base + "/healthz"); err == nil {
			resp.Body.Close()
			return d
		}
		select {
		case err := <-d.exited:
			d.exited <- err // for the cleanup
			t.Fatalf("bridge run exited at start (%v):\n%s", err, d.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("bridge run did not start:\n%s", d.stderr.String())
	return nil
}

const hookSecret = "sn-hook-secret-3d9c"

func (d *daemon) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(d.base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func signedRITMHook(sysID string) (*http.Request, error) {
	body := fmt.Sprintf(`{"event":"ritm.approval.approved","event_id":"%s","table":"sc_req_item","sys_id":"%s"}`, sysID[:8], sysID)
	mac := hmac.New(sha256.New, []byte(hookSecret))
	mac.Write([]byte(body))
	req, err := http.NewRequest("POST", "", strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Signature", base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	return req, nil
}

// A signed ServiceNow webhook gets the RITM provisioned and closed with no
// poll; a forged one and a replay are answered without being queued; /metrics
// counts each. How fast a delivery closes a ticket is measured by
// BenchmarkWebhook (bench/), not asserted here.
func TestRunWebhookClosesTicket(t *testing.T) {
	e := newEnv(t)
	d := startDaemon(t, e, "")
	// Wait for the start-up pass (nothing approved yet) to finish.
	waitFor(t, hangGuard, func() bool { return strings.Contains(d.stderr.String(), "pass finished") })
	r := e.sn.AddRITM(snfake.RITM{CatItem: catItem, Variables: map[string]string{"image_name": "python"}})
	lists := countLists(e.sn)

	// The server answers a delivery only once it has decided: 401 means the
	// forged one was not queued, so there is nothing to wait for.
	forged, _ := signedRITMHook(r.SysID)
	forged.Header.Set("X-Signature", base64.StdEncoding.EncodeToString([]byte("forged-signature-000000000000000")))
	if code := post(t, d.base+"/webhooks/servicenow", forged); code != http.StatusUnauthorized {
		t.Fatalf("forged delivery answered %d", code)
	}

	req, _ := signedRITMHook(r.SysID)
	if code := post(t, d.base+"/webhooks/servicenow", req); code != http.StatusAccepted {
		t.Fatalf("signed delivery answered %d", code)
	}
	waitFor(t, hangGuard, func() bool { got, _ := e.sn.RITM(r.SysID); return got.State == "3" })
	// The ticket is counted once its write-back has returned, which may
	// follow the PATCH by a read of the journal.
	waitFor(t, hangGuard, func() bool {
		_, m := d.get(t, "/metrics")
		return strings.Contains(m, `bridge_tickets_total{decision="reported",source="servicenow"} 1`)
	})
	if n := countLists(e.sn); n != lists {
		t.Errorf("the RITM was found by polling (%d listings), not by the webhook", n-lists)
	}
	// Replaying the same delivery is answered 200 "duplicate", again
	// without being queued.
	again, _ := signedRITMHook(r.SysID)
	if code := post(t, d.base+"/webhooks/servicenow", again); code != http.StatusOK {
		t.Errorf("a replayed delivery answered %d, want 200 (duplicate)", code)
	}
	if n := len(e.sn.WorkNotes(r.SysID)); n != 1 || e.cg.CountCalls("CreateRepo") != 1 {
		t.Errorf("after a forged delivery and a replay: %d notes, %d CreateRepo", n, e.cg.CountCalls("CreateRepo"))
	}
	_, metricsText := d.get(t, "/metrics")
	for _, want := range []string{
		`bridge_tickets_total{decision="reported",source="servicenow"} 1`,
		`bridge_webhook_deliveries_total{endpoint="servicenow",result="bad_signature"} 1`,
		`bridge_webhook_deliveries_total{endpoint="servicenow",result="accepted"} 1`,
		`bridge_webhook_deliveries_total{endpoint="servicenow",result="duplicate"} 1`,
	} {
		if !strings.Contains(metricsText, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(metricsText, snPass) || strings.Contains(metricsText, cgTok) || strings.Contains(metricsText, hookSecret) {
		t.Error("/metrics leaks a secret")
	}
}

// /readyz fails while ServiceNow refuses the credentials, and recovers.
func TestRunReadiness(t *testing.T) {
	e := newEnv(t)
	e.sn.InjectFault(snfake.Fault{Status: 401, Times: 1 << 20})
	d := startDaemon(t, e, "")
	code, body := d.get(t, "/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "servicenow") {
		t.Fatalf("/readyz = %d %q while ServiceNow answers 401", code, body)
	}
	e.sn.ClearFaults()
	waitFor(t, hangGuard, func() bool { c, _ := d.get(t, "/readyz"); return c == http.StatusOK })
}

// SIGTERM in the middle of a pass on a backlog starts no more tickets: only
// the tickets in progress at the signal (at most the concurrency, 4) make
// their provisioning call after it, every lease is released at exit, and the
// next run finishes the backlog, each ticket with exactly one note. At the
// defaults; each write-back takes a second, so the daemon is mid-pass for
// the whole backlog (before the fix the pass went on starting tickets for
// the whole grace period).
func TestRunSIGTERMMidPass(t *testing.T) {
	e := newEnv(t)
	var ids []string
	for i := 0; i < 100; i++ {
		ids = append(ids, e.sn.AddRITM(snfake.RITM{CatItem: catItem, Variables: map[string]string{"image_name": "python"}}).SysID)
	}
	e.sn.InjectFault(snfake.Fault{Method: "PATCH", Delay: time.Second, Times: 1 << 20})
	d := startDaemon(t, e, "")
	waitFor(t, hangGuard, func() bool { return e.cg.CountCalls("CreateRepo") >= 5 })
	before := e.cg.CountCalls("CreateRepo")
	took := d.terminate(t)
	started := e.cg.CountCalls("CreateRepo") - before
	t.Logf("SIGTERM with %d of %d tickets provisioned: %d provisioning calls after it, exit after %s", before, len(ids), started, took)
	if started > 4 {
		t.Errorf("%d tickets made their provisioning call after SIGTERM; at most the 4 in progress may", started)
	}
	recs := records(t, e, ids)
	if len(recs) > before+4 {
		t.Errorf("the store holds %d tickets, %d provisioned before SIGTERM: tickets were started after it", len(recs), before)
	}
	for _, r := range recs {
		if r.LeaseOwner != "" || (r.State != isync.StateDone && !r.NextAttemptAt.IsZero()) {
			t.Errorf("%s after exit: state %s, lease %q, next attempt %v; want the lease released and nothing backing off", r.Key, r.State, r.LeaseOwner, r.NextAttemptAt)
		}
	}

	e.sn.ClearFaults()
	if _, stderr, code := run(t, []string{"SN_PASSWORD=" + snPass}, "sync", "--config", e.config); code != 0 {
		t.Fatalf("sync after restart: %s", stderr)
	}
	for _, id := range ids {
		r, _ := e.sn.RITM(id)
		if n := len(e.sn.WorkNotes(id)); r.State != "3" || n != 1 {
			t.Errorf("RITM %s: state %s, %d notes", r.Number, r.State, n)
		}
	}
}

// Write-backs that hang past the grace period are interrupted: the daemon
// exits before Kubernetes' default 30 s SIGKILL, the interrupted tickets
// keep their state with their leases released and no backoff (an
// interruption is not an upstream failure), and the next run closes them
// with one note each.
func TestRunSIGTERMInterruptsHungWriteBacks(t *testing.T) {
	e := newEnv(t)
	var ids []string
	for i := 0; i < 10; i++ {
		ids = append(ids, e.sn.AddRITM(snfake.RITM{CatItem: catItem, Variables: map[string]string{"image_name": "python"}}).SysID)
	}
	e.sn.InjectFault(snfake.Fault{Method: "PATCH", Delay: time.Hour, Times: 1 << 20})
	d := startDaemon(t, e, "")
	waitFor(t, hangGuard, func() bool { return countMethod(e.sn, "PATCH") >= 4 })
	took := d.terminate(t)
	t.Logf("SIGTERM with 4 write-backs hung: exit after %s", took)
	if !strings.Contains(d.stderr.String(), "grace period over") {
		t.Error("the hung write-backs were not interrupted at the end of the grace period")
	}
	if n := e.cg.CountCalls("CreateRepo"); n != 4 {
		t.Errorf("%d provisioning calls, want the 4 of the tickets in progress", n)
	}
	recs := records(t, e, ids)
	for _, r := range recs {
		if r.State != isync.StateProvisioned || r.LeaseOwner != "" || !r.NextAttemptAt.IsZero() {
			t.Errorf("%s after an interrupted write-back: state %s, lease %q, next attempt %v; want provisioned, released, due at once", r.Key, r.State, r.LeaseOwner, r.NextAttemptAt)
		}
	}
	if len(recs) != 4 {
		t.Errorf("%d tickets in the store, want the 4 in progress", len(recs))
	}

	e.sn.ClearFaults()
	if _, stderr, code := run(t, []string{"SN_PASSWORD=" + snPass}, "sync", "--config", e.config); code != 0 {
		t.Fatalf("sync after restart: %s", stderr)
	}
	for _, id := range ids {
		r, _ := e.sn.RITM(id)
		if n := len(e.sn.WorkNotes(id)); r.State != "3" || n != 1 {
			t.Errorf("RITM %s: state %s, %d notes", r.Number, r.State, n)
		}
	}
}

// A listing that never answers is cancelled at SIGTERM: with nothing in
// progress the daemon exits at once instead of waiting out the grace period.
func TestRunSIGTERMCancelsHungListing(t *testing.T) {
	e := newEnv(t)
	e.sn.AddRITM(snfake.RITM{CatItem: catItem, Variables: map[string]string{"image_name": "python"}})
	e.sn.InjectFault(snfake.Fault{Method: "GET", PathContains: "approval%3Dapproved", Delay: time.Hour, Times: 1 << 20})
	d := startDaemon(t, e, "")
	waitFor(t, hangGuard, func() bool { return countLists(e.sn) >= 1 })
	took := d.terminate(t)
	t.Logf("SIGTERM during a hung listing: exit after %s", took)
	if strings.Contains(d.stderr.String(), "grace period over") {
		t.Error("the daemon waited out the grace period with nothing in progress")
	}
	if n := e.cg.CountCalls("CreateRepo"); n != 0 {
		t.Errorf("%d provisioning calls after a listing that never answered", n)
	}
}

// terminate sends SIGTERM and waits for a clean exit, which must come
// before Kubernetes' default terminationGracePeriodSeconds (30 s) would
// SIGKILL the pod; it returns how long the exit took, for the log.
func (d *daemon) terminate(t *testing.T) time.Duration {
	t.Helper()
	sent := time.Now()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.exited:
		if err != nil {
			t.Fatalf("bridge run exited with %v\n%s", err, d.stderr.String())
		}
		d.exited <- err // for the cleanup
	case <-time.After(30 * time.Second):
		t.Fatalf("bridge run did not exit within Kubernetes' 30 s grace after SIGTERM\n%s", d.stderr.String())
	}
	return time.Since(sent).Round(time.Millisecond)
}

// records reads the store the daemon left: the records of the given RITMs
// that exist.
func records(t *testing.T, e *env, ids []string) []isync.Record {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(filepath.Dir(e.config), "bridge.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var out []isync.Record
	for _, id := range ids {
		r, err := st.Get(ctx, "servicenow", id)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

func countMethod(sn *snfake.Server, method string) int {
	n := 0
	for _, r := range sn.Requests() {
		if r.Method == method {
			n++
		}
	}
	return n
}

func post(t *testing.T, url string, req *http.Request) int {
	t.Helper()
	u, _ := neturl.Parse(url)
	req.URL = u
	req.Host = u.Host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// hangGuard bounds a wait for an event (a ticket closed, a log line, the
// daemon up). It only catches a hang: it is far above how long the event
// takes even on a loaded machine, and no test asserts how fast anything is.
const hangGuard = time.Minute

// waitFor polls cond until it holds; it fails the test only if d passes
// first (a hang, see hangGuard).
func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func countLists(sn *snfake.Server) int {
	n := 0
	for _, r := range sn.Requests() {
		if r.Method == "GET" && strings.Contains(r.RawQuery, "approval%3Dapproved") {
			n++
		}
	}
	return n
}

// --dry-run prints the plan and writes nothing upstream or in the store.
func TestSyncDryRun(t *testing.T) {
	e := newEnv(t)
	e.sn.AddRITM(snfake.RITM{CatItem: catItem, Variables: map[string]string{"image_name": "python:latest-dev"}})
	e.sn.AddRITM(snfake.RITM{CatItem: catItem, Variables: map[string]string{"image_name": "pythn"}})
	e.sn.AddRITM(snfake.RITM{CatItem: catItem, Variables: map[string]string{"image_name": "python:2.7"}})
	dbPath := filepath.Join(filepath.Dir(e.config), "bridge.db")
	stdout, stderr, code := run(t, []string{"SN_PASSWORD=" + snPass}, "sync", "--config", e.config, "--dry-run")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, want := range []string{"Registry.CreateRepo python", "did you mean", `no tag "2.7"`, "nothing was written"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("plan lacks %q:\n%s", want, stdout)
		}
	}
	for _, r := range e.sn.Requests() {
		if r.Method != "GET" {
			t.Errorf("dry run wrote to ServiceNow: %s %s", r.Method, r.Path)
		}
	}
	for _, m := range []string{"CreateRepo", "AddEntitlementImages"} {
		if n := e.cg.CountCalls(m); n != 0 {
			t.Errorf("dry run called %s %d times", m, n)
		}
	}
	if _, err := os.Stat(dbPath); err == nil {
		t.Error("dry run created the store")
	}
}

// The audit export matches a mixed run ticket by ticket; status and replay
// work on the same store.
func TestAuditStatusReplay(t *testing.T) {
	e := newEnv(t)
	ok := e.sn.AddRITM(snfake.RITM{CatItem: catItem, Variables: map[string]string{"image_name": "python"}})
	bad := e.sn.AddRITM(snfake.RITM{CatItem: catItem, Variables: map[string]string{"image_name": "ghcr.io/x/y"}})
	e.cg.DenyCapability("AddEntitlementImages", true)
	env := []string{"SN_PASSWORD=" + snPass}
	if _, stderr, code := run(t, env, "sync", "--config", e.config); code != 0 {
		t.Fatal(stderr)
	}
	stdout, stderr, code := run(t, env, "audit", "--config", e.config, "--format", "jsonl")
	if code != 0 {
		t.Fatal(stderr)
	}
	got := map[string][]string{}
	repo := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		var row struct {
			Ticket, Decision, Actor string
			RepoID                  string `json:"repo_id"`
		}
		if err := json.Unmarshal([]byte(line), &row); err != nil {
			t.Fatalf("bad jsonl line %q: %v", line, err)
		}
		got[row.Ticket] = append(got[row.Ticket], row.Decision)
		if row.RepoID != "" {
			repo[row.Ticket] = row.RepoID
		}
		if row.Actor != "blackbox" {
			t.Errorf("actor %q", row.Actor)
		}
	}
	if strings.Join(got[ok.Number], ",") != "provisioned,reported" || strings.Join(got[bad.Number], ",") != "rejected,reported" {
		t.Errorf("audit = %v", got)
	}
	if len(e.cg.OrgRepos()) != 1 || repo[ok.Number] != e.cg.OrgRepos()[0].GetId() {
		t.Errorf("audit repo id %q, org repos %v", repo[ok.Number], e.cg.OrgRepos())
	}
	stdout, _, code = run(t, env, "audit", "--config", e.config, "--format", "csv", "--ticket", bad.Number)
	if code != 0 || strings.Count(stdout, "\n") != 3 || !strings.HasPrefix(stdout, "time,source,") {
		t.Errorf("csv export:\n%s", stdout)
	}

	// A blocked ticket shows in status and is re-driven by replay once fixed.
	blocked := e.sn.AddRITM(snfake.RITM{CatItem: catItem, Variables: map[string]string{"image_name": "go"}})
	e.cg.DenyCapability("CreateRepo", true)
	run(t, env, "sync", "--config", e.config)
	stdout, _, _ = run(t, env, "status", "--config", e.config)
	if !strings.Contains(stdout, blocked.Number) || !strings.Contains(stdout, "blocked") {
		t.Errorf("status summary:\n%s", stdout)
	}
	stdout, _, _ = run(t, env, "status", blocked.Number, "--config", e.config)
	if !strings.Contains(stdout, "chainguard:permission_denied") || !strings.Contains(stdout, "noted") {
		t.Errorf("status %s:\n%s", blocked.Number, stdout)
	}
	e.cg.DenyCapability("CreateRepo", false)
	stdout, stderr, code = run(t, env, "replay", blocked.Number, "--config", e.config)
	if code != 0 || !strings.Contains(stdout, "state now done") {
		t.Fatalf("replay: %d\n%s\n%s", code, stdout, stderr)
	}
	if r, _ := e.sn.RITM(blocked.SysID); r.State != "3" || len(e.sn.WorkNotes(blocked.SysID)) != 2 {
		t.Errorf("after replay: state %s, %d notes", r.State, len(e.sn.WorkNotes(blocked.SysID)))
	}
}
