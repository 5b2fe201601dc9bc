package servicenow

import (
	"github.com/chainguard-dev/image-request-bridge/internal/source"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// Checks implements source.Checker: one authenticated read of the catalog
// item's RITMs, which proves the credentials and the read ACL on
// sc_req_item.
func (connector) Checks(src isync.Source) []source.Check {
	s, ok := src.(*Source)
	if !ok {
		return nil
	}
	return []source.Check{{Name: Name, Run: s.Check}}
}
