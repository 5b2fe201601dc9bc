package chainguard

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	common "chainguard.dev/sdk/proto/platform/common/v1"
	registry "chainguard.dev/sdk/proto/platform/registry/v1"
	"github.com/agnivade/levenshtein"
	"google.golang.org/grpc/status"

	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// publicCatalogGroup is the UIDP of Chainguard's public "chainguard" group,
// whose child repositories are the catalog.
const publicCatalogGroup = "720909c9f5279097d847ad02a2f24ba8f59de36a"

// maxSuggestions caps the "did you mean" list.
const maxSuggestions = 5

// catalogNames lists the public catalog's image names (cached, see catalog).
func (p *Provisioner) catalogNames(ctx context.Context) ([]string, error) {
	c, err := p.catalog.get(ctx)
	return c.names, err
}

// loadCatalog lists the public catalog: the repositories under Chainguard's
// public group (Registry.ListRepos).
func (p *Provisioner) loadCatalog(ctx context.Context) (catalog, error) {
	list, err := p.clients.Registry().ListRepos(ctx, &registry.RepoFilter{
		Uidp: &common.UIDPFilter{ChildrenOf: publicCatalogGroup},
	})
	if err != nil {
		return catalog{}, p.classify(opListRepos, "catalog", err)
	}
	names := make([]string, 0, len(list.GetItems()))
	repos := make(map[string]*registry.Repo, len(list.GetItems()))
	for _, r := range list.GetItems() {
		names = append(names, r.GetName())
		repos[r.GetName()] = r
	}
	slices.Sort(names)
	return catalog{names: slices.Compact(names), repos: repos}, nil
}

// unknownImage handles NOT_FOUND / INVALID_ARGUMENT from a provisioning call.
// Usually the image is not in the catalog: the request is rejected with the
// closest catalog names. If the catalog does list the image, the answer was
// about something else (the organization) and the bridge is blocked instead.
func (p *Provisioner) unknownImage(ctx context.Context, op string, img isync.ImageRef, err error) error {
	wrapped := fmt.Errorf("chainguard %s %s: %w", op, img.Name, err)
	names, cerr := p.catalogNames(ctx)
	if cerr == nil && slices.Contains(names, img.Name) {
		return isync.Blocked(CausePrecondition, fmt.Sprintf(
			"Chainguard answered %s to %s for %s, which is in the catalog: check chainguard.org_id (%s) and the organization's entitlements: %s",
			status.Code(err), op, img.Name, p.opts.OrgID, brief(status.Convert(err).Message())), wrapped)
	}
	return isync.Rejected(unknownReason(img.Name, names), wrapped)
}

// unknownReason explains that name is not a catalog image and suggests what
// to ask for instead. names may be nil (catalog unavailable).
func unknownReason(name string, names []string) string {
	if base, ok := strings.CutSuffix(name, "-dev"); ok && slices.Contains(names, base) {
		return fmt.Sprintf("%s is not a catalog image: -dev variants are tags of %s, ask for %s:latest-dev", quote(name), base, base)
	}
	if s := suggest(name, names); len(s) > 0 {
		return fmt.Sprintf("%s is not in the Chainguard catalog; did you mean: %s?", quote(name), strings.Join(s, ", "))
	}
	return fmt.Sprintf("%s is not in the Chainguard catalog; check the name at https://images.chainguard.dev", quote(name))
}

// suggest returns up to maxSuggestions catalog names close to query: within a
// small edit distance, or one a prefix of the other, or one containing the
// other. Closest first.
func suggest(query string, names []string) []string {
	type cand struct {
		name string
		dist int
	}
	threshold := 1 // "py" is not a typo of "go"
	if len(query) >= 4 {
		threshold = max(2, len(query)/3) // transpositions cost 2
	}
	var cands []cand
	for _, n := range names {
		d := levenshtein.ComputeDistance(query, n)
		if d <= threshold || related(query, n) {
			cands = append(cands, cand{n, d})
		}
	}
	slices.SortFunc(cands, func(a, b cand) int {
		return cmp.Or(cmp.Compare(a.dist, b.dist), cmp.Compare(a.name, b.name))
	})
	out := make([]string, 0, maxSuggestions)
	for _, c := range cands[:min(len(cands), maxSuggestions)] {
		out = append(out, c.name)
	}
	return out
}

// related: is one a prefix of the other, or (for three letters or more)
// contained in it?
func related(a, b string) bool {
	if len(a) < 2 || len(b) < 2 {
		return false
	}
	if strings.HasPrefix(a, b) || strings.HasPrefix(b, a) {
		return true
	}
	return (len(a) >= 3 && strings.Contains(b, a)) || (len(b) >= 3 && strings.Contains(a, b))
}
