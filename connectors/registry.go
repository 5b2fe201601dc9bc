// Package connectors holds the registry of the bridge's intakes. Each intake
// is one package under connectors/ providing a source.Connector; listing it in
// Sources is all it takes for the configuration (its top-level section), the
// CLI (--source), the HTTP server (POST /webhooks/<name>), the metrics,
// `validate --online` and /readyz to take it in.
package connectors

import (
	"github.com/chainguard-dev/image-request-bridge/connectors/jira"
	"github.com/chainguard-dev/image-request-bridge/connectors/servicenow"
	"github.com/chainguard-dev/image-request-bridge/internal/source"
)

// Sources lists the intakes, in the order they are configured, built, shown
// and passed.
var Sources = []source.Connector{
	servicenow.Connector,
	jira.Connector,
}
