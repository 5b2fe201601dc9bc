package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/chainguard-dev/image-request-bridge/connectors"
	"github.com/chainguard-dev/image-request-bridge/connectors/jira"
	"github.com/chainguard-dev/image-request-bridge/connectors/servicenow"
	"github.com/chainguard-dev/image-request-bridge/internal/policy"
)

// Values that must never appear in an error message or in Redacted output.
const (
	cgToken      = "cgtok-5ecr3t-AAAA"
	snPassword   = "snpw-5ecr3t-BBBB"
	snClient     = "sncs-5ecr3t-CCCC"
	snWebhook    = "snwh-5ecr3t-DDDD"
	jiraToken    = "jtok-5ecr3t-EEEE"
	jiraWebhook  = "jwh-5ecr3t-FFFF"
	secretMarker = "5ecr3t"
)

var testEnv = map[string]string{
	"CHAINGUARD_TOKEN":          cgToken,
	"SERVICENOW_PASSWORD":       snPassword,
	"SERVICENOW_CLIENT_SECRET":  snClient,
	"SERVICENOW_WEBHOOK_SECRET": snWebhook,
	"JIRA_API_TOKEN":            jiraToken,
	"JIRA_WEBHOOK_SECRET":       jiraWebhook,
}

func lookup(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}
}

func parseWith(t *testing.T, yml string, env map[string]string) (*Config, error) {
	t.Helper()
	if env == nil {
		env = testEnv
	}
	return parse([]byte(yml), "config.yaml", lookup(env), connectors.Sources)
}

func mustParse(t *testing.T, yml string) *Config {
	t.Helper()
	c, err := parseWith(t, yml, nil)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return c
}

func mustFail(t *testing.T, yml string, env map[string]string, want ...string) string {
	t.Helper()
	_, err := parseWith(t, yml, env)
	if err == nil {
		t.Fatalf("parse succeeded, want errors %q", want)
	}
	msg := err.Error()
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("error lacks %q:\n%s", w, msg)
		}
	}
	if strings.Contains(msg, secretMarker) {
		t.Errorf("error leaks a secret:\n%s", msg)
	}
	return msg
}

const minimal = `
chainguard:
  org_id: 0123456789abcdef0123456789abcdef01234567
  org_name: example.com
  token: ${CHAINGUARD_TOKEN}
servicenow:
  enabled: true
  instance_url: https://example.service-now.com
  username: svc
  password: ${SERVICENOW_PASSWORD}
  catalog_item: 0123456789abcdef0123456789abcdef
`

