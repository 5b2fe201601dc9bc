package config

import (
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
)

// PermissionWarnings returns one sentence for each file holding a secret of
// the enabled configuration that group or others may read: the configuration
// file itself when a secret is written in it (not given as ${VAR} or as a
// *_file), and each *_file secret (chainguard.identity_token_file included).
// Each names the file, the keys, its mode and the fix ("chmod 600 <file>"),
// e.g. "/etc/bridge/config.yaml holds the secret servicenow.password and is
// readable by group or others (mode 0644): chmod 600 /etc/bridge/config.yaml
// (...)".
// It reads the files' modes now; a file that cannot be stat'ed is left out
// (reading it already failed or will). On Windows, where modes do not say
// who may read, it returns nothing.
func (c *Config) PermissionWarnings() []string {
	if runtime.GOOS == "windows" {
		return nil
	}
	keys := map[string][]string{} // file -> secret keys it holds
	for _, r := range c.secretRefs() {
		switch {
		case c.fromFile[r.path] && *r.file != "":
			keys[*r.file] = append(keys[*r.file], r.path+"_file")
		case !r.val.IsZero() && !c.fromEnv[r.path] && c.file != "":
			keys[c.file] = append(keys[c.file], r.path)
		}
	}
	if f := c.Chainguard.IdentityTokenFile; f != "" {
		keys[f] = append(keys[f], "chainguard.identity_token_file")
	}
	files := make([]string, 0, len(keys))
	for f := range keys {
		files = append(files, f)
	}
	sort.Strings(files)
	var out []string
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil || st.Mode().Perm()&0o077 == 0 {
			continue
		}
		what := "holds the secret"
		if len(keys[f]) > 1 {
			what += "s"
		}
		if f != c.file {
			what = "is the secret file of"
		}
		out = append(out, fmt.Sprintf("%s %s %s and is readable by group or others (mode %04o): chmod 600 %s"+
			" (on a Kubernetes secret volume: defaultMode: 0400)",
			f, what, strings.Join(keys[f], ", "), st.Mode().Perm(), f))
	}
	return out
}
