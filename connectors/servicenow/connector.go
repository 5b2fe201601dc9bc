package servicenow

import (
	"fmt"

	"github.com/chainguard-dev/image-request-bridge/internal/source"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// Connector is the ServiceNow intake, as listed in the registry
// (package connectors).
var Connector source.Connector = connector{}

type connector struct{}

var (
	_ source.Webhooker = connector{}
	_ source.Checker   = connector{}
)

func (connector) Name() string { return Name }

func (connector) NewSection() source.Section { return &Config{} }

// Build maps the section to Options.
func (connector) Build(s source.Section, d source.Deps) (isync.Source, error) {
	c, ok := s.(*Config)
	if !ok {
		return nil, fmt.Errorf("servicenow: section is a %T", s)
	}
	return New(Options{
		InstanceURL: c.InstanceURL,
		Auth: Auth{
			Username:     c.Username,
			Password:     c.Password,
			ClientID:     c.OAuth.ClientID,
			ClientSecret: c.OAuth.ClientSecret,
			GrantType:    c.OAuth.GrantType,
		},
		CatalogItem:           c.CatalogItem,
		ImageVariable:         c.Variables.Image,
		JustificationVariable: c.Variables.Justification,
		ExtraVariables:        c.Variables.Extra,
		ClosedComplete:        c.States.ClosedComplete,
		ClosedIncomplete:      c.States.ClosedIncomplete,
		PageSize:              c.PageSize,
		Timeout:               c.Timeout,
		Logger:                d.Logger,
		WrapTransport:         d.WrapTransport,
		Limiter:               d.Limiter,
		ListAwaiting:          d.ListAwaiting,
		RequesterComment:      c.WritesRequesterComment(),
	})
}
