package chainguard

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/google/go-containerregistry/pkg/name"

	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// maxRefLen caps a requested reference; longer input is rejected unread.
const maxRefLen = 256

// example is what rejection reasons suggest typing.
const example = "a catalog name such as python or python:latest-dev"

// ParseImage accepts a requested image reference and returns the catalog name
// and tag to provision. Accepted forms, surrounding whitespace ignored:
//
//	python                           (tag latest)
//	python:latest-dev
//	cgr.dev/chainguard/python:3.12   (the public catalog path)
//	cgr.dev/<OrgName>/python:3.12    (the organization's own path)
//
// Every name between slashes must follow the OCI distribution name grammar,
// and a registry or organization alone ("cgr.dev", "cgr.dev/chainguard",
// "cgr.dev/<OrgName>") names no image. Anything else is an isync.Rejected
// error whose reason tells the requester what to type instead, suggesting
// only references ParseImage accepts; the reason quotes at most a short,
// escaped prefix of the input.
func (p *Provisioner) ParseImage(raw string) (isync.ImageRef, error) {
	if len(raw) > 4*maxRefLen {
		return isync.ImageRef{}, tooLong(raw)
	}
	if !utf8.ValidString(raw) {
		return isync.ImageRef{}, isync.Rejectedf("the image reference %s is not valid text; type %s", quote(raw), example)
	}
	s := strings.TrimSpace(raw)
	if s == "" {
		return isync.ImageRef{}, isync.Rejectedf("no image was requested; type %s", example)
	}
	if len(s) > maxRefLen {
		return isync.ImageRef{}, tooLong(s)
	}
	if err := p.checkCharacters(s); err != nil {
		return isync.ImageRef{}, err
	}
	if strings.Contains(s, "://") {
		return isync.ImageRef{}, isync.Rejectedf("the image reference %s is a URL; type the reference without a scheme, e.g. %s/chainguard/python:latest, or %s", quote(s), p.opts.Registry, example)
	}
	if i := strings.IndexByte(s, '@'); i >= 0 {
		instead := "python:latest"
		if ref, err := p.ParseImage(s[:i]); err == nil {
			instead = ref.String()
		}
		return isync.ImageRef{}, isync.Rejectedf("the image reference %s names a digest: we provision repositories, request a tag instead (e.g. %s)", quote(s), instead)
	}
	// An organization name with a dot ("example.com") would read as a
	// registry host: anchor the organization's own path to the registry.
	if strings.HasPrefix(s, p.opts.OrgName+"/") && strings.ContainsAny(p.opts.OrgName, ".:") {
		s = p.opts.Registry + "/" + s
	}
	tag, err := name.NewTag(s, name.WithDefaultRegistry(p.opts.Registry), name.WithDefaultTag("latest"))
	if err != nil {
		return isync.ImageRef{}, isync.Rejected(fmt.Sprintf("%s is not a valid image reference; type %s", quote(s), example), err)
	}
	// name.NewTag checks a tag's characters, not that it starts with a word
	// character as the OCI distribution spec requires ("python:-x").
	if t := tag.TagStr(); t[0] == '-' || t[0] == '.' {
		return isync.ImageRef{}, isync.Rejectedf("%s is not a valid image reference: a tag starts with a letter or digit; type %s", quote(s), example)
	}
	reg := tag.RegistryStr()
	if reg != p.opts.Registry && !hostPattern.MatchString(reg) {
		// name.NewTag takes any first part with a dot or colon for a
		// registry host ("../python").
		return isync.ImageRef{}, isync.Rejectedf("%s is not a valid image reference: %s is neither a registry host nor an image name; type %s", quote(s), quote(reg), example)
	}
	path := strings.Split(tag.RepositoryStr(), "/")
	for _, c := range path {
		switch {
		case c == "": // name.NewTag lets "chainguard/" and "a//b" through
			return isync.ImageRef{}, missingImage(s)
		case !componentPattern.MatchString(c):
			return isync.ImageRef{}, isync.Rejectedf("%s is not a valid image reference: a name starts and ends with a letter or digit, joined only by one dot, one or two underscores, or dashes; type %s",
				quote(s), example)
		}
	}
	if reg != p.opts.Registry {
		return isync.ImageRef{}, isync.Rejectedf("%s is on another registry (%s): the bridge provisions Chainguard images from %s; %s",
			quote(s), short(reg), p.opts.Registry, p.askFor(lastPart(s)))
	}
	switch {
	case len(path) == 1:
	case len(path) == 2 && (path[0] == "chainguard" || path[0] == p.opts.OrgName):
	case len(path) == 2:
		if sug, ok := p.suggestion(path[1]); ok {
			return isync.ImageRef{}, isync.Rejectedf("%s belongs to another organization (%s): ask for %s/%s/%s or just %s",
				quote(s), short(path[0]), p.opts.Registry, p.opts.OrgName, sug, sug)
		}
		return isync.ImageRef{}, isync.Rejectedf("%s belongs to another organization (%s): type %s", quote(s), short(path[0]), example)
	default:
		return isync.ImageRef{}, isync.Rejectedf("%s is a nested path: catalog images are one name; %s", quote(s), p.askFor(lastPart(s)))
	}
	// A registry host or organization alone ("cgr.dev", "cgr.dev/chainguard",
	// "example.com:latest") names no image.
	if n := path[len(path)-1]; n == p.opts.Registry || n == "chainguard" || n == p.opts.OrgName {
		return isync.ImageRef{}, missingImage(s)
	}
	img := isync.ImageRef{Name: path[len(path)-1], Tag: tag.TagStr()}
	// The name must stand on its own too ("cgr.dev/chainguard/x" holds a
	// one-letter name that a bare reference rejects).
	if _, err := name.NewRepository(img.Name, name.WithDefaultRegistry(p.opts.Registry)); err != nil {
		return isync.ImageRef{}, isync.Rejected(fmt.Sprintf("%s is not a valid image reference; type %s", quote(s), example), err)
	}
	if ref := p.pullRef(img); len(ref) > maxRefLen {
		return isync.ImageRef{}, tooLong(ref)
	}
	return img, nil
}

