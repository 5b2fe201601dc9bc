package policy

import "testing"

func TestDecideFirstMatchWins(t *testing.T) {
	p := &Policy{
		Rules: []Rule{
			{Name: "no-ai", Tiers: []string{"AI"}, Tier: Deny, Reason: "AI images need a platform review"},
			{Name: "fips", Images: []string{"*-fips"}, Tier: Security},
			{Name: "dev", Fields: map[string][]string{"environment": {"dev", "staging"}}, Tier: Auto},
			{Name: "dev-ai", Tiers: []string{"ai"}, Fields: map[string][]string{"environment": {"dev"}}, Tier: Auto},
		},
		SecurityGroup: "Security Review",
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		in   Input
		tier Tier
		rule string
	}{
		{Input{Image: "pytorch", CatalogTier: "AI", Fields: map[string]string{"environment": "dev"}}, Deny, "no-ai"},
		{Input{Image: "python-fips", CatalogTier: "FIPS", Fields: map[string]string{"environment": "dev"}}, Security, "fips"},
		{Input{Image: "python", CatalogTier: "BASE", Fields: map[string]string{"environment": "Staging "}}, Auto, "dev"},
		{Input{Image: "python", CatalogTier: "BASE", Fields: map[string]string{"environment": "prod"}}, Approval, ""},
		{Input{Image: "python"}, Approval, ""},
	} {
		d := p.Decide(c.in)
		if d.Tier != c.tier || d.Rule != c.rule {
			t.Errorf("Decide(%+v) = %v, want %s by %q", c.in, d, c.tier, c.rule)
		}
	}
	if !p.HasAuto() {
		t.Error("HasAuto false")
	}
	if got := Strictest(Decision{Tier: Auto}, Decision{Tier: Security, Rule: "fips"}, Decision{Tier: Approval}); got.Tier != Security {
		t.Errorf("Strictest = %v", got)
	}
}

func TestValidate(t *testing.T) {
	for name, p := range map[string]*Policy{
		"bad tier":       {Rules: []Rule{{Tier: "maybe"}}},
		"bad glob":       {Rules: []Rule{{Images: []string{"[py"}, Tier: Auto}}},
		"security group": {Rules: []Rule{{Tier: Security}}},
		"bad default":    {Default: "sometimes"},
	} {
		if err := p.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
