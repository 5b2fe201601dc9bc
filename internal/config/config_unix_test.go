//go:build unix

package config

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// specialFiles creates, in dir, one of each kind of file that is not a
// regular file, plus symbolic links to some of them, and returns their paths
// by name.
func specialFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{
		"device":            "/dev/zero",
		"directory":         filepath.Join(dir, "dir"),
		"fifo":              filepath.Join(dir, "fifo"),
		"socket":            filepath.Join(dir, "sock"),
		"link to a fifo":    filepath.Join(dir, "fifo-link"),
		"link to a device":  filepath.Join(dir, "zero-link"),
		"link to a link":    filepath.Join(dir, "link-link"),
		"link to directory": filepath.Join(dir, "dir-link"),
	}
	if _, err := os.Stat("/dev/zero"); err != nil {
		t.Skip("no /dev/zero")
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Mkdir(files["directory"], 0o700))
	must(syscall.Mkfifo(files["fifo"], 0o600))
	l, err := net.Listen("unix", files["socket"])
	must(err)
	t.Cleanup(func() { l.Close() })
	must(os.Symlink(files["fifo"], files["link to a fifo"]))
	must(os.Symlink("/dev/zero", files["link to a device"]))
	must(os.Symlink(files["link to a fifo"], files["link to a link"]))
	must(os.Symlink(files["directory"], files["link to directory"]))
	return files
}

func TestLoadRefusesSpecialFiles(t *testing.T) {
	for kind, p := range specialFiles(t, t.TempDir()) {
		var err error
		within(t, 5*time.Second, func() { _, err = Load(p) })
		if err == nil || !strings.Contains(err.Error(), "read config: ") || !strings.Contains(err.Error(), p) ||
			!strings.Contains(err.Error(), "not a regular file") && !strings.Contains(err.Error(), "is a directory") {
			t.Errorf("Load(%s) (%s): %v, want a refusal naming the file", p, kind, err)
		}
	}
}

func TestLoadSizeLimit(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, size int) string {
		t.Helper()
		p := filepath.Join(dir, name)
		data := []byte(minimal)
		pad := []byte("\n# " + strings.Repeat("x", 70))
		for len(data) < size {
			data = append(data, pad...)
		}
		data = append(data[:size-1], '\n')
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for k, v := range testEnv {
		t.Setenv(k, v)
	}
	if _, err := Load(write("max.yaml", maxConfigFile)); err != nil {
		t.Errorf("a 1 MiB configuration: %v", err)
	}
	// A symbolic link to a regular file is fine.
	link := filepath.Join(dir, "link.yaml")
	if err := os.Symlink(filepath.Join(dir, "max.yaml"), link); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(link); err != nil {
		t.Errorf("a link to a configuration: %v", err)
	}
	for _, size := range []int{maxConfigFile + 1, 3 * maxConfigFile} {
		p := write("big.yaml", size)
		_, err := Load(p)
		if want := p + ": cannot read: larger than 1 MiB"; err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("a %d-byte configuration: %v, want %q", size, err, want)
		}
	}
	// A huge sparse file is refused without being read.
	sparse := filepath.Join(dir, "sparse.yaml")
	f, err := os.Create(sparse)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(1 << 40); err != nil {
		t.Skip("no sparse files here:", err)
	}
	f.Close()
	within(t, 5*time.Second, func() { _, err = Load(sparse) })
	if err == nil || !strings.Contains(err.Error(), "larger than 1 MiB") {
		t.Errorf("a 1 TiB sparse configuration: %v", err)
	}
}

func TestSecretFileKinds(t *testing.T) {
	for k, v := range testEnv {
		t.Setenv(k, v)
	}
	dir := t.TempDir()
	bad := specialFiles(t, dir)
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, []byte(strings.Repeat(secretMarker, maxSecretFile/len(secretMarker)+1)), 0o600); err != nil {
		t.Fatal(err)
	}
	bad["larger than 64 KiB"] = big

	for key := range secretKeys {
		fileKey := key + "_file"
		for kind, p := range bad {
			cfg := writeConfig(t, dir, fromFile(t, key, p))
			var err error
			within(t, 5*time.Second, func() { _, err = Load(cfg) })
			if err == nil {
				t.Errorf("%s: %s accepted", fileKey, kind)
				continue
			}
			msg := err.Error()
			if !strings.Contains(msg, fileKey+": ") || !strings.Contains(msg, p) {
				t.Errorf("%s: %s: error does not name the key and the path:\n%s", fileKey, kind, msg)
			}
			if strings.Contains(msg, secretMarker) {
				t.Errorf("%s: %s: error leaks the contents:\n%s", fileKey, kind, msg)
			}
			if strings.Count(msg, "\n") != 0 {
				t.Errorf("%s: %s: more than one error:\n%s", fileKey, kind, msg)
			}
		}
	}
	for kind, want := range map[string]string{
		"device":             "it is a device, not a regular file",
		"fifo":               "it is a named pipe (FIFO), not a regular file",
		"link to a link":     "it is a named pipe (FIFO), not a regular file",
		"socket":             "it is a socket, not a regular file",
		"directory":          "it is a directory",
		"larger than 64 KiB": "is larger than 64 KiB",
	} {
		_, err := Load(writeConfig(t, dir, fromFile(t, "chainguard.token", bad[kind])))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", kind, err, want)
		}
	}
}

