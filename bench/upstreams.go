// Package bench measures the bridge end to end: the real engine, SQLite
// store, ServiceNow and Jira sources and Chainguard provisioner against the
// in-process fakes over loopback HTTP and gRPC, with an optional fixed
// latency per upstream request. The benchmarks live in bench_test.go;
// run.sh runs them and prints one summary table.
//
// The fakes run in the benchmark process. The bridge runs either in the same
// process or, to measure its own peak memory and CPU, in a child process (the
// test binary re-executed) that reaches the fakes over loopback like a real
// deployment reaches its upstreams.
package bench

import (
	"fmt"
	"time"

	registry "chainguard.dev/sdk/proto/platform/registry/v1"

	cgfake "github.com/chainguard-dev/image-request-bridge/internal/fake/chainguard"
	jfake "github.com/chainguard-dev/image-request-bridge/internal/fake/jira"
	snfake "github.com/chainguard-dev/image-request-bridge/internal/fake/servicenow"
)

// Identities shared by the fakes and the bridge.
const (
	CatalogItem = "3f1dd0320a0a0b99000a53f7604a2ef9"
	OrgID       = "0123456789abcdef0123456789abcdef01234567"
	OrgName     = "example.com"
	CGToken     = "cg-bench-token"
	SNUser      = "svc.bridge"
	SNPassword  = "sn-bench-password"
	JiraJQL     = `project = IMG AND status = Approved ORDER BY key`
)

// Upstreams are the three fakes, seeded with a backlog.
type Upstreams struct {
	SN *snfake.Server
	J  *jfake.Server
	CG *cgfake.Server

	// Images are the catalog images, one per ticket to come.
	Images []string
	next   int
}

// StartUpstreams starts the fakes with the given latency per request and a
// catalog large enough for catalogSize distinct requests, and none of the
// request logs that would grow with the run.
func StartUpstreams(latency time.Duration, catalogSize int) (*Upstreams, error) {
	u := &Upstreams{}
	catalog := make([]cgfake.CatalogImage, catalogSize)
	u.Images = make([]string, catalogSize)
	for i := range catalog {
		name := fmt.Sprintf("bench-%06d", i)
		u.Images[i] = name
		catalog[i] = cgfake.CatalogImage{Name: name, Tier: registry.CatalogTier_BASE, ActiveTags: []string{"latest", "latest-dev"}}
	}
	cg, err := cgfake.New(cgfake.WithToken(CGToken), cgfake.WithOrg(OrgID, OrgName), cgfake.WithCatalog(catalog...),
		cgfake.WithMaxRepos(catalogSize+1000), cgfake.WithLatency(latency))
	if err != nil {
		return nil, err
	}
	u.CG = cg
	u.SN = snfake.New(snfake.WithBasicAuth(SNUser, SNPassword), snfake.WithLatency(latency), snfake.WithoutRequestLog())
	u.J = jfake.New(jfake.WithDeployment(jfake.Cloud), jfake.WithLatency(latency), jfake.WithoutRequestLog())
	return u, nil
}

// Close stops the fakes.
func (u *Upstreams) Close() {
	u.SN.Close()
	u.J.Close()
	u.CG.Close()
}

// nextImage returns a catalog image no ticket has asked for yet, so that
// every ticket provisions (one CreateRepo) rather than finding its image
// already there (CreateRepo, then ListRepos).
func (u *Upstreams) nextImage() string {
	img := u.Images[u.next%len(u.Images)]
	u.next++
	return img
}

// AddRITM adds one approved RITM of the catalog item and returns its sys_id.
func (u *Upstreams) AddRITM() string {
	r := u.SN.AddRITM(snfake.RITM{CatItem: CatalogItem, RequestedFor: "62826bf03710200044e0bfc8bcbe5df1",
		Variables: map[string]string{"image_name": u.nextImage(), "justification": "build pipeline", "team": "platform", "environment": "dev"}})
	return r.SysID
}

// AddClosedRITM adds a RITM closed before the bridge saw it.
func (u *Upstreams) AddClosedRITM() {
	u.SN.AddRITM(snfake.RITM{CatItem: CatalogItem, State: snfake.StateClosedComplete, Active: "false",
		Variables: map[string]string{"image_name": "python", "justification": "old"}})
}

// AddIssue adds one approved Jira issue and returns its id.
func (u *Upstreams) AddIssue() string {
	i := u.J.AddIssue(jfake.Issue{Summary: "Image request", Fields: map[string]any{
		u.J.FieldID("Image name"):    u.nextImage(),
		u.J.FieldID("Justification"): "build pipeline",
	}})
	return i.ID
}

// AddDoneIssue adds an issue that is already done.
func (u *Upstreams) AddDoneIssue() {
	u.J.AddIssue(jfake.Issue{Summary: "Image request", Status: jfake.StatusDone, Resolution: "Done", Fields: map[string]any{
		u.J.FieldID("Image name"): "python",
	}})
}

// Seed adds n approved tickets to the source's fake.
func (u *Upstreams) Seed(source string, n int) {
	for range n {
		if source == SourceJira {
			u.AddIssue()
		} else {
			u.AddRITM()
		}
	}
}

// Open counts the tickets the bridge has not closed yet.
func (u *Upstreams) Open(source string) int {
	n := 0
	if source == SourceJira {
		for _, i := range u.J.Issues() {
			if i.Status == jfake.StatusApproved {
				n++
			}
		}
		return n
	}
	for _, r := range u.SN.RITMs() {
		if r.Active == "true" && r.Approval == "approved" && r.CatItem == CatalogItem {
			n++
		}
	}
	return n
}

// Endpoints tells a bridge where the fakes are.
func (u *Upstreams) Endpoints() Endpoints {
	return Endpoints{ServiceNow: u.SN.URL(), Jira: u.J.URL(), Chainguard: u.CG.Addr()}
}

// Endpoints are the fakes' addresses.
type Endpoints struct {
	ServiceNow string `json:"servicenow"`
	Jira       string `json:"jira"`
	Chainguard string `json:"chainguard"`
}
