//go:build unix

package main_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestSecretsAtRest: `bridge run` creates its store's files 0600, and
// `bridge validate` and `bridge run` (at warn, at start) name a
// secret-bearing file that group or others may read, with "chmod 600".
// Before, the store was 0644 and nothing was said.
func TestSecretsAtRest(t *testing.T) {
	e := newEnv(t)
	dir := filepath.Dir(e.config)
	token := filepath.Join(dir, "cg-token")
	if err := os.Chmod(token, 0o644); err != nil {
		t.Fatal(err)
	}
	// The password written in the file rather than given as ${SN_PASSWORD}.
	data, _ := os.ReadFile(e.config)
	inline := filepath.Join(dir, "inline.yaml")
	if err := os.WriteFile(inline, []byte(strings.Replace(string(data), "${SN_PASSWORD}", snPass, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(inline, 0o644); err != nil { // whatever the umask
		t.Fatal(err)
	}
	stdout, stderr, code := run(t, nil, "validate", "--config", inline)
	if code != 0 {
		t.Fatalf("validate: exit %d\n%s", code, stderr)
	}
	for _, f := range []string{inline, token} {
		if !strings.Contains(stdout, "warning: "+f) || !strings.Contains(stdout, "chmod 600 "+f) {
			t.Errorf("validate does not warn about %s:\n%s", f, stdout)
		}
	}
	if strings.Contains(stdout+stderr, snPass) || strings.Contains(stdout+stderr, cgTok) {
		t.Error("validate output shows a secret")
	}

	d := startDaemon(t, e, "")
	waitFor(t, hangGuard, func() bool { return strings.Contains(d.stderr.String(), "pass finished") })
	if !regexp.MustCompile(`"level":"warn".*` + regexp.QuoteMeta("chmod 600 "+token)).MatchString(d.stderr.String()) {
		t.Errorf("bridge run does not warn about %s:\n%s", token, d.stderr.String())
	}
	db := filepath.Join(dir, "bridge.db")
	for _, p := range []string{db, db + "-wal", db + "-shm", db + ".lock"} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if m := st.Mode().Perm(); m != 0o600 {
			t.Errorf("%s: mode %04o, want 0600", filepath.Base(p), m)
		}
	}
}