func TestMinimalDefaults(t *testing.T) {
	c := mustParse(t, minimal)
	host, _ := os.Hostname()
	if host == "" {
		host = DefaultInstanceIDUnknown
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"instance_id", c.Bridge.InstanceID, host},
		{"concurrency", c.Bridge.Concurrency, 4},
		{"lease", c.Bridge.Lease, 5 * time.Minute},
		{"backoff.min", c.Bridge.Backoff.Min, 30 * time.Second},
		{"backoff.max", c.Bridge.Backoff.Max, time.Hour},
		{"pass_timeout", c.Bridge.PassTimeout, 10 * time.Minute},
		{"log.level", c.Log.Level, "info"},
		{"log.format", c.Log.Format, "auto"},
		{"state.driver", c.State.Driver, "sqlite"},
		{"state.dsn", c.State.DSN, "bridge.db"},
		{"api_url", c.Chainguard.APIURL, "https://console-api.enforce.dev"},
		{"provision", c.Chainguard.Provision, "auto"},
		{"registry", c.Chainguard.Registry, "cgr.dev"},
		{"token", c.Chainguard.Token.Reveal(), cgToken},
		{"password", sn(c).Password.Reveal(), snPassword},
		{"variables.image", sn(c).Variables.Image, "image_name"},
		{"variables.justification", sn(c).Variables.Justification, "justification"},
		{"closed_complete", sn(c).States.ClosedComplete, "3"},
		{"closed_incomplete", sn(c).States.ClosedIncomplete, "4"},
		{"sn.schedule", sn(c).Schedule, "@every 1m"},
		{"sn.page_size", sn(c).PageSize, 100},
		{"sn.timeout", sn(c).Timeout, 30 * time.Second},
		{"sn.oauth", sn(c).UsesOAuth(), false},
		{"jira.deployment", jr(c).Deployment, "auto"},
		{"jira.done", jr(c).Transitions.Done, "Done"},
		{"jira.rejected", jr(c).Transitions.Rejected, "Reject"},
		{"jira.page_size", jr(c).PageSize, 50},
		{"listen", c.Server.Listen, ":8080"},
	}
	for _, ch := range checks {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

func TestExampleLoads(t *testing.T) {
	for k, v := range testEnv {
		t.Setenv(k, v)
	}
	c, err := Load(filepath.Join("..", "..", "config.example.yaml"))
	if err != nil {
		t.Fatalf("config.example.yaml does not load:\n%v", err)
	}
	if !sn(c).Enabled || !jr(c).Enabled {
		t.Error("the example should enable both sources")
	}
	if c.Chainguard.Token.Reveal() != cgToken || jr(c).APIToken.Reveal() != jiraToken ||
		sn(c).OAuth.ClientSecret.Reveal() != snClient || sn(c).WebhookSecret.Reveal() != snWebhook ||
		jr(c).WebhookSecret.Reveal() != jiraWebhook || sn(c).Password.Reveal() != snPassword {
		t.Error("secrets were not expanded from the environment")
	}
	if got := sn(c).Variables.Extra; !reflect.DeepEqual(got, []string{"team", "environment"}) {
		t.Errorf("variables.extra = %q", got)
	}
	if !jr(c).IsCloud() {
		t.Error("example jira should be cloud")
	}
	if r := c.Redacted(); strings.Contains(r, secretMarker) {
		t.Errorf("Redacted leaks:\n%s", r)
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		if out := fmt.Sprintf(verb, c); strings.Contains(out, secretMarker) || strings.Contains(out, fmt.Sprintf("%x", cgToken)) {
			t.Errorf("printing the config with %s leaks: %s", verb, out)
		}
	}
}

// A copied example must be safe: no rule lets a request through without
// the human approval unless the administrator writes one (the example keeps
// such a rule commented out), and the bridge's notes stay where requesters
// are meant to read them.
func TestExampleIsSafeWhenCopied(t *testing.T) {
	for k, v := range testEnv {
		t.Setenv(k, v)
	}
	c, err := Load(filepath.Join("..", "..", "config.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Policy.HasAuto() || c.Policy.Default != policy.Approval {
		t.Errorf("the example skips human approval: default %q, rules %+v", c.Policy.Default, c.Policy.Rules)
	}
	for _, r := range c.Policy.Rules {
		if r.Tier != policy.Approval && r.Tier != policy.Security && r.Tier != policy.Deny {
			t.Errorf("rule %q has tier %q", r.Name, r.Tier)
		}
	}
	data, err := os.ReadFile(filepath.Join("..", "..", "config.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^\s*#\s*tier: auto$`).Match(data) {
		t.Error("the example no longer shows an auto rule, commented out, to copy")
	}
	if jr(c).CommentVisibility != "internal" || !sn(c).WritesRequesterComment() {
		t.Errorf("jira.comment_visibility %q, servicenow.requester_comment %q", jr(c).CommentVisibility, sn(c).RequesterComment)
	}
}

// TestExampleDocumentsEveryKey keeps config.example.yaml in step with the
// Config type: every key must appear in it, set or commented out, with a
// comment somewhere above it in its section.
func TestExampleDocumentsEveryKey(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "config.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	documented := func(text, path string) bool {
		name := path[strings.LastIndex(path, ".")+1:]
		return regexp.MustCompile(`(?m)^\s*(#\s*)?` + regexp.QuoteMeta(name) + `:`).MatchString(text)
	}
	for _, path := range keyPaths(reflect.TypeOf(Config{}), "") {
		if !documented(text, path) {
			t.Errorf("config.example.yaml does not document %s", path)
		}
	}
	// Each connector's section, looked for within that section.
	for _, c := range connectors.Sources {
		start := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(c.Name()) + `:`).FindStringIndex(text)
		if start == nil {
			t.Errorf("config.example.yaml has no %s section", c.Name())
			continue
		}
		block := text[start[1]:]
		if end := regexp.MustCompile(`(?m)^[a-z_]+:`).FindStringIndex(block); end != nil {
			block = block[:end[0]]
		}
		for _, path := range keyPaths(reflect.TypeOf(c.NewSection()).Elem(), c.Name()) {
			if !documented(block, path) {
				t.Errorf("config.example.yaml does not document %s", path)
			}
		}
	}
}

func keyPaths(t reflect.Type, prefix string) []string {
	var out []string
	for name, ft := range yamlFields(t) {
		p := join(prefix, name)
		out = append(out, p)
		if ft.Kind() == reflect.Struct && ft != secretType {
			out = append(out, keyPaths(ft, p)...)
		}
	}
	return out
}

func TestUnknownKey(t *testing.T) {
	yml := minimal + "  instanse_url: https://x.service-now.com\n"
	msg := mustFail(t, yml, nil, `config.yaml:12: unknown key "instanse_url" in servicenow (did you mean "instance_url"?)`)
	_ = msg
	mustFail(t, "colour: blue\n"+minimal, nil, `config.yaml:1: unknown key "colour" at the top level`)
	// An unknown key's value is never expanded nor echoed.
	mustFail(t, minimal+"  extra_password: ${UNSET_VAR} "+snPassword+"\n", nil, `unknown key "extra_password" in servicenow`)
}

func TestDuplicateKey(t *testing.T) {
	mustFail(t, minimal+"  username: other\n", nil, `config.yaml:12: servicenow.username: given twice (first at line 9)`)
}

func TestTypeErrors(t *testing.T) {
	yml := minimal + `  page_size: lots
  timeout: 30
  variables: {extra: team}
bridge:
  concurrency: [1]
  lease: five minutes
jira:
  enabled: yes
log: debug
`
	mustFail(t, yml, nil,
		"config.yaml:12: servicenow.page_size: must be a whole number",
		"config.yaml:13: servicenow.timeout: must be a duration with a unit",
		"config.yaml:14: servicenow.variables.extra: must be a list",
		"config.yaml:16: bridge.concurrency: must be a single value",
		"config.yaml:17: bridge.lease: must be a duration",
		"config.yaml:19: jira.enabled: must be true or false",
		"config.yaml:20: log: must be a section of keys",
	)
	// Values are not quoted.
	msg := mustFail(t, yml, nil)
	for _, v := range []string{"lots", "five minutes", "`"} {
		if strings.Contains(msg, v) {
			t.Errorf("error quotes %q:\n%s", v, msg)
		}
	}
}

func TestSyntaxAndDocumentErrors(t *testing.T) {
	mustFail(t, "", nil, "config.yaml: the configuration is empty")
	mustFail(t, "# only a comment\n", nil, "the configuration is empty")
	mustFail(t, "bridge:\n  concurrency: 4\n   lease: 5m\n", nil, "config.yaml:3: invalid YAML")
	mustFail(t, minimal+"---\nbridge: {}\n", nil, "only one YAML document")
	mustFail(t, "- a\n- b\n", nil, "must be a section of keys")
}

func TestEnvExpansion(t *testing.T) {
	env := map[string]string{
		"CHAINGUARD_TOKEN":    cgToken,
		"SERVICENOW_PASSWORD": "pa$$word: [x]\nnext: {y: z}",
		"HOST":                "example",
		"SIZE":                "250",
		"INJECT":              "x\nlog:\n  level: debug",
	}
	yml := strings.Replace(minimal, "https://example.service-now.com", "https://${HOST}.service-now.com", 1) + `  page_size: ${SIZE}
  username: ` + "\n"
	yml = strings.Replace(yml, "  username: svc\n", "", 1)
	yml = strings.Replace(yml, "  username: \n", "  username: \"u-$$-$${HOST}-$HOST-${INJECT}\"\n", 1)
	c, err := parseWith(t, yml, env)
	if err != nil {
		t.Fatal(err)
	}
	if sn(c).InstanceURL != "https://example.service-now.com" {
		t.Errorf("instance_url = %q", sn(c).InstanceURL)
	}
	if sn(c).PageSize != 250 {
		t.Errorf("page_size = %d", sn(c).PageSize)
	}
	// The environment value is taken verbatim: "$$" in it is not an escape,
	// and YAML syntax in it stays text.
	if got := sn(c).Password.Reveal(); got != env["SERVICENOW_PASSWORD"] {
		t.Errorf("password = %q", got)
	}
	if want := "u-$-${HOST}-$HOST-" + env["INJECT"]; sn(c).Username != want {
		t.Errorf("username = %q, want %q", sn(c).Username, want)
	}
	if c.Log.Level != "info" {
		t.Errorf("an environment value injected YAML structure: log.level = %q", c.Log.Level)
	}
}

func TestEnvErrors(t *testing.T) {
	env := map[string]string{"CHAINGUARD_TOKEN": cgToken}
	mustFail(t, minimal, env, "config.yaml:10: servicenow.password: environment variable SERVICENOW_PASSWORD is not set")
	mustFail(t, strings.Replace(minimal, "${SERVICENOW_PASSWORD}", "${SERVICENOW_PASSWORD", 1), nil, `servicenow.password: "${" has no closing "}"`)
	mustFail(t, strings.Replace(minimal, "${SERVICENOW_PASSWORD}", "${SN PASSWORD}", 1), nil, `servicenow.password: "${...}" must hold an environment variable name`)
	// The missing variable is reported once, not again as "required".
	msg := mustFail(t, minimal, env)
	if strings.Count(msg, "servicenow.password") != 1 {
		t.Errorf("password reported more than once:\n%s", msg)
	}
}

func TestEnvUnsetInDisabledSourceIsFine(t *testing.T) {
	env := map[string]string{"CHAINGUARD_TOKEN": cgToken, "SERVICENOW_PASSWORD": snPassword}
	yml := minimal + `jira:
  enabled: false
  url: https://${JIRA_SITE}.atlassian.net
  api_token: ${JIRA_API_TOKEN}
  api_token_file: /does/not/exist
`
	if _, err := parseWith(t, yml, env); err != nil {
		t.Fatalf("a disabled source's variables were required: %v", err)
	}
	yml = strings.Replace(yml, "enabled: false", "enabled: true", 1)
	mustFail(t, yml, env, "jira.url: environment variable JIRA_SITE is not set", "jira.api_token: environment variable JIRA_API_TOKEN is not set")
}

func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("token", cgToken+"\n", 0o600)
	write("password", snPassword+"\r\n", 0o600)
	write("hook", snWebhook+"\n\n", 0o600)
	yml := strings.Replace(minimal, "token: ${CHAINGUARD_TOKEN}", "token_file: token", 1)
	yml = strings.Replace(yml, "password: ${SERVICENOW_PASSWORD}", "password_file: "+filepath.Join(dir, "password"), 1)
	yml += "  webhook_secret_file: ./hook\n"
	cfgPath := filepath.Join(dir, "config.yaml")
	write("config.yaml", yml, 0o600)

	c, err := Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if c.Chainguard.Token.Reveal() != cgToken {
		t.Errorf("token = %q", c.Chainguard.Token.Reveal())
	}
	if sn(c).Password.Reveal() != snPassword {
		t.Errorf("password = %q", sn(c).Password.Reveal())
	}
	// Only one trailing newline is removed.
	if sn(c).WebhookSecret.Reveal() != snWebhook+"\n" {
		t.Errorf("webhook_secret = %q", sn(c).WebhookSecret.Reveal())
	}

	// Missing, empty, directory, both set.
	write("empty", "\n", 0o600)
	if err := os.Mkdir(filepath.Join(dir, "adir"), 0o700); err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(yml, "token_file: token", "token_file: missing", 1)
	bad = strings.Replace(bad, "webhook_secret_file: ./hook", "webhook_secret_file: empty\n  oauth:\n    client_id: abc\n    client_secret_file: adir", 1)
	bad += "  password: literal-pw\n"
	write("bad.yaml", bad, 0o600)
	_, err = Load(filepath.Join(dir, "bad.yaml"))
	if err == nil {
		t.Fatal("bad secret files accepted")
	}
	msg := err.Error()
	for _, want := range []string{
		"chainguard.token_file: cannot read " + filepath.Join(dir, "missing") + ": no such file or directory",
		"servicenow.webhook_secret_file: " + filepath.Join(dir, "empty") + " is empty",
		"servicenow.oauth.client_secret_file: cannot read " + filepath.Join(dir, "adir") + ": it is a directory",
		"servicenow.password: set either servicenow.password or servicenow.password_file, not both",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, secretMarker) {
		t.Errorf("error leaks file contents:\n%s", msg)
	}
	if strings.Contains(msg, "chainguard.token: required") {
		t.Errorf("a failed token_file is reported twice:\n%s", msg)
	}

	if os.Geteuid() != 0 {
		write("locked", cgToken, 0o000)
		locked := strings.Replace(yml, "token_file: token", "token_file: locked", 1)
		_, err := parseWith(t, locked, nil)
		_ = err
		write("locked.yaml", locked, 0o600)
		_, err = Load(filepath.Join(dir, "locked.yaml"))
		if err == nil || !strings.Contains(err.Error(), "permission denied") || strings.Contains(err.Error(), secretMarker) {
			t.Errorf("unreadable file: %v", err)
		}
	}
}

