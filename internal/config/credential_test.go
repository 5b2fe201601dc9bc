package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chainguard-dev/image-request-bridge/connectors"
)

const testIdentity = "0123456789abcdef0123456789abcdef01234567/89abcdef01234567"

// withCredential replaces minimal's chainguard token with lines (each
// indented under chainguard).
func withCredential(lines ...string) string {
	return strings.Replace(minimal, "  token: ${CHAINGUARD_TOKEN}\n", "  "+strings.Join(lines, "\n  ")+"\n", 1)
}

func TestChainguardIdentity(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "oidc"), []byte("oidc-5ecr3t\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := parse([]byte(withCredential("identity: "+testIdentity, "identity_token_file: oidc")), filepath.Join(dir, "config.yaml"), lookup(testEnv), connectors.Sources)
	if err != nil {
		t.Fatal(err)
	}
	cg := c.Chainguard
	if cg.Identity != testIdentity || cg.IdentityTokenFile != filepath.Join(dir, "oidc") ||
		cg.Issuer != DefaultChainguardIssuer || !cg.Token.IsZero() || cg.TokenFile != "" {
		t.Fatalf("chainguard = %+v", cg)
	}
	if r := c.Redacted(); strings.Contains(r, secretMarker) || !strings.Contains(r, "identity_token_file: "+filepath.Join(dir, "oidc")) {
		t.Fatalf("Redacted:\n%s", r)
	}

	custom := withCredential("identity: "+testIdentity, "identity_token_file: "+filepath.Join(dir, "oidc"), "issuer: http://127.0.0.1:9999")
	if c := mustParse(t, custom); c.Chainguard.Issuer != "http://127.0.0.1:9999" {
		t.Fatalf("issuer = %q", c.Chainguard.Issuer)
	}
}

func TestChainguardTokenFileKeepsPath(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte(cgToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := parse([]byte(withCredential("token_file: token")), filepath.Join(dir, "config.yaml"), lookup(testEnv), connectors.Sources)
	if err != nil {
		t.Fatal(err)
	}
	// The token is loaded (and validated); the path is kept, absolute, for
	// the bridge to read again when the file changes.
	if c.Chainguard.Token.Reveal() != cgToken || c.Chainguard.TokenFile != filepath.Join(dir, "token") || c.Chainguard.Identity != "" {
		t.Fatalf("chainguard = %+v", c.Chainguard)
	}
}

func TestChainguardCredentialRules(t *testing.T) {
	dir := t.TempDir()
	oidc := filepath.Join(dir, "oidc")
	if err := os.WriteFile(oidc, []byte("oidc-5ecr3t"), 0o600); err != nil {
		t.Fatal(err)
	}
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte(cgToken), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		lines []string
		want  []string
	}{
		{"none", nil, []string{"chainguard.token: required: set chainguard.token, chainguard.token_file", "chainguard.identity with chainguard.identity_token_file"}},
		{"identity without file", []string{"identity: " + testIdentity},
			[]string{"chainguard.identity_token_file: required with chainguard.identity"}},
		{"file without identity", []string{"identity_token_file: " + oidc},
			[]string{"chainguard.identity: required with chainguard.identity_token_file"}},
		{"token and identity", []string{"token: ${CHAINGUARD_TOKEN}", "identity: " + testIdentity, "identity_token_file: " + oidc},
			[]string{"chainguard.identity: set only one of chainguard.token, chainguard.token_file and chainguard.identity (chainguard.token and chainguard.identity are set)"}},
		{"token_file and identity", []string{"token_file: " + token, "identity: " + testIdentity, "identity_token_file: " + oidc},
			[]string{"chainguard.token_file and chainguard.identity are set"}},
		{"token with identity file", []string{"token: ${CHAINGUARD_TOKEN}", "identity_token_file: " + oidc},
			[]string{"chainguard.identity_token_file: only used with chainguard.identity"}},
		{"identity shape", []string{"identity: " + strings.ToUpper(testIdentity), "identity_token_file: " + oidc},
			[]string{"chainguard.identity: must be the UIDP of the identity to assume"}},
		{"org as identity", []string{"identity: 0123456789abcdef0123456789abcdef01234567", "identity_token_file: " + oidc},
			[]string{"chainguard.identity: must be the UIDP"}},
		{"missing identity file", []string{"identity: " + testIdentity, "identity_token_file: " + filepath.Join(dir, "absent")},
			[]string{"chainguard.identity_token_file: cannot read " + filepath.Join(dir, "absent") + ": no such file or directory"}},
		{"identity file is a directory", []string{"identity: " + testIdentity, "identity_token_file: " + dir},
			[]string{"chainguard.identity_token_file: cannot read " + dir + ": it is a directory"}},
		{"plain http issuer", []string{"identity: " + testIdentity, "identity_token_file: " + oidc, "issuer: http://issuer.enforce.dev"},
			[]string{"chainguard.issuer: must be an https URL (http allowed only for loopback)"}},
		{"localhost issuer", []string{"identity: " + testIdentity, "identity_token_file: " + oidc, "issuer: http://localhost:8080"},
			[]string{"chainguard.issuer: use 127.0.0.1 instead of localhost"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := mustFail(t, withCredential(tc.lines...), nil, tc.want...)
			if strings.Count(msg, "\n") != len(tc.want)-1 && tc.name != "none" {
				t.Errorf("more problems than expected:\n%s", msg)
			}
		})
	}
}
