package main_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	cgfake "github.com/chainguard-dev/image-request-bridge/internal/fake/chainguard"
	jfake "github.com/chainguard-dev/image-request-bridge/internal/fake/jira"
	snfake "github.com/chainguard-dev/image-request-bridge/internal/fake/servicenow"
)

// Recognisable secrets. Every one holds the marker, so a partial leak (a
// cut, a prefix) is caught as well as a whole one. The ServiceNow password
// holds characters that YAML, URLs, JSON and Basic auth treat specially.
const (
	hygMarker    = "HYGIENE"
	hygCGToken   = "cgtok-HYGIENE-1f3a9c"
	hygSNUser    = "svc.bridge"
	hygSNPass    = `snpass-HYGIENE-7b2e:"#{x}&%`
	hygSNClient  = "client-h1"
	hygSNSecret  = "snclient-HYGIENE-c41d"
	hygJiraEmail = "bridge@example.com"
	hygJiraTok   = "jiratok-HYGIENE-9e07"
	hygSNHook    = "snhook-HYGIENE-55aa"
	hygJiraHook  = "jirahook-HYGIENE-0bd3"

	// Wrong credentials are secrets too: an operator's typo is often one
	// character away from the real value.
	hygWrongCG   = "cgwrong-HYGIENE-0000"
	hygWrongSN   = "snwrong-HYGIENE-1111"
	hygWrongJira = "jirawrong-HYGIENE-2222"
)

// hygForms are the ways a secret could show up: verbatim, URL- or
// base64-encoded, inside a Basic auth header.
func hygForms() []string {
	var out []string
	for _, s := range []string{hygCGToken, hygSNPass, hygSNSecret, hygJiraTok, hygSNHook, hygJiraHook, hygWrongCG, hygWrongSN, hygWrongJira} {
		out = append(out, s, url.QueryEscape(s), base64.StdEncoding.EncodeToString([]byte(s)), hex.EncodeToString([]byte(s)))
	}
	for _, pair := range []string{hygSNUser + ":" + hygSNPass, hygSNUser + ":" + hygWrongSN, hygJiraEmail + ":" + hygJiraTok, hygJiraEmail + ":" + hygWrongJira, hygSNClient + ":" + hygSNSecret} {
		out = append(out, base64.StdEncoding.EncodeToString([]byte(pair)))
	}
	return append(out, hygMarker, strings.ToLower(hygMarker))
}

// skipShort skips a test that drives the binary for seconds.
func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("slow: drives the bridge binary for seconds; skipped with -short")
	}
}

func assertNoSecret(t *testing.T, where, text string) {
	t.Helper()
	for _, s := range hygForms() {
		if i := strings.Index(text, s); i >= 0 {
			t.Errorf("%s leaks a secret (%q) at byte %d:\n%s", where, s, i, excerpt(text, i))
		}
	}
}

func jsonEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s)
}

func excerpt(text string, i int) string {
	lo, hi := max(0, i-200), min(len(text), i+200)
	return text[lo:hi]
}

type hygEnv struct {
	sn     *snfake.Server
	jf     *jfake.Server
	cg     *cgfake.Server
	dir    string
	config string
	addr   string
	env    []string
}

const hygConfig = `
bridge: { instance_id: bridge-h1 }
log: { level: debug, format: json }
state: { driver: sqlite, dsn: %q }
chainguard: { api_url: %q, org_id: %q, org_name: example.com, token_file: cg-token }
servicenow:
  enabled: true
  instance_url: %q
  username: %s
  password: ${SN_PASSWORD}
  oauth: { client_id: %s, client_secret: "${SN_CLIENT_SECRET}", grant_type: password }
  catalog_item: %q
  schedule: "@every 1h"
  webhook_secret: ${SN_HOOK}
jira:
  enabled: true
  url: %q
  deployment: cloud
  email: %s
  api_token: ${JIRA_TOKEN}
  jql: project = IMG AND status = Approved
  fields: { image: Image name, justification: Justification }
  schedule: "@every 1h"
  webhook_secret: ${JIRA_HOOK}
server: { listen: %q }
`