func TestValidationAllAtOnce(t *testing.T) {
	yml := `
bridge: {concurrency: 65, lease: 10s, backoff: {min: 1m, max: 30s}, pass_timeout: 5s}
log: {level: verbose, format: xml}
state: {driver: postgres}
chainguard:
  api_url: http://console-api.enforce.dev
  org_id: ORG
  org_name: Example Org
  provision: magic
  registry: https://cgr.dev
servicenow:
  enabled: true
  instance_url: ftp://x
  catalog_item: RITM123
  username: svc
  variables: {image: "image name", extra: [team, team]}
  states: {closed_complete: Closed Complete, closed_incomplete: "4"}
  schedule: every minute
  page_size: 5000
  timeout: -1s
jira:
  enabled: true
  url: https://user:pw@example.atlassian.net/?x=1
  deployment: server
  jql: ""
  fields: {image: customfield_abc}
  transitions: {done: Done, rejected: done}
server: {listen: "8080"}
`
	mustFail(t, yml, map[string]string{},
		"config.yaml:2: bridge.concurrency: must be between 1 and 64",
		"bridge.lease: must be at least 30s",
		"bridge.backoff.max: must not be shorter than bridge.backoff.min",
		"bridge.pass_timeout: must be at least 1m",
		"log.level: must be one of: debug, info, warn, error",
		"log.format: must be one of: auto, json, console",
		"state.driver: must be one of: sqlite",
		"config.yaml:6: chainguard.api_url: must be an https URL (http allowed only for loopback)",
		"chainguard.org_id: must be the organization's UIDP",
		"chainguard.org_name: must be the organization name",
		"chainguard.token: required",
		"chainguard.provision: must be one of: auto, repo, entitlement",
		"chainguard.registry: must be a registry host name",
		"servicenow.instance_url: must be an https URL",
		"servicenow.catalog_item: must be a sys_id",
		"servicenow.password: required",
		"servicenow.variables.image: must be a catalog variable name",
		"servicenow.variables.extra[1]: names the same variable as servicenow.variables.extra[0]",
		"servicenow.states.closed_complete: must be the numeric value",
		"servicenow.schedule: must be a cron expression",
		"servicenow.page_size: must be between 1 and 1000",
		"servicenow.timeout: must be a positive duration",
		"jira.url: must not contain a user name or password",
		"jira.url: must not contain a query",
		"jira.deployment: must be one of: auto, cloud, datacenter",
		"jira.email: required on Jira Cloud",
		"jira.api_token: required",
		"jira.jql: required",
		"jira.fields.image: a field id must look like customfield_10050",
		"jira.fields.justification: required",
		"jira.transitions.rejected: must differ from transitions.done",
		"server.listen: must be host:port",
	)
	mustFail(t, strings.Replace(minimal, "enabled: true", "enabled: false", 1), nil, "no source is enabled")
}

