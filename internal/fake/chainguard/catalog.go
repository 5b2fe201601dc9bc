package chainguard

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	registry "chainguard.dev/sdk/proto/platform/registry/v1"
)

// PublicCatalogGroup is the UIDP of Chainguard's public "chainguard" group,
// the parent of every catalog image repository. ListRepos with
// Uidp.ChildrenOf set to it lists the catalog.
const PublicCatalogGroup = "720909c9f5279097d847ad02a2f24ba8f59de36a"

// CatalogImage is one image of the public catalog.
type CatalogImage struct {
	Name       string               // catalog repository name: "python"
	Tier       registry.CatalogTier // the tier that entitles it
	ActiveTags []string             // actively maintained tags: "latest", "latest-dev", "3.12", ...
}

// CatalogID returns the UIDP the fake gives the catalog repository of name. It
// is derived from the name so that ids are stable from one run to the next.
func CatalogID(name string) string {
	return PublicCatalogGroup + "/" + shortHash("catalog/"+name)
}

// shortHash is 16 hex digits (a UIDP segment) derived from s.
func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:8])
}

// versioned returns the usual Chainguard tag set: latest, latest-dev and, for
// each version, the version and its -dev variant.
func versioned(versions ...string) []string {
	tags := []string{"latest", "latest-dev"}
	for _, v := range versions {
		tags = append(tags, v, v+"-dev")
	}
	return tags
}

// DefaultCatalog returns the catalog the fake serves unless WithCatalog is
// given: a selection of real Chainguard image names with plausible tiers and
// tags. Tiers and tags are illustrative, not a copy of the live catalog.
func DefaultCatalog() []CatalogImage {
	base, app, fips, ai, dev := registry.CatalogTier_BASE, registry.CatalogTier_APPLICATION,
		registry.CatalogTier_FIPS, registry.CatalogTier_AI, registry.CatalogTier_DEVTOOLS
	return []CatalogImage{
		{"static", base, []string{"latest"}},
		{"wolfi-base", base, []string{"latest"}},
		{"busybox", base, versioned("1.37")},
		{"glibc-dynamic", base, []string{"latest", "latest-dev"}},
		{"python", base, versioned("3.13", "3.12", "3.11", "3.10")},
		{"node", base, versioned("24", "22", "20")},
		{"go", base, versioned("1.25", "1.24")},
		{"jdk", base, versioned("21", "17", "11")},
		{"jre", base, versioned("21", "17", "11")},
		{"ruby", base, versioned("3.4", "3.3")},
		{"php", base, versioned("8.4", "8.3")},
		{"rust", base, versioned("1.89")},
		{"dotnet-sdk", base, versioned("9", "8")},
		{"dotnet-runtime", base, versioned("9", "8")},
		{"nginx", app, versioned("1.29", "1.28")},
		{"redis", app, versioned("8.2", "7.4")},
		{"postgres", app, versioned("17", "16", "15")},
		{"mariadb", app, versioned("11.8")},
		{"rabbitmq", app, versioned("4.1")},
		{"memcached", app, versioned("1.6")},
		{"haproxy", app, versioned("3.2")},
		{"prometheus", app, versioned("3.5")},
		{"grafana", app, versioned("12.1")},
		{"git", dev, versioned("2.51")},
		{"curl", dev, versioned("8.16")},
		{"bash", dev, versioned("5.3")},
		{"kubectl", dev, versioned("1.34", "1.33")},
		{"helm", dev, versioned("3.19")},
		{"maven", dev, versioned("3.9")},
		{"gradle", dev, versioned("9")},
		{"pytorch", ai, versioned("2.8")},
		{"python-fips", fips, versioned("3.13", "3.12")},
		{"node-fips", fips, versioned("22", "20")},
		{"go-fips", fips, versioned("1.25")},
		{"jdk-fips", fips, versioned("21", "17")},
		{"nginx-fips", fips, versioned("1.29")},
	}
}

// catalogRepo is the catalog image as the API shows it in the public group.
func catalogRepo(img CatalogImage) *registry.Repo {
	return &registry.Repo{
		Id:          CatalogID(img.Name),
		Name:        img.Name,
		CatalogTier: img.Tier,
		ActiveTags:  append([]string(nil), img.ActiveTags...),
		Description: "Minimal, low-CVE " + img.Name + " image",
	}
}

// lookupSource resolves a SyncConfig.Source. Like the real API it accepts the
// catalog repository's UIDP, "python", "chainguard/python" and
// "cgr.dev/chainguard/python".
func (s *Server) lookupSource(source string) (CatalogImage, bool) {
	if strings.HasPrefix(source, PublicCatalogGroup+"/") {
		if i, ok := s.catByID[source]; ok {
			return s.catalog[i], true
		}
		return CatalogImage{}, false
	}
	name := strings.TrimPrefix(strings.TrimPrefix(source, "cgr.dev/"), "chainguard/")
	return s.lookupName(name)
}

// lookupName finds a catalog image by exact name.
func (s *Server) lookupName(name string) (CatalogImage, bool) {
	if i, ok := s.catByName[name]; ok {
		return s.catalog[i], true
	}
	return CatalogImage{}, false
}

// indexCatalog builds the catalog's indexes by name and by id; the first
// entry of a name wins, as a scan in catalog order would find it.
func (s *Server) indexCatalog() {
	s.catByName = make(map[string]int, len(s.catalog))
	s.catByID = make(map[string]int, len(s.catalog))
	for i, img := range s.catalog {
		if _, dup := s.catByName[img.Name]; !dup {
			s.catByName[img.Name] = i
		}
		id := CatalogID(img.Name)
		if _, dup := s.catByID[id]; !dup {
			s.catByID[id] = i
		}
	}
}