func writeConfig(t *testing.T, dir, yml string) string {
	t.Helper()
	p := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(p, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSecretFileThroughLinks reads secrets the way Kubernetes mounts them:
// <dir>/<key> -> ..data/<key>, ..data -> ..<timestamp>/.
func TestSecretFileThroughLinks(t *testing.T) {
	for k, v := range testEnv {
		t.Setenv(k, v)
	}
	dir := t.TempDir()
	mount := filepath.Join(dir, "secrets")
	stamp := filepath.Join(mount, "..2026_01_01_00_00_00.000000001")
	if err := os.MkdirAll(stamp, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Base(stamp), filepath.Join(mount, "..data")); err != nil {
		t.Fatal(err)
	}
	full := strings.Repeat("t", maxSecretFile) // the largest accepted
	if err := os.WriteFile(filepath.Join(stamp, "token"), []byte(full), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..data", "token"), filepath.Join(mount, "token")); err != nil {
		t.Fatal(err)
	}
	c, err := Load(writeConfig(t, dir, fromFile(t, "chainguard.token", "secrets/token")))
	if err != nil {
		t.Fatal(err)
	}
	if c.Chainguard.Token.Reveal() != full {
		t.Errorf("token has %d bytes, want %d", len(c.Chainguard.Token.Reveal()), len(full))
	}
}

// TestPermissionWarnings: a configuration file holding a secret written in
// it, or a *_file secret, that group or others may read is named with the
// key and "chmod 600"; at 0600, or with every secret given as ${VAR}, there is
// nothing to say.
func TestPermissionWarnings(t *testing.T) {
	for k, v := range testEnv {
		t.Setenv(k, v)
	}
	chmod := func(p string, m os.FileMode) {
		t.Helper()
		if err := os.Chmod(p, m); err != nil {
			t.Fatal(err)
		}
	}
	load := func(p string) []string {
		t.Helper()
		c, err := Load(p)
		if err != nil {
			t.Fatal(err)
		}
		return c.PermissionWarnings()
	}

	t.Run("secrets from the environment", func(t *testing.T) {
		p := writeConfig(t, t.TempDir(), everySecret)
		chmod(p, 0o644)
		if w := load(p); len(w) != 0 {
			t.Errorf("warnings for a config holding only ${VAR} references: %q", w)
		}
	})

	t.Run("inline secret", func(t *testing.T) {
		yml := strings.Replace(everySecret, "password: ${SERVICENOW_PASSWORD}", "password: written-in-the-file", 1)
		p := writeConfig(t, t.TempDir(), yml)
		chmod(p, 0o644)
		w := load(p)
		if len(w) != 1 || !strings.Contains(w[0], p) || !strings.Contains(w[0], "servicenow.password") ||
			!strings.Contains(w[0], "0644") || !strings.Contains(w[0], "chmod 600 "+p) {
			t.Errorf("warnings = %q, want one naming %s, servicenow.password, 0644 and chmod 600", w, p)
		}
		if strings.Contains(strings.Join(w, ""), "written-in-the-file") {
			t.Errorf("a warning shows the secret")
		}
		chmod(p, 0o600)
		if w := load(p); len(w) != 0 {
			t.Errorf("warnings at 0600: %q", w)
		}
	})

	t.Run("secret file", func(t *testing.T) {
		dir := t.TempDir()
		tok := filepath.Join(dir, "token")
		if err := os.WriteFile(tok, []byte("cg-token\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		p := writeConfig(t, dir, fromFile(t, "chainguard.token", "token"))
		chmod(p, 0o644) // holds no secret itself
		chmod(tok, 0o640)
		w := load(p)
		if len(w) != 1 || !strings.Contains(w[0], tok) || !strings.Contains(w[0], "chainguard.token_file") ||
			!strings.Contains(w[0], "chmod 600 "+tok) {
			t.Errorf("warnings = %q, want one naming %s and chainguard.token_file", w, tok)
		}
		chmod(tok, 0o400)
		if w := load(p); len(w) != 0 {
			t.Errorf("warnings at 0400: %q", w)
		}
	})
}
