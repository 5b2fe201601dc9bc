// Package policy decides which approval gate an image request must pass:
// rules from the config, first match wins, matching on the image name (glob),
// the image's catalog tier (BASE, APPLICATION, FIPS, AI, … as the catalog
// reports it) and ticket fields such as environment or team.
//
// Tiers:
//   - auto: the bridge may act without the ITSM approval (a dev request still
//     awaiting approval);
//   - approval: the ITSM approval is required (ServiceNow approval=approved,
//     the configured Jira status);
//   - security: as approval, and an approver belongs to the security group;
//   - deny: the request is rejected with the rule's reason.
package policy

import (
	"fmt"
	"path"
	"slices"
	"strings"
)

// Tier is an approval gate.
type Tier string

const (
	Auto     Tier = "auto"
	Approval Tier = "approval"
	Security Tier = "security"
	Deny     Tier = "deny"
)

// rank orders tiers from least to most restrictive, for tickets naming
// several images: the strictest applies to the whole ticket.
var rank = map[Tier]int{Auto: 0, Approval: 1, Security: 2, Deny: 3}

// Rule is one policy rule. Empty criteria match anything.
type Rule struct {
	Name   string              `yaml:"name"`
	Images []string            `yaml:"images"` // globs on the catalog name: "python*", "*-fips"
	Tiers  []string            `yaml:"tiers"`  // catalog tiers, case-insensitive: BASE, FIPS, AI, …
	Fields map[string][]string `yaml:"fields"` // ticket field → accepted values; names and values case-insensitive
	Tier   Tier                `yaml:"tier"`
	Reason string              `yaml:"reason"` // deny: what the requester is told
}

// Policy is an ordered rule list with a default tier.
type Policy struct {
	Rules         []Rule `yaml:"rules"`
	Default       Tier   `yaml:"default"`        // when no rule matches (approval)
	SecurityGroup string `yaml:"security_group"` // the group a security-tier approver must belong to
}

// Input is what a rule is matched against.
type Input struct {
	Image       string            // catalog name: "python"
	CatalogTier string            // "BASE"; "" when unknown
	Fields      map[string]string // ticket fields
}

// Decision is the tier that applies and the rule that chose it.
type Decision struct {
	Tier   Tier
	Rule   string // "" when the default applied
	Reason string
}

func (d Decision) String() string {
	if d.Rule == "" {
		return string(d.Tier) + " (default)"
	}
	return fmt.Sprintf("%s (rule %q)", d.Tier, d.Rule)
}

// Validate checks the policy: known tiers, valid globs, a security group when
// a rule needs one. Errors name the rule.
func (p *Policy) Validate() error {
	if p.Default == "" {
		p.Default = Approval
	}
	if _, ok := rank[p.Default]; !ok || p.Default == Deny && len(p.Rules) == 0 {
		return fmt.Errorf("policy.default %q: want auto, approval or security", p.Default)
	}
	needGroup := p.Default == Security
	for i, r := range p.Rules {
		name := r.Name
		if name == "" {
			name = fmt.Sprintf("#%d", i+1)
		}
		if _, ok := rank[r.Tier]; !ok {
			return fmt.Errorf("policy.rules[%s].tier %q: want auto, approval, security or deny", name, r.Tier)
		}
		for _, g := range r.Images {
			if _, err := path.Match(g, "x"); err != nil {
				return fmt.Errorf("policy.rules[%s].images %q: %w", name, g, err)
			}
		}
		needGroup = needGroup || r.Tier == Security
	}
	if needGroup && strings.TrimSpace(p.SecurityGroup) == "" {
		return fmt.Errorf("policy.security_group is required when a rule (or the default) has tier security")
	}
	return nil
}

// HasAuto reports whether any rule can let a request through without the
// ITSM approval: the sources must then also list requests awaiting approval.
func (p *Policy) HasAuto() bool {
	if p == nil {
		return false
	}
	if p.Default == Auto {
		return true
	}
	return slices.ContainsFunc(p.Rules, func(r Rule) bool { return r.Tier == Auto })
}

// Decide returns the first matching rule's tier, or the default.
func (p *Policy) Decide(in Input) Decision {
	if p == nil {
		return Decision{Tier: Approval}
	}
	for i, r := range p.Rules {
		if r.matches(in) {
			name := r.Name
			if name == "" {
				name = fmt.Sprintf("#%d", i+1)
			}
			return Decision{Tier: r.Tier, Rule: name, Reason: r.Reason}
		}
	}
	d := p.Default
	if d == "" {
		d = Approval
	}
	return Decision{Tier: d}
}

// Strictest returns the most restrictive of ds (for several images).
func Strictest(ds ...Decision) Decision {
	var out Decision
	for i, d := range ds {
		if i == 0 || rank[d.Tier] > rank[out.Tier] {
			out = d
		}
	}
	return out
}

func (r Rule) matches(in Input) bool {
	if len(r.Images) > 0 && !slices.ContainsFunc(r.Images, func(g string) bool { ok, _ := path.Match(g, in.Image); return ok }) {
		return false
	}
	if len(r.Tiers) > 0 && !slices.ContainsFunc(r.Tiers, func(t string) bool { return strings.EqualFold(t, in.CatalogTier) }) {
		return false
	}
	for field, values := range r.Fields {
		got := strings.TrimSpace(lookup(in.Fields, field))
		if !slices.ContainsFunc(values, func(v string) bool { return strings.EqualFold(v, got) }) {
			return false
		}
	}
	return true
}

// lookup reads a ticket field by name, case-insensitively: ServiceNow
// variables are lower case ("environment"), Jira field names are not
// ("Environment").
func lookup(fields map[string]string, name string) string {
	if v, ok := fields[name]; ok {
		return v
	}
	for k, v := range fields {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return ""
}