func TestURLRules(t *testing.T) {
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"https://example.service-now.com", true},
		{"https://example.service-now.com/", true},
		{"http://127.0.0.1:8443", true},
		{"http://localhost:8443", true},
		{"http://[::1]:8443", true},
		{"http://example.service-now.com", false},
		{"example.service-now.com", false},
		{"/relative", false},
		{"https://", false},
		{"https://u:" + snPassword + "@example.service-now.com", false},
	} {
		yml := strings.Replace(minimal, "https://example.service-now.com", tc.url, 1)
		_, err := parseWith(t, yml, nil)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err = %v, want ok=%v", tc.url, err, tc.ok)
		}
		if err != nil && strings.Contains(err.Error(), secretMarker) {
			t.Errorf("%s: error leaks: %v", tc.url, err)
		}
	}
	// The Chainguard client dials 127.0.0.1 but not localhost.
	yml := minimal + "  timeout: 10s\n"
	yml = strings.Replace(yml, "chainguard:\n", "chainguard:\n  api_url: http://localhost:9000\n", 1)
	mustFail(t, yml, nil, "chainguard.api_url: use 127.0.0.1 instead of localhost")
	if _, err := parseWith(t, strings.Replace(yml, "localhost", "127.0.0.1", 1), nil); err != nil {
		t.Error(err)
	}
}

