package app

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/chainguard-dev/image-request-bridge/internal/config"
	cgfake "github.com/chainguard-dev/image-request-bridge/internal/fake/chainguard"
	jfake "github.com/chainguard-dev/image-request-bridge/internal/fake/jira"
	snfake "github.com/chainguard-dev/image-request-bridge/internal/fake/servicenow"
	"github.com/chainguard-dev/image-request-bridge/internal/server"
)

const (
	testOrgID   = "4f7a1c2e9b3d5a6c8e0f1a2b3c4d5e6f70819203"
	testOrgName = "test.example.com"
	testCGToken = "cg-token-for-ready-test"
	wrongToken  = "wrong-jira-token-never-shown"
	snUser      = "svc.bridge"
	snPassword  = "sn-password-for-ready-test"
	catalogItem = "3f1dd0320a0a0b99000a53f7604a2ef9"
)

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// readyz serves a's readiness over real HTTP, as `bridge run` does, and
// returns the answer to GET /readyz.
func readyz(t *testing.T, a *App) (int, string) {
	t.Helper()
	srv, err := server.New(t.Context(), server.Options{Engine: a.Engine, Ready: a.Ready, Logger: zerolog.New(io.Discard)})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	resp, err := http.Get(hs.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func build(t *testing.T, yml string) *App {
	t.Helper()
	cfg, err := config.Parse([]byte(yml), filepath.Join(t.TempDir(), "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := Build(t.Context(), cfg, zerolog.New(io.Discard), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// TestReadyzNamesEachFailingUpstream: with Jira refusing the bridge's
// credentials and ServiceNow unreachable, /readyz answers 503 naming both
// upstreams with their causes, and Chainguard, which is fine, not at all.
// Before, the checks ran one after another within the probe's 5 s and the
// body was "readiness check timed out after 5s".
func TestReadyzNamesEachFailingUpstream(t *testing.T) {
	cg, err := cgfake.New(cgfake.WithToken(testCGToken), cgfake.WithOrg(testOrgID, testOrgName))
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	jf := jfake.New(jfake.WithDeployment(jfake.Cloud))
	defer jf.Close()

	a := build(t, fmt.Sprintf(`
state: { dsn: %q }
chainguard: { api_url: %q, org_id: %q, org_name: %q, token: %q }
servicenow:
  enabled: true
  instance_url: http://%s
  username: %s
  password: %s
  catalog_item: %s
jira:
  enabled: true
  url: %q
  deployment: cloud
  email: %q
  api_token: %q
  jql: project = IMG AND status = Approved
  fields: { image: Image name, justification: Justification }
`, filepath.Join(t.TempDir(), "bridge.db"), cg.Addr(), testOrgID, testOrgName, testCGToken,
		closedAddr(t), snUser, snPassword, catalogItem,
		jf.URL(), jfake.DefaultEmail, wrongToken))

	status, body := readyz(t, a)
	t.Logf("GET /readyz: %d %s", status, body)
	if status != http.StatusServiceUnavailable {
		t.Fatalf("status = %d, want 503", status)
	}
	lines := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(strings.TrimPrefix(body, "not ready: ")), "\n") {
		name, rest, _ := strings.Cut(l, ": ")
		lines[name] = rest
	}
	if got := lines["jira"]; !strings.Contains(got, "401") {
		t.Errorf("jira line = %q, want the 401 answer", got)
	}
	if got := lines["servicenow"]; !strings.Contains(got, "connection refused") {
		t.Errorf("servicenow line = %q, want the connection refused", got)
	}
	if _, ok := lines["chainguard"]; ok {
		t.Errorf("chainguard is reported though it answers: %q", body)
	}
	for _, s := range []string{wrongToken, snPassword, testCGToken} {
		if strings.Contains(body, s) {
			t.Errorf("the body shows a secret: %q", body)
		}
	}
}

// TestReadyWhenAllAnswer: every upstream accepting the credentials is ready.
func TestReadyWhenAllAnswer(t *testing.T) {
	cg, err := cgfake.New(cgfake.WithToken(testCGToken), cgfake.WithOrg(testOrgID, testOrgName))
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	sn := snfake.New(snfake.WithBasicAuth(snUser, snPassword))
	defer sn.Close()
	a := build(t, fmt.Sprintf(`
state: { dsn: %q }
chainguard: { api_url: %q, org_id: %q, org_name: %q, token: %q }
servicenow: { enabled: true, instance_url: %q, username: %s, password: %s, catalog_item: %s }
`, filepath.Join(t.TempDir(), "bridge.db"), cg.Addr(), testOrgID, testOrgName, testCGToken, sn.URL(), snUser, snPassword, catalogItem))
	if status, body := readyz(t, a); status != http.StatusOK {
		t.Fatalf("GET /readyz = %d %s", status, body)
	}
	if err := a.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
}
