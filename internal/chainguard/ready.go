package chainguard

import (
	"context"
	"fmt"

	common "chainguard.dev/sdk/proto/platform/common/v1"
	registry "chainguard.dev/sdk/proto/platform/registry/v1"

	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

var _ isync.Readiness = (*Provisioner)(nil)

// TagReady reports whether img's tag is in the organization's repository yet
// (close_on: ready), with Registry.ListTags{Uidp.ChildrenOf: repo id, Name:
// tag} (capability tag.list). A repository whose id is not known yet (an
// entitlement still reconciling) is looked up by name first.
func (p *Provisioner) TagReady(ctx context.Context, res isync.Result, img isync.ImageRef) (bool, error) {
	repoID := res.RepoID
	if repoID == "" {
		id, err := p.findRepo(ctx, img.Name)
		if err != nil {
			return false, err
		}
		if id == "" {
			return false, nil
		}
		repoID = id
	}
	tags, err := p.clients.Registry().ListTags(ctx, &registry.TagFilter{
		Uidp: &common.UIDPFilter{ChildrenOf: repoID},
		Name: img.Tag,
	})
	if err != nil {
		return false, p.classify("ListTags", fmt.Sprintf("%s:%s", img.Name, img.Tag), err)
	}
	for _, t := range tags.GetItems() {
		if t.GetName() == img.Tag {
			return true, nil
		}
	}
	return false, nil
}