func TestServiceNowAuth(t *testing.T) {
	oauthCC := strings.Replace(minimal, "  username: svc\n  password: ${SERVICENOW_PASSWORD}\n",
		"  oauth:\n    client_id: abc\n    client_secret: ${SERVICENOW_CLIENT_SECRET}\n", 1)
	c := mustParse(t, oauthCC)
	if !sn(c).UsesOAuth() || sn(c).OAuth.GrantType != servicenow.GrantClientCredentials {
		t.Errorf("oauth = %+v", sn(c).OAuth)
	}
	if sn(c).OAuth.ClientSecret.Reveal() != snClient {
		t.Error("client_secret not read")
	}
	mustFail(t, strings.Replace(oauthCC, "    client_id: abc\n", "", 1), nil, "servicenow.oauth.client_id: required")
	mustFail(t, oauthCC+"  username: svc\n", nil, "servicenow.username: not used with oauth.grant_type client_credentials")
	mustFail(t, strings.Replace(oauthCC, "client_id: abc", "client_id: abc\n    grant_type: password", 1), nil,
		"servicenow.username: required with oauth.grant_type password", "servicenow.password: required")
	mustFail(t, strings.Replace(oauthCC, "client_id: abc", "client_id: abc\n    grant_type: implicit", 1), nil,
		"servicenow.oauth.grant_type: must be one of: password, client_credentials")
	mustFail(t, strings.Replace(minimal, "  username: svc\n", "", 1), nil, "servicenow.username: required with password")
}

func TestJiraDeployment(t *testing.T) {
	base := `
chainguard: {org_id: 0123456789abcdef0123456789abcdef01234567, org_name: example.com, token: "${CHAINGUARD_TOKEN}"}
jira:
  enabled: true
  url: URL
  api_token: ${JIRA_API_TOKEN}
  jql: project = IMG AND status = Approved
  fields: {image: Image name, justification: customfield_10051}
`
	mustFail(t, strings.Replace(base, "URL", "https://example.atlassian.net", 1), nil, "jira.email: required on Jira Cloud")
	c := mustParse(t, strings.Replace(base, "URL", "https://jira.example.com/jira", 1))
	if jr(c).IsCloud() {
		t.Error("auto deployment on a private host should be Data Center")
	}
	mustFail(t, strings.Replace(base, "URL", "https://jira.example.com", 1)+"  deployment: cloud\n", nil, "jira.email: required")
	c = mustParse(t, strings.Replace(base, "URL", "https://example.atlassian.net", 1)+"  email: bot@example.com\n")
	if !jr(c).IsCloud() || jr(c).APIToken.Reveal() != jiraToken {
		t.Errorf("jira = %+v", jr(c))
	}
}

func TestLeaseMustOutlastTimeouts(t *testing.T) {
	const why = "each upstream call must finish well within the lease so a second bridge never takes over a ticket in flight"
	jira := `jira:
  enabled: %s
  url: https://jira.example.com
  api_token: ${JIRA_API_TOKEN}
  jql: project = IMG
  fields: {image: Image, justification: Why}
  timeout: %s
`
	for _, tc := range []struct {
		lease, sn, jiraOn, jira string
		want                    string // "" when accepted
	}{
		// The floor holds whatever the timeouts.
		{"29s", "1s", "false", "1s", "bridge.lease: must be at least 30s: " + why},
		{"30s", "1s", "false", "1s", ""},
		// Longer than twice the timeout, strictly.
		{"6m", "3m", "false", "1s", "bridge.lease: must be longer than twice the longest source timeout (servicenow.timeout: 3m0s), so more than 6m0s: " + why},
		{"6m1s", "3m", "false", "1s", ""},
		// The longest enabled timeout decides, whichever source has it, and
		// the rule is reported once.
		{"3m", "1m", "true", "2m", "bridge.lease: must be longer than twice the longest source timeout (jira.timeout: 2m0s), so more than 4m0s: " + why},
		{"3m", "2m", "true", "1m", "bridge.lease: must be longer than twice the longest source timeout (servicenow.timeout: 2m0s), so more than 4m0s: " + why},
		{"4m", "2m", "true", "2m", "(servicenow.timeout: 2m0s)"},
		{"4m1s", "2m", "true", "2m", ""},
		// A disabled source's timeout does not count.
		{"1m", "20s", "false", "1h", ""},
	} {
		yml := minimal + "  timeout: " + tc.sn + "\nbridge: {lease: " + tc.lease + "}\n" + fmt.Sprintf(jira, tc.jiraOn, tc.jira)
		_, err := parseWith(t, yml, nil)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("lease %s, timeouts %s/%s: %v", tc.lease, tc.sn, tc.jira, err)
		case tc.want != "" && err == nil:
			t.Errorf("lease %s, timeouts %s/%s accepted, want %q", tc.lease, tc.sn, tc.jira, tc.want)
		case err != nil:
			msg := err.Error()
			if !strings.Contains(msg, tc.want) {
				t.Errorf("lease %s, timeouts %s/%s: error lacks %q:\n%s", tc.lease, tc.sn, tc.jira, tc.want, msg)
			}
			if n := strings.Count(msg, "bridge.lease"); n != 1 {
				t.Errorf("lease %s, timeouts %s/%s: bridge.lease reported %d times:\n%s", tc.lease, tc.sn, tc.jira, n, msg)
			}
		}
	}
}

