package chainguard

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"

	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// parser is a Provisioner for ParseImage only (no API connection).
func parser() *Provisioner {
	return NewWithClients(nil, Options{OrgName: "example.com"})
}

func TestParseImageAccepts(t *testing.T) {
	p := parser()
	for raw, want := range map[string]string{
		"python":                                "python:latest",
		"python:latest-dev":                     "python:latest-dev",
		"  python:3.12 \n":                      "python:3.12",
		"\tnode\r\n":                            "node:latest",
		"cgr.dev/chainguard/python:3.12":        "python:3.12",
		"cgr.dev/chainguard/python":             "python:latest",
		"cgr.dev/example.com/python:latest-dev": "python:latest-dev",
		"example.com/python:latest-dev":         "python:latest-dev",
		"chainguard/python-fips:3.13":           "python-fips:3.13",
		"cgr.dev/python":                        "python:latest",
		"dotnet-sdk:9-dev":                      "dotnet-sdk:9-dev",
		"glibc-dynamic":                         "glibc-dynamic:latest",
	} {
		ref, err := p.ParseImage(raw)
		if err != nil {
			t.Errorf("ParseImage(%q): %v", raw, err)
			continue
		}
		if ref.String() != want {
			t.Errorf("ParseImage(%q) = %s, want %s", raw, ref, want)
		}
	}
}

func TestParseImageRejects(t *testing.T) {
	p := parser()
	digest := "@sha256:" + strings.Repeat("ab", 32)
	for _, tc := range []struct {
		raw  string
		want []string // parts of the reason
	}{
		{"", []string{"no image was requested", "python:latest-dev"}},
		{" \t\n ", []string{"no image was requested"}},
		{"docker.io/library/python:3.12", []string{"another registry (index.docker.io)", "ask for python:3.12"}},
		{"ghcr.io/foo/bar", []string{"another registry (ghcr.io)", "ask for bar"}},
		{"localhost:5000/python", []string{"another registry"}},
		{"quay.io/python", []string{"another registry"}},
		{"cgr.dev/other-org/python", []string{"another organization (other-org)", "cgr.dev/example.com/python or just python"}},
		{"python" + digest, []string{"digest", "we provision repositories, ask for a tag", "python:latest"}},
		{"cgr.dev/chainguard/python:3.12" + digest, []string{"ask for a tag", "python:3.12"}},
		{"cgr.dev/chainguard/python/extra:1", []string{"nested path", "python/extra"}},
		{"a/b/c", []string{"nested path"}},
		{"Python", []string{"lower case", "python:latest"}},
		{"CGR.DEV/CHAINGUARD/PYTHON:LATEST-DEV", []string{"lower case", "python:latest-dev"}},
		{"python latest", []string{"contains spaces"}},
		{"python\u00a0", []string{}}, // trimmed: accepted? no: NBSP is trimmed by TrimSpace
		{"python\x00", []string{"control or invisible", `\x00`}},
		{"py\u200bthon", []string{"control or invisible", `\u200b`}},
		{"\xff\xfepython", []string{"not valid text", `\xff`}},
		{"pyth\u043en", []string{"non-ASCII character '\\u043e'", "look-alike"}},
		{"\uff50\uff59\uff54\uff48\uff4f\uff4e", []string{"non-ASCII"}},
		{"<script>alert(1)</script>", []string{`"<script>alert(1)</script>" is not a valid image reference`}},
		{"https://cgr.dev/chainguard/python", []string{"is a URL", "without a scheme"}},
		{"python:", []string{"not a valid image reference"}},
		{"python:latest:dev", []string{"not a valid image reference"}},
		{"p", []string{"not a valid image reference"}},
		{"python:-bad", []string{"not a valid image reference"}},
		{strings.Repeat("a", 300), []string{"too long (300 bytes", "..."}},
		{strings.Repeat("x", 10240), []string{"too long (10240 bytes"}},
	} {
		ref, err := p.ParseImage(tc.raw)
		if tc.raw == "python\u00a0" {
			if err != nil || ref.String() != "python:latest" {
				t.Errorf("NBSP is surrounding whitespace: %v, %v", ref, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("ParseImage(%q) = %s, want rejection", trunc(tc.raw), ref)
			continue
		}
		if isync.ClassOf(err) != isync.ClassRejected {
			t.Errorf("ParseImage(%q): class %v, want rejected", trunc(tc.raw), isync.ClassOf(err))
		}
		reason := isync.ReasonOf(err)
		for _, w := range tc.want {
			if !strings.Contains(reason, w) {
				t.Errorf("ParseImage(%q): reason %q does not contain %q", trunc(tc.raw), reason, w)
			}
		}
		checkReason(t, reason)
	}
}

func trunc(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// checkReason: a reason is one line of printable ASCII of bounded length,
// whatever the input.
func checkReason(t *testing.T, reason string) {
	t.Helper()
	if len(reason) > 400 {
		t.Errorf("reason is %d bytes long: %.80q", len(reason), reason)
	}
	for i := 0; i < len(reason); i++ {
		if c := reason[i]; c < 0x20 || c > 0x7e {
			t.Errorf("reason has byte %#x: %q", c, reason)
			return
		}
	}
}

func FuzzParseImage(f *testing.F) {
	for _, s := range []string{
		"python", "python:latest-dev", "cgr.dev/chainguard/python:3.12", "cgr.dev/example.com/python:latest-dev",
		"docker.io/library/python", "python@sha256:" + strings.Repeat("0", 64), "Python", "pyth\u043en", "",
		"example.com/node:22", "a/b/c", "https://cgr.dev/chainguard/go", "python\x00", "\xff",
	} {
		f.Add(s)
	}
	p := parser()
	f.Fuzz(func(t *testing.T, raw string) {
		ref, err := p.ParseImage(raw)
		if err != nil {
			if isync.ClassOf(err) != isync.ClassRejected {
				t.Fatalf("class %v for %q", isync.ClassOf(err), raw)
			}
			checkReason(t, isync.ReasonOf(err))
			return
		}
		full := fmt.Sprintf("cgr.dev/example.com/%s:%s", ref.Name, ref.Tag)
		tag, err := name.NewTag(full, name.StrictValidation)
		if err != nil {
			t.Fatalf("accepted %q as %s, which is not a valid reference: %v", raw, ref, err)
		}
		if tag.String() != full || tag.RegistryStr() != "cgr.dev" || tag.RepositoryStr() != "example.com/"+ref.Name {
			t.Fatalf("accepted %q as %s, which does not round-trip: %s", raw, ref, tag)
		}
		for _, again := range []string{full, ref.String()} {
			if ref2, err := p.ParseImage(again); err != nil || ref2 != ref {
				t.Fatalf("accepted %q as %s, but %q parses to %v, %v", raw, ref, again, ref2, err)
			}
		}
	})
}
