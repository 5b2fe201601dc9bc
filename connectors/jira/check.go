package jira

import (
	"github.com/chainguard-dev/image-request-bridge/internal/source"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// Checks implements source.Checker: GET /rest/api/2/myself proves the
// credentials, then the deployment and the configured fields are resolved.
func (connector) Checks(src isync.Source) []source.Check {
	s, ok := src.(*Source)
	if !ok {
		return nil
	}
	return []source.Check{{Name: Name, Run: s.Check}}
}