// checkCharacters rejects what a reference never contains, with a reason
// that names the problem: spaces, control or invisible characters, non-ASCII
// (look-alike letters) and upper case.
func (p *Provisioner) checkCharacters(s string) error {
	for _, r := range s {
		switch {
		case unicode.IsSpace(r):
			return isync.Rejectedf("the image reference %s contains spaces; request one image, e.g. python:latest-dev", quote(s))
		case unicode.IsControl(r) || unicode.Is(unicode.Cf, r):
			return isync.Rejectedf("the image reference %s contains control or invisible characters; retype it as %s", quote(s), example)
		case r > unicode.MaxASCII:
			return isync.Rejectedf("the image reference %s contains the non-ASCII character %s (look-alike letters are not accepted); retype it in plain ASCII as %s",
				quote(s), strconv.QuoteRuneToASCII(r), example)
		}
	}
	if lower := strings.ToLower(s); lower != s {
		if ref, err := p.ParseImage(lower); err == nil {
			return isync.Rejectedf("image references are lower case: ask for %s", ref)
		}
		return isync.Rejectedf("the image reference %s contains upper-case letters; type %s", quote(s), example)
	}
	return nil
}

// componentPattern is a repository path component in the OCI distribution
// spec's name grammar.
var componentPattern = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)

// hostPattern is a registry host in the distribution reference grammar
// (lower case: upper case is rejected earlier, with its own reason).
var hostPattern = regexp.MustCompile(`^(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*|\[[a-f0-9:]+\])(?::[0-9]+)?$`)

// maxSuggestion bounds a suggested reference, so that reasons stay short.
const maxSuggestion = 80

func missingImage(s string) error {
	return isync.Rejectedf("%s is not a valid image reference: an image name is missing; type %s", quote(s), example)
}

// lastPart is a reference's last path element, with its tag when it has one.
func lastPart(ref string) string {
	return ref[strings.LastIndex(ref, "/")+1:]
}

// suggestion returns candidate when ParseImage accepts it, so that a reason
// never proposes a reference that is rejected in turn.
func (p *Provisioner) suggestion(candidate string) (string, bool) {
	if len(candidate) > maxSuggestion {
		return "", false
	}
	if _, err := p.ParseImage(candidate); err != nil {
		return "", false
	}
	return candidate, true
}

// askFor tells the requester to ask for candidate when it is acceptable, or
// what to type otherwise.
func (p *Provisioner) askFor(candidate string) string {
	if sug, ok := p.suggestion(candidate); ok {
		return "ask for " + sug
	}
	return "type " + example
}

// short shortens an already validated part of the input for a reason.
func short(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max-3] + "..."
}

func tooLong(s string) error {
	return isync.Rejectedf("the image reference is too long (%d bytes, starting %s); type %s", len(s), quote(s), example)
}

// quote renders user input for a reason: at most 64 bytes, escaped to ASCII,
// in double quotes.
func quote(s string) string {
	const max = 64
	if len(s) <= max {
		return strconv.QuoteToASCII(s)
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.QuoteToASCII(s[:cut]) + "..."
}