// newHygEnv starts the three fakes, each accepting only the secrets above,
// and writes a config that names every secret through the environment or a
// file.
func newHygEnv(t *testing.T) *hygEnv {
	t.Helper()
	e := &hygEnv{dir: t.TempDir(), addr: freePort(t)}
	e.sn = snfake.New(snfake.WithBasicAuth(hygSNUser, hygSNPass), snfake.WithOAuth(hygSNClient, hygSNSecret, 0))
	t.Cleanup(e.sn.Close)
	e.jf = jfake.New(jfake.WithDeployment(jfake.Cloud), jfake.WithBasicAuth(hygJiraEmail, hygJiraTok))
	t.Cleanup(e.jf.Close)
	cg, err := cgfake.New(cgfake.WithToken(hygCGToken), cgfake.WithOrg(orgID, "example.com"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cg.Close)
	e.cg = cg
	e.setCGToken(t, hygCGToken)
	e.config = e.writeConfig(t, "config.yaml", "")
	e.env = []string{"SN_PASSWORD=" + hygSNPass, "SN_CLIENT_SECRET=" + hygSNSecret, "JIRA_TOKEN=" + hygJiraTok,
		"SN_HOOK=" + hygSNHook, "JIRA_HOOK=" + hygJiraHook}
	return e
}

func (e *hygEnv) setCGToken(t *testing.T, tok string) {
	t.Helper()
	// Written aside and renamed, as the README asks of a token rotator.
	tmp := filepath.Join(e.dir, "cg-token.new")
	if err := os.WriteFile(tmp, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(e.dir, "cg-token")); err != nil {
		t.Fatal(err)
	}
}

// writeConfig writes the config, with edit applied as "old=>new" pairs
// separated by "\x00", under name.
func (e *hygEnv) writeConfig(t *testing.T, name, edit string) string {
	t.Helper()
	cfg := fmt.Sprintf(hygConfig, filepath.Join(e.dir, "bridge.db"), e.cg.Addr(), orgID, e.sn.URL(), hygSNUser, hygSNClient, catItem,
		e.jf.URL(), hygJiraEmail, e.addr)
	for _, pair := range strings.Split(edit, "\x00") {
		if old, repl, ok := strings.Cut(pair, "=>"); ok {
			if !strings.Contains(cfg, old) {
				t.Fatalf("config edit: %q not found", old)
			}
			cfg = strings.Replace(cfg, old, repl, 1)
		}
	}
	path := filepath.Join(e.dir, name)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// run runs the binary with the env's secrets (overridden by extra) and
// checks its output.
func (e *hygEnv) run(t *testing.T, extra []string, args ...string) (string, string, int) {
	t.Helper()
	stdout, stderr, code := run(t, append(append([]string(nil), e.env...), extra...), args...)
	assertNoSecret(t, strings.Join(args[:1], " ")+" stdout", stdout)
	assertNoSecret(t, strings.Join(args[:1], " ")+" stderr", stderr)
	return stdout, stderr, code
}

func (e *hygEnv) seed() {
	for _, img := range []string{"python:latest-dev", "ghcr.io/acme/x", "pythn"} {
		e.sn.AddRITM(snfake.RITM{CatItem: catItem, Variables: map[string]string{"image_name": img, "justification": "ci"}})
		e.jf.AddIssue(jfake.Issue{Fields: map[string]any{e.jf.FieldID("Image name"): img, e.jf.FieldID("Justification"): "ci"}})
	}
}

// checkUpstream checks what the bridge left in the fakes: notes, close
// notes and comments, and every request's path and query (credentials go
// in headers and bodies, never in a URL).
func (e *hygEnv) checkUpstream(t *testing.T) {
	t.Helper()
	for _, r := range e.sn.Requests() {
		assertNoSecret(t, "ServiceNow request URL", r.Path+"?"+r.RawQuery)
		if r.Method != "POST" { // the OAuth grant's form carries the credentials
			assertNoSecret(t, "ServiceNow request body", r.Body)
		}
	}
	for _, r := range e.jf.Requests() {
		assertNoSecret(t, "Jira request URL", r.Path+"?"+r.RawQuery)
		assertNoSecret(t, "Jira request body", r.Body)
	}
	for _, is := range e.jf.Issues() {
		for _, c := range e.jf.Comments(is.Key) {
			assertNoSecret(t, "Jira comment on "+is.Key, c.Body)
		}
	}
	for _, r := range e.sn.Requests() {
		if i := strings.LastIndex(r.Path, "/"); r.Method == "PATCH" && i >= 0 {
			id := r.Path[i+1:]
			for _, j := range e.sn.Journal(id) {
				assertNoSecret(t, "ServiceNow work note", j.Value)
			}
			if rec, ok := e.sn.RITM(id); ok {
				assertNoSecret(t, "ServiceNow close_notes", rec.CloseNotes)
			}
		}
	}
}

// TestSecretHygieneCommands drives validate, sync, status, audit and the
// dry run, on success and on every failure the upstreams can produce.
func TestSecretHygieneCommands(t *testing.T) {
	skipShort(t)
	e := newHygEnv(t)
	e.seed()

	t.Run("validate", func(t *testing.T) {
		stdout, _, code := e.run(t, nil, "validate", "--config", e.config)
		if code != 0 || !strings.Contains(stdout, "<secret>") {
			t.Fatalf("validate: exit %d, output without redacted secrets:\n%s", code, stdout)
		}
		stdout, stderr, code := e.run(t, nil, "validate", "--config", e.config, "--online")
		if code != 0 {
			t.Fatalf("validate --online: exit %d\n%s\n%s", code, stdout, stderr)
		}
	})

	t.Run("validate --online with wrong credentials", func(t *testing.T) {
		e.setCGToken(t, hygWrongCG)
		defer e.setCGToken(t, hygCGToken)
		stdout, stderr, code := e.run(t, []string{"SN_PASSWORD=" + hygWrongSN, "SN_CLIENT_SECRET=" + hygWrongSN, "JIRA_TOKEN=" + hygWrongJira},
			"validate", "--config", e.config, "--online")
		if code == 0 || strings.Count(stdout, "FAIL") < 3 {
			t.Fatalf("validate --online with wrong credentials: exit %d\n%s\n%s", code, stdout, stderr)
		}
	})

	t.Run("bad configs", func(t *testing.T) {
		for name, edit := range map[string]string{
			"unknown key next to a secret": "  password: ${SN_PASSWORD}=>  passwrd: ${SN_PASSWORD}",
			"secret and its file":          "  api_token: ${JIRA_TOKEN}=>  api_token: ${JIRA_TOKEN}\n  api_token_file: jira-token",
			"secret as a mapping":          "  password: ${SN_PASSWORD}=>  password: { value: \"${SN_PASSWORD}\" }",
			"secret as a list":             "  api_token: ${JIRA_TOKEN}=>  api_token: [\"${JIRA_TOKEN}\"]",
			"missing secret file":          "token_file: cg-token=>token_file: missing-token",
			"bad value next to secrets":    "  catalog_item: \"" + catItem + "\"=>  catalog_item: not-a-sys-id",
			"unterminated quote":           "client_secret: \"${SN_CLIENT_SECRET}\",=>client_secret: \"${SN_CLIENT_SECRET},",
			"unset variable":               "${JIRA_HOOK}=>${JIRA_HOOK_UNSET}",
		} {
			path := e.writeConfig(t, "bad.yaml", edit)
			for _, args := range [][]string{{"validate", "--config", path}, {"sync", "--config", path}} {
				if stdout, stderr, code := e.run(t, nil, args...); code == 0 {
					t.Errorf("%s: %s exited 0\n%s\n%s", name, args[0], stdout, stderr)
				}
			}
		}
	})

	t.Run("sync", func(t *testing.T) {
		stdout, stderr, code := e.run(t, nil, "sync", "--config", e.config, "--dry-run")
		if code != 0 {
			t.Fatalf("sync --dry-run: exit %d\n%s\n%s", code, stdout, stderr)
		}
		stdout, stderr, code = e.run(t, nil, "sync", "--config", e.config)
		if code != 0 {
			t.Fatalf("sync: exit %d\n%s\n%s", code, stdout, stderr)
		}
		if n := len(e.jf.Issues()); n != 3 || e.cg.CountCalls("CreateRepo") == 0 {
			t.Fatalf("sync did not run: %d issues, %d CreateRepo", n, e.cg.CountCalls("CreateRepo"))
		}
		e.run(t, nil, "status", "--config", e.config)
		e.run(t, nil, "audit", "--config", e.config, "--format", "jsonl")
		e.run(t, nil, "audit", "--config", e.config, "--format", "csv")
		e.checkUpstream(t)
	})

	t.Run("sync failures", func(t *testing.T) {
		basic := e.writeConfig(t, "basic.yaml", "  oauth: { client_id: "+hygSNClient+", client_secret: \"${SN_CLIENT_SECRET}\", grant_type: password }\n=>")
		for name, tc := range map[string]struct {
			env    []string
			config string // default e.config (ServiceNow OAuth)
			setup  func()
			failed bool // sync must exit non-zero
		}{
			"servicenow basic auth refuses the password": {config: basic, env: []string{"SN_PASSWORD=" + hygWrongSN}, failed: true},
			"servicenow basic auth, HTML": {config: basic, setup: func() {
				e.sn.InjectFault(snfake.Fault{HTML: true, Status: 401, Times: 1 << 20})
			}, failed: true},
			"servicenow 401": {setup: func() { e.sn.InjectFault(snfake.Fault{Status: 401, Times: 1 << 20}) }, failed: true},
			"servicenow HTML": {setup: func() {
				e.sn.InjectFault(snfake.Fault{HTML: true, Times: 1 << 20})
			}, failed: true},
			"servicenow refuses the OAuth client": {env: []string{"SN_CLIENT_SECRET=" + hygWrongSN}, failed: true},
			"servicenow refuses the password":     {env: []string{"SN_PASSWORD=" + hygWrongSN}, failed: true},
			"jira 401":                            {setup: func() { e.jf.InjectFault(jfake.Fault{Status: 401, Times: 1 << 20}) }, failed: true},
			"jira HTML":                           {setup: func() { e.jf.InjectFault(jfake.Fault{HTML: true, Times: 1 << 20}) }, failed: true},
			"jira refuses the token":              {env: []string{"JIRA_TOKEN=" + hygWrongJira}, failed: true},
			"chainguard refuses the token":        {setup: func() { e.setCGToken(t, hygWrongCG) }},
			"chainguard denies":                   {setup: func() { e.cg.DenyCapability("CreateRepo", true) }},
		} {
			t.Run(name, func(t *testing.T) {
				e.seed() // fresh tickets, so that blocked notes are written
				if tc.setup != nil {
					tc.setup()
				}
				defer func() {
					e.sn.ClearFaults()
					e.jf.ClearFaults()
					e.cg.DenyCapability("CreateRepo", false)
					e.setCGToken(t, hygCGToken)
				}()
				cfg := tc.config
				if cfg == "" {
					cfg = e.config
				}
				stdout, stderr, code := e.run(t, tc.env, "sync", "--config", cfg)
				if tc.failed != (code != 0) {
					t.Errorf("exit %d\n%s\n%s", code, stdout, stderr)
				}
				e.checkUpstream(t)
			})
		}
	})
}

// TestSecretHygieneDaemon runs `bridge run` and throws forged webhooks at
// it (signed with the wrong key, carrying the secret itself as the
// signature), reads /metrics, /readyz while an upstream refuses the
// credentials, and stops it: nothing it says anywhere holds a secret.
func TestSecretHygieneDaemon(t *testing.T) {
	skipShort(t)
	e := newHygEnv(t)
	cmd := exec.Command(bridgeBin, "run", "--config", e.config)
	cmd.Env = append(os.Environ(), e.env...)
	stderr := &syncBuffer{}
	stdout := &syncBuffer{}
	cmd.Stderr, cmd.Stdout = stderr, stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(40 * time.Second):
			_ = cmd.Process.Kill()
			t.Error("bridge run did not stop")
		}
	}
	t.Cleanup(stop)
	base := "http://" + e.addr
	waitFor(t, hangGuard, func() bool { return strings.Count(stderr.String(), "pass finished") >= 2 })

	hit := func(method, path string, body []byte, header map[string]string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(string(body)))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		assertNoSecret(t, method+" "+path+" answer", string(b))
		for k, vs := range resp.Header {
			assertNoSecret(t, method+" "+path+" header "+k, strings.Join(vs, ", "))
		}
		return resp.StatusCode, string(b)
	}
	sign := func(key string, body []byte) []byte {
		m := hmac.New(sha256.New, []byte(key))
		m.Write(body)
		return m.Sum(nil)
	}

	r := e.sn.AddRITM(snfake.RITM{CatItem: catItem, Variables: map[string]string{"image_name": "python"}})
	snBody := []byte(fmt.Sprintf(`{"sys_id":%q,"event_id":"ev-1"}`, r.SysID))
	jiraBody := []byte(`{"webhookEvent":"jira:issue_updated","issue":{"id":"10001","key":"IMG-1"}}`)
	for name, tc := range map[string]struct {
		path   string
		header map[string]string
	}{
		"sn: the secret as the signature":      {"/webhooks/servicenow", map[string]string{"X-Signature": hygSNHook}},
		"sn: the secret base64 as signature":   {"/webhooks/servicenow", map[string]string{"X-Signature": base64.StdEncoding.EncodeToString([]byte(hygSNHook))}},
		"sn: signed with the Jira secret":      {"/webhooks/servicenow", map[string]string{"X-Signature": base64.StdEncoding.EncodeToString(sign(hygJiraHook, snBody))}},
		"sn: no signature":                     {"/webhooks/servicenow", nil},
		"jira: the secret as the signature":    {"/webhooks/jira", map[string]string{"X-Hub-Signature": "sha256=" + hygJiraHook}},
		"jira: signed with the ServiceNow key": {"/webhooks/jira", map[string]string{"X-Hub-Signature": "sha256=" + hex.EncodeToString(sign(hygSNHook, jiraBody))}},
		"jira: the secret as delivery id":      {"/webhooks/jira", map[string]string{"X-Hub-Signature": "sha256=00", "X-Atlassian-Webhook-Identifier": hygJiraHook}},
	} {
		body := snBody
		if strings.HasPrefix(tc.path, "/webhooks/jira") {
			body = jiraBody
		}
		if code, _ := hit("POST", tc.path, body, tc.header); code != http.StatusUnauthorized {
			t.Errorf("%s: answered %d, want 401", name, code)
		}
	}
	if code, _ := hit("POST", "/webhooks/servicenow", snBody, map[string]string{"X-Signature": base64.StdEncoding.EncodeToString(sign(hygSNHook, snBody))}); code != http.StatusAccepted {
		t.Errorf("a signed delivery answered %d", code)
	}
	waitFor(t, hangGuard, func() bool { got, _ := e.sn.RITM(r.SysID); return got.State == "3" })

	if code, body := hit("GET", "/readyz", nil, nil); code != http.StatusOK {
		t.Errorf("/readyz = %d %q with every credential right", code, body)
	}
	hit("GET", "/healthz", nil, nil)
	hit("GET", "/metrics", nil, nil)

	// Upstreams refusing the credentials: /readyz says which, and nothing else.
	e.sn.InjectFault(snfake.Fault{Status: 401, Times: 1 << 20})
	e.jf.InjectFault(jfake.Fault{Status: 401, Times: 1 << 20})
	e.setCGToken(t, hygWrongCG)
	waitFor(t, hangGuard, func() bool {
		code, body := hit("GET", "/readyz", nil, nil)
		return code == http.StatusServiceUnavailable && strings.Contains(body, "servicenow") && strings.Contains(body, "jira") && strings.Contains(body, "chainguard")
	})
	hit("GET", "/metrics", nil, nil)
	e.sn.ClearFaults()
	e.jf.ClearFaults()
	e.setCGToken(t, hygCGToken)

	stop()
	assertNoSecret(t, "bridge run stderr", stderr.String())
	assertNoSecret(t, "bridge run stdout", stdout.String())
	e.checkUpstream(t)
}

