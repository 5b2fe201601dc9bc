package main_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	cgfake "github.com/chainguard-dev/image-request-bridge/internal/fake/chainguard"
	jfake "github.com/chainguard-dev/image-request-bridge/internal/fake/jira"
	snfake "github.com/chainguard-dev/image-request-bridge/internal/fake/servicenow"
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

func TestDemo(t *testing.T) {
	stdout, stderr, code := run(t, nil, "demo", "--state-dir", t.TempDir())
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, want := range []string{"TICKET", "IMG-1", "Won't Do", "3 Closed Complete", "4 Closed Incomplete", "not touched", "did you mean", "Audit trail", "bridge.db"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("demo output lacks %q", want)
		}
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