func TestAliasesAndMerges(t *testing.T) {
	yml := minimal + `  schedule: &sched "@every 5m"
  timeout: &to 45s
jira:
  enabled: false
  schedule: *sched
  <<: {timeout: 20s, page_size: 20}
  page_size: 30
`
	c := mustParse(t, yml)
	if jr(c).Schedule != "@every 5m" || jr(c).Timeout != 20*time.Second || jr(c).PageSize != 30 {
		t.Errorf("jira = %+v", jr(c))
	}
	mustFail(t, minimal+"jira:\n  <<: {colour: red}\n", nil, `unknown key "colour" in jira`)
}

// TestNoSecretInErrors puts secret values where they do not belong and checks
// that no error message repeats them.
func TestNoSecretInErrors(t *testing.T) {
	env := map[string]string{}
	for k, v := range testEnv {
		env[k] = v
	}
	env["LEAK"] = snPassword
	cases := []string{
		strings.Replace(minimal, "https://example.service-now.com", "${LEAK}", 1),
		strings.Replace(minimal, "https://example.service-now.com", "https://x"+snPassword+".service-now.com:99999999", 1),
		strings.Replace(minimal, "0123456789abcdef0123456789abcdef01234567", snPassword, 1),
		strings.Replace(minimal, "0123456789abcdef0123456789abcdef\n", snPassword+"\n", 1),
		strings.Replace(minimal, "svc", "[${LEAK}]", 1),
		strings.Replace(minimal, "${SERVICENOW_PASSWORD}", "{p: "+snPassword+"}", 1),
		strings.Replace(minimal, "${SERVICENOW_PASSWORD}", "["+snPassword+"]", 1),
		strings.Replace(minimal, "${CHAINGUARD_TOKEN}", "\" "+cgToken+" \"", 1),
		strings.Replace(minimal, "${SERVICENOW_PASSWORD}", "${"+snPassword, 1),
		minimal + "  page_size: ${LEAK}\n",
		minimal + "  timeout: " + snPassword + "\n",
		minimal + "  schedule: ${LEAK}\n",
		minimal + "  enabled: " + snPassword + "\n",
		minimal + "  variables: {image: \"" + snPassword + "!\"}\n",
		minimal + "  states: {closed_complete: ${LEAK}}\n",
		minimal + snPassword + ": x\n",
		minimal + "log: {level: ${LEAK}}\n",
		minimal + "server: {listen: ${LEAK}}\n",
		minimal + "bridge: {instance_id: \"" + snPassword + " !\"}\n",
		minimal + "  password: " + snPassword + "\n",
		minimal + "  password_file: /nonexistent/" + "x\n",
		"servicenow: " + snPassword + "\n",
		"servicenow: {password: !!binary " + snPassword + "}\n",
		minimal + "  page_size: !!binary " + snPassword + "\n",
		"servicenow:\n  password: \"" + snPassword + "\n",
	}
	for i, yml := range cases {
		_, err := parseWith(t, yml, env)
		if err == nil {
			t.Errorf("case %d accepted:\n%s", i, yml)
			continue
		}
		if strings.Contains(err.Error(), secretMarker) {
			t.Errorf("case %d leaks:\n%v", i, err)
		}
	}
}

func TestRedacted(t *testing.T) {
	for k, v := range testEnv {
		t.Setenv(k, v)
	}
	c, err := Load(filepath.Join("..", "..", "config.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Redacted()
	if strings.Contains(r, secretMarker) {
		t.Fatalf("Redacted leaks:\n%s", r)
	}
	for _, want := range []string{"token: <secret>", "password: <secret>", "client_secret: <secret>", "api_token: <secret>", "webhook_secret: <secret>", "lease: 5m\n"} {
		if !strings.Contains(r, want) {
			t.Errorf("Redacted lacks %q:\n%s", want, r)
		}
	}
	// The output is itself a valid configuration.
	back, err := Parse([]byte(r), "redacted.yaml")
	if err != nil {
		t.Fatalf("Redacted output does not parse: %v\n%s", err, r)
	}
	if back.Bridge.Lease != c.Bridge.Lease || sn(back).CatalogItem != sn(c).CatalogItem {
		t.Error("Redacted output differs")
	}
}

func TestValidateHandBuilt(t *testing.T) {
	c := &Config{}
	c.ApplyDefaults()
	err := c.Validate()
	if err == nil {
		t.Fatal("empty config validated")
	}
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("not a FieldError: %T", err)
	}
	if !strings.Contains(err.Error(), "chainguard.org_id: required") || strings.Contains(err.Error(), ".yaml") {
		t.Errorf("got %v", err)
	}
	c = mustParse(t, minimal)
	if err := c.Validate(); err != nil {
		t.Errorf("a parsed config does not validate: %v", err)
	}
}

// within fails the test when f has not returned after d.
func within(t *testing.T, d time.Duration, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("still running after %s", d)
	}
}