// TestSecretHygieneDemo: the demo's own credentials stay out of its output,
// verbose or not.
func TestSecretHygieneDemo(t *testing.T) {
	for _, args := range [][]string{{"demo", "--state-dir", t.TempDir()}, {"demo", "-v", "--state-dir", t.TempDir()}} {
		stdout, stderr, code := run(t, nil, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d\n%s", args, code, stderr)
		}
		for _, s := range []string{"demo-chainguard-token", "demo-servicenow-password", jfake.DefaultAPIToken,
			base64.StdEncoding.EncodeToString([]byte("demo-servicenow-password")),
			base64.StdEncoding.EncodeToString([]byte(jfake.DefaultEmail + ":" + jfake.DefaultAPIToken))} {
			for where, text := range map[string]string{"stdout": stdout, "stderr": stderr} {
				if strings.Contains(text, s) {
					t.Errorf("%v %s leaks %q", args, where, s)
				}
			}
		}
		if len(args) == 4 && !strings.Contains(stderr, "decision") {
			t.Errorf("demo -v printed no log lines:\n%s", stderr)
		}
	}
}

// TestSecretHygieneUpstreamEcho: an upstream (or a proxy in front of it)
// that echoes the credentials it was sent in an error must not get them
// into the bridge's errors, logs or notes.
func TestSecretHygieneUpstreamEcho(t *testing.T) {
	skipShort(t)
	e := newHygEnv(t)
	basic := e.writeConfig(t, "basic.yaml", "  oauth: { client_id: "+hygSNClient+", client_secret: \"${SN_CLIENT_SECRET}\", grant_type: password }\n=>")
	for name, tc := range map[string]struct {
		config string
		setup  func()
	}{
		"servicenow echoes the password": {config: basic, setup: func() {
			e.sn.InjectFault(snfake.Fault{Status: 401, Times: 1 << 20,
				Body: `{"error":{"message":"User svc.bridge with password ` + jsonEscape(hygSNPass) + ` not authenticated","detail":"` + jsonEscape(hygSNPass) + `"},"status":"failure"}`})
		}},
		"servicenow echoes the OAuth client": {config: e.config, setup: func() {
			e.sn.InjectFault(snfake.Fault{PathContains: "oauth_token", Status: 401, Times: 1 << 20,
				Body: `{"error":"access_denied","error_description":"client_secret ` + hygSNSecret + ` refused"}`})
		}},
		"servicenow echoes the Basic auth header": {config: basic, setup: func() {
			e.sn.InjectFault(snfake.Fault{Status: 401, Times: 1 << 20,
				Body: `{"error":{"message":"bad header Basic ` + base64.StdEncoding.EncodeToString([]byte(hygSNUser+":"+hygSNPass)) + `"}}`})
		}},
		"jira echoes the token": {config: e.config, setup: func() {
			e.jf.InjectFault(jfake.Fault{Status: 401, Times: 1 << 20, Body: `{"errorMessages":["token ` + hygJiraTok + ` is not valid"],"errors":{"auth":"` + hygJiraTok + `"}}`})
		}},
		"jira echoes the token in an HTML page": {config: e.config, setup: func() {
			e.jf.InjectFault(jfake.Fault{Status: 502, Times: 1 << 20, Body: `<html><body>upstream refused Authorization: Basic ` +
				base64.StdEncoding.EncodeToString([]byte(hygJiraEmail+":"+hygJiraTok)) + `</body></html>`})
		}},
	} {
		t.Run(name, func(t *testing.T) {
			e.seed()
			tc.setup()
			defer e.sn.ClearFaults()
			defer e.jf.ClearFaults()
			if stdout, stderr, code := e.run(t, nil, "sync", "--config", tc.config); code == 0 {
				t.Errorf("sync exited 0 while an upstream refused the credentials\n%s\n%s", stdout, stderr)
			}
			e.checkUpstream(t)
		})
	}
}
