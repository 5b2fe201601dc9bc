package jira

import (
	"fmt"

	"github.com/chainguard-dev/image-request-bridge/internal/source"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// Connector is the Jira intake, as listed in the registry (package
// connectors).
var Connector source.Connector = connector{}

type connector struct{}

var (
	_ source.Webhooker = connector{}
	_ source.Checker   = connector{}
)

func (connector) Name() string { return Name }

func (connector) NewSection() source.Section { return &Config{} }

// Build maps the section to Options. The awaiting-approval JQL is used only
// when the policy has an auto tier.
func (connector) Build(s source.Section, d source.Deps) (isync.Source, error) {
	c, ok := s.(*Config)
	if !ok {
		return nil, fmt.Errorf("jira: section is a %T", s)
	}
	awaiting := ""
	if d.ListAwaiting {
		awaiting = c.AwaitingJQL
	}
	return New(Options{
		AwaitingJQL:        awaiting,
		URL:                c.URL,
		Deployment:         c.Deployment,
		Auth:               c.Auth,
		Email:              c.Email,
		APIToken:           c.APIToken,
		JQL:                c.JQL,
		ImageField:         c.Fields.Image,
		JustificationField: c.Fields.Justification,
		ExtraFields:        c.Fields.Extra,
		DoneTransition:     c.Transitions.Done,
		RejectedTransition: c.Transitions.Rejected,
		ApproveTransition:  c.Transitions.Approve,
		CommentVisibility:  c.CommentVisibility,
		PageSize:           c.PageSize,
		Timeout:            c.Timeout,
		Logger:             d.Logger,
		WrapTransport:      d.WrapTransport,
		Limiter:            d.Limiter,
	})
}