// mergeBomb is a merge sequence nested depth levels deep, each level merging
// the one below width times: width^depth expansions from a few hundred bytes.
func mergeBomb(leaf string, depth, width int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[&l0 {%s}", leaf)
	for i := 1; i < depth; i++ {
		fmt.Fprintf(&b, ", &l%d {<<: [", i)
		for j := 0; j < width; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*l%d", i-1)
		}
		b.WriteString("]}")
	}
	b.WriteString("]")
	return b.String()
}

func TestAliasExpansionIsBounded(t *testing.T) {
	const want = "config.yaml: too many aliases/merges expanded (limit 10000)"
	wide := "{"
	for i := range 100 {
		wide += fmt.Sprintf("k%d: v, ", i)
	}
	wide += "}"
	for name, yml := range map[string]string{
		"depth 40":                     minimal + "bridge: {<<: " + mergeBomb("concurrency: 4", 40, 2) + "}\n",
		"depth 20":                     minimal + "bridge: {<<: " + mergeBomb("concurrency: 4", 20, 2) + "}\n",
		"depth 14":                     minimal + "bridge: {<<: " + mergeBomb("concurrency: 4", 14, 2) + "}\n",
		"width 5":                      minimal + "bridge: {<<: " + mergeBomb("concurrency: 4", 12, 5) + "}\n",
		"nested section":               minimal + "  variables: {<<: " + mergeBomb("image: img", 40, 2) + "}\n",
		"top level":                    "<<: " + mergeBomb("log: {level: info}", 40, 2) + "\n" + minimal,
		"unknown keys":                 minimal + "bridge: {<<: " + mergeBomb("colour: red", 40, 2) + "}\n",
		"type errors":                  minimal + "bridge: {<<: " + mergeBomb("concurrency: [x]", 40, 2) + "}\n",
		"merge block style":            minimal + "bridge:\n  <<: " + mergeBomb("lease: 5m", 40, 2) + "\n",
		"anchors under an unknown key": "anchors: " + mergeBomb("lease: 5m", 40, 2) + "\nbridge:\n  <<: *l39\n" + minimal,
		// Linear, not exponential: one wide anchor merged thousands of
		// times, each time with all its (unknown) keys.
		"wide anchor": minimal + "bridge:\n  backoff: &wide " + wide + "\n  <<: [" + strings.Repeat("*wide, ", 2999) + "*wide]\n",
	} {
		t.Run(name, func(t *testing.T) {
			var err error
			within(t, 10*time.Second, func() { _, err = parseWith(t, yml, nil) })
			if err == nil {
				t.Fatal("accepted")
			}
			if msg := err.Error(); !strings.HasPrefix(msg, want) || strings.Contains(msg, "\n") {
				t.Errorf("got %.300q (%d bytes), want one error starting %q", msg, len(msg), want)
			}
		})
	}
}

func TestAliasExpansionWithinLimit(t *testing.T) {
	// Nested merges are fine while small: 2^8 expansions.
	c := mustParse(t, minimal+"bridge: {<<: "+mergeBomb("concurrency: 7", 8, 2)+"}\n")
	if c.Bridge.Concurrency != 7 {
		t.Errorf("concurrency = %d, want 7 from the merged anchor", c.Bridge.Concurrency)
	}
	// The limit is on expansion, not on size: a long file without aliases
	// is not affected.
	var b strings.Builder
	b.WriteString(minimal + "  variables:\n    extra:\n")
	for i := range 3 * maxExpansions {
		fmt.Fprintf(&b, "      - v%d\n", i)
	}
	c = mustParse(t, b.String())
	if n := len(sn(c).Variables.Extra); n != 3*maxExpansions {
		t.Errorf("%d extra variables, want %d", n, 3*maxExpansions)
	}
	// Aliases and merges spread over sections still work.
	c = mustParse(t, minimal+`  timeout: &to 40s
  page_size: &ps 20
  variables: &vars {image: img, justification: why, extra: &extra [team, env]}
  states: &states {closed_complete: "3"}
jira:
  enabled: true
  url: https://jira.example.com
  api_token: ${JIRA_API_TOKEN}
  jql: project = IMG
  fields: {<<: *vars, extra: *extra}
  timeout: *to
  page_size: *ps
bridge: {<<: [{lease: 2m}, {lease: 3m, concurrency: 2}]}
`)
	if jr(c).Timeout != 40*time.Second || jr(c).PageSize != 20 || jr(c).Fields.Image != "img" ||
		!reflect.DeepEqual(jr(c).Fields.Extra, []string{"team", "env"}) || c.Bridge.Lease != 2*time.Minute || c.Bridge.Concurrency != 2 {
		t.Errorf("aliases and merges not applied: jira %+v, bridge %+v", jr(c), c.Bridge)
	}
}

