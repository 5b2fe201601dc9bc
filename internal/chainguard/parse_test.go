package chainguard

import (
	"fmt"
	"regexp"
	"slices"
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
		// Every separator of the OCI name grammar.
		"a__b--c":                      "a__b--c:latest",
		"py.thon_3__x---y":             "py.thon_3__x---y:latest",
		"cgr.dev/chainguard/go-1.2_x":  "go-1.2_x:latest",
		"cgr.dev/example.com/a0:1.0_x": "a0:1.0_x",
		"00":                           "00:latest",
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

const (
	invalidName = "is not a valid image reference: a name starts and ends with a letter or digit"
	missing     = "is not a valid image reference: an image name is missing"
)

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
		{"cgr.dev/other-org/chainguard", []string{"another organization (other-org)"}},
		{"ghcr.io/chainguard", []string{"another registry (ghcr.io)"}},
		{"ghcr.io/x/example.com:1", []string{"another registry (ghcr.io)"}},
		{"a/b/cgr.dev", []string{"nested path"}},
		{"python" + digest, []string{"digest", "we provision repositories, request a tag", "python:latest"}},
		{"cgr.dev/chainguard/python:3.12" + digest, []string{"request a tag", "python:3.12"}},
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
		// Names outside the OCI distribution grammar, in every position.
		{"..", []string{invalidName}},
		{".", nil},
		{"-python", []string{invalidName}},
		{"_python", []string{invalidName}},
		{"python-", []string{invalidName}},
		{"python.", []string{invalidName}},
		{"python_", []string{invalidName}},
		{"py..thon", []string{invalidName}},
		{"py___thon", []string{invalidName}},
		{"py._thon", []string{invalidName}},
		{"py_.thon", []string{invalidName}},
		{"py-_thon", []string{invalidName}},
		{"py_-thon", []string{invalidName}},
		{"py.-thon", []string{invalidName}},
		{"py-.thon", []string{invalidName}},
		{"a__b--c_", []string{invalidName}},
		{"a__b--c.", []string{invalidName}},
		{"_a__b--c", []string{invalidName}},
		{"a___b--c", []string{invalidName}},
		{"a__b--_c", []string{invalidName}},
		{"python/..", []string{invalidName}},
		{"python/.", []string{invalidName}},
		{"chainguard/-python", []string{invalidName}},
		{"cgr.dev/chainguard/python.", []string{invalidName}},
		{"cgr.dev/example.com/_python:1", []string{invalidName}},
		{"example.com/python-", []string{invalidName}},
		{"cgr.dev/-org/python", []string{invalidName}},
		{"cgr.dev/org_/python", []string{invalidName}},
		{"ghcr.io/-foo/bar", []string{invalidName}},
		{"ghcr.io/foo/bar..baz", []string{invalidName}},
		{"a/b/..", []string{invalidName}},
		// A first part with a dot or colon reads as a host: it must be one.
		{"../python", []string{`".." is neither a registry host nor an image name`}},
		{"./python", []string{"neither a registry host nor an image name"}},
		{"a..b/python", []string{"neither a registry host nor an image name"}},
		{"-x.io/python", []string{"neither a registry host nor an image name"}},
		{"x-.io/python", []string{"neither a registry host nor an image name"}},
		{"x.io:/python", []string{}},
		// A registry or organization with no image.
		{"cgr.dev", []string{missing}},
		{"cgr.dev/", nil},
		{"cgr.dev:443", []string{missing}},
		{"chainguard", []string{missing}},
		{"chainguard:latest", []string{missing}},
		{"chainguard/", []string{missing}},
		{"example.com", []string{missing}},
		{"example.com:1.0", []string{missing}},
		{"example.com/", []string{missing}},
		{"cgr.dev/chainguard", []string{missing}},
		{"cgr.dev/chainguard:latest", []string{missing}},
		{"cgr.dev/example.com", []string{missing}},
		{"cgr.dev/example.com/", []string{missing}},
		{"cgr.dev/chainguard/chainguard", []string{missing}},
		{"cgr.dev/example.com/cgr.dev", []string{missing}},
		{"chainguard/example.com", []string{missing}},
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
		checkReason(t, p, reason)
	}
}

func trunc(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// checkReason: a reason is one line of printable ASCII of bounded length,
// whatever the input, and every reference it suggests is one ParseImage
// accepts.
func checkReason(t *testing.T, p *Provisioner, reason string) {
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
	for _, ref := range suggested(reason) {
		if _, err := p.ParseImage(ref); err != nil {
			t.Errorf("reason %q suggests %q, which is rejected: %s", reason, ref, isync.ReasonOf(err))
		}
	}
}

var (
	// quotedInput is how quote renders the requester's own text.
	quotedInput = regexp.MustCompile(`"(?:[^"\\]|\\.)*"(?:\.\.\.)?`)
	// suggestedRef finds the references a reason proposes.
	suggestedRef = []*regexp.Regexp{
		regexp.MustCompile(`(?:ask for|or just|e\.g\.|such as) ([^ ,;()?]+)`),
		regexp.MustCompile(`such as [^ ,;()?]+ or ([^ ,;()?]+)`),
	}
)

// suggested lists the references a reason proposes, outside the quoted
// input.
func suggested(reason string) []string {
	reason = quotedInput.ReplaceAllString(reason, `""`)
	var out []string
	for _, re := range suggestedRef {
		for _, m := range re.FindAllStringSubmatch(reason, -1) {
			if !strings.HasPrefix(m[1], `"`) {
				out = append(out, m[1])
			}
		}
	}
	return out
}

// ociName is a repository path component in the OCI distribution spec.
var ociName = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*$`)

func FuzzParseImage(f *testing.F) {
	for _, s := range []string{
		"python", "python:latest-dev", "cgr.dev/chainguard/python:3.12", "cgr.dev/example.com/python:latest-dev",
		"docker.io/library/python", "python@sha256:" + strings.Repeat("0", 64), "Python", "pyth\u043en", "",
		"example.com/node:22", "a/b/c", "https://cgr.dev/chainguard/go", "python\x00", "\xff",
		"..", "-python", "python.", "a__b--c", "a___b", "python/..", "../python", "cgr.dev", "chainguard",
		"example.com", "cgr.dev/example.com", "cgr.dev/chainguard", "cgr.dev:443",
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
			checkReason(t, p, isync.ReasonOf(err))
			return
		}
		if !ociName.MatchString(ref.Name) {
			t.Fatalf("accepted %q as %s, whose name is outside the OCI name grammar", raw, ref)
		}
		if ref.Name == "cgr.dev" || ref.Name == "chainguard" || ref.Name == "example.com" {
			t.Fatalf("accepted %q as %s, which names a registry or organization, not an image", raw, ref)
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

// TestSuggested keeps the fuzz property's reading of reasons honest.
func TestSuggested(t *testing.T) {
	for reason, want := range map[string][]string{
		`"cgr.dev/o/python" belongs to another organization (o): ask for cgr.dev/example.com/python or just python`: {"cgr.dev/example.com/python", "python"},
		`"x ask for zz/zz/zz" contains spaces; request one image, e.g. python:latest-dev`:                           {"python:latest-dev"},
		`"x" is a URL; type it without a scheme, e.g. cgr.dev/chainguard/python:latest, or ` + example:              {"cgr.dev/chainguard/python:latest", "python", "python:latest-dev"},
		`"p@sha256:..." names a digest: request a tag instead (e.g. python:3.12)`:                                   {"python:3.12"},
	} {
		got := suggested(reason)
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("suggested(%q) = %q, want %q", reason, got, want)
		}
	}
}