// everySecret sets every secret key, both sources enabled, each from the
// environment variable named in secretKeys.
const everySecret = `
chainguard:
  org_id: 0123456789abcdef0123456789abcdef01234567
  org_name: example.com
  token: ${CHAINGUARD_TOKEN}
servicenow:
  enabled: true
  instance_url: https://example.service-now.com
  catalog_item: 0123456789abcdef0123456789abcdef
  username: svc
  password: ${SERVICENOW_PASSWORD}
  oauth:
    client_id: abc
    client_secret: ${SERVICENOW_CLIENT_SECRET}
    grant_type: password
  webhook_secret: ${SERVICENOW_WEBHOOK_SECRET}
jira:
  enabled: true
  url: https://jira.example.com
  api_token: ${JIRA_API_TOKEN}
  jql: project = IMG
  fields: {image: Image, justification: Why}
  webhook_secret: ${JIRA_WEBHOOK_SECRET}
`

// secretKeys maps every secret key to the variable everySecret sets it from.
var secretKeys = map[string]string{
	"chainguard.token":               "CHAINGUARD_TOKEN",
	"servicenow.password":            "SERVICENOW_PASSWORD",
	"servicenow.oauth.client_secret": "SERVICENOW_CLIENT_SECRET",
	"servicenow.webhook_secret":      "SERVICENOW_WEBHOOK_SECRET",
	"jira.api_token":                 "JIRA_API_TOKEN",
	"jira.webhook_secret":            "JIRA_WEBHOOK_SECRET",
}

// fromFile rewrites everySecret so that key is read from file instead.
func fromFile(t *testing.T, key, file string) string {
	t.Helper()
	leaf := key[strings.LastIndex(key, ".")+1:]
	old := leaf + ": ${" + secretKeys[key] + "}"
	if strings.Count(everySecret, old) != 1 {
		t.Fatalf("everySecret does not set %s once", key)
	}
	return strings.Replace(everySecret, old, leaf+"_file: "+file, 1)
}

// TestSecretKeysComplete keeps secretKeys in step with the secret keys the
// configuration has.
func TestSecretKeysComplete(t *testing.T) {
	c := WithSources()
	sn(c).Enabled, jr(c).Enabled = true, true
	var got []string
	for _, r := range c.secretRefs() {
		got = append(got, r.path)
		if _, ok := secretKeys[r.path]; !ok {
			t.Errorf("secretKeys lacks %s", r.path)
		}
	}
	if len(got) != len(secretKeys) {
		t.Errorf("secret keys are %q; secretKeys has %d", got, len(secretKeys))
	}
}

// yamlAt returns the value at a dotted key path of a decoded YAML document.
func yamlAt(doc map[string]any, path string) (any, bool) {
	var cur any = doc
	for _, k := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[k]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// TestRedactedShowsTheKeyWritten: a secret read from its *_file twin shows as
// that twin only, every other secret as <secret> only, and the output loads
// back to the same secrets.
func TestRedactedShowsTheKeyWritten(t *testing.T) {
	for k, v := range testEnv {
		t.Setenv(k, v)
	}
	dir := t.TempDir()
	for key, env := range secretKeys {
		t.Run(key, func(t *testing.T) {
			file := filepath.Join(dir, strings.ReplaceAll(key, ".", "-"))
			if err := os.WriteFile(file, []byte(testEnv[env]+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			c := mustParse(t, fromFile(t, key, file))
			r := c.Redacted()
			if strings.Contains(r, secretMarker) {
				t.Fatalf("Redacted leaks:\n%s", r)
			}
			var doc map[string]any
			if err := yaml.Unmarshal([]byte(r), &doc); err != nil {
				t.Fatalf("Redacted is not YAML: %v\n%s", err, r)
			}
			for other := range secretKeys {
				v, hasValue := yamlAt(doc, other)
				f, hasFile := yamlAt(doc, other+"_file")
				switch {
				case other == key && (hasValue || f != file):
					t.Errorf("%s read from a file shows as %s: %v, %s_file: %v; want only %s_file: %s", other, other, v, other, f, other, file)
				case other != key && (v != "<secret>" || hasFile):
					t.Errorf("%s set directly shows as %s: %v, %s_file: %v; want only %s: <secret>", other, other, v, other, f, other)
				}
			}
			// The output is a configuration, not the "set either, not both"
			// mistake, and it reads the secret from the same file.
			back, err := Parse([]byte(r), filepath.Join(dir, "redacted.yaml"))
			if err != nil {
				t.Fatalf("Redacted output does not load: %v\n%s", err, r)
			}
			for _, ref := range back.secretRefs() {
				if ref.path == key && ref.val.Reveal() != testEnv[env] {
					t.Errorf("%s is not read from %s after a round trip through Redacted", key, file)
				}
			}
			// Redacted does not change the configuration itself.
			for _, ref := range c.secretRefs() {
				if ref.val.Reveal() != testEnv[secretKeys[ref.path]] {
					t.Errorf("after Redacted, %s no longer holds its value", ref.path)
				}
			}
		})
	}
}

func TestShortDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		5 * time.Minute: "5m", time.Hour: "1h", 90 * time.Minute: "1h30m", 90 * time.Second: "1m30s",
		30 * time.Second: "30s", 250 * time.Millisecond: "250ms", 0: "0s", time.Hour + time.Second: "1h0m1s",
	} {
		if got := ShortDuration(d); got != want {
			t.Errorf("ShortDuration(%s) = %q, want %q", d, got, want)
		}
	}
}

// sn and jr return the sections of the two registered sources.
func sn(c *Config) *servicenow.Config { return c.Section(servicenow.Name).(*servicenow.Config) }
func jr(c *Config) *jira.Config       { return c.Section(jira.Name).(*jira.Config) }
