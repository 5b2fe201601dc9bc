// Package campaign holds the reliability campaigns: the real bridge binary
// against the fakes, killed and faulted, with the invariants counted. Short
// versions run in `go test ./...` (and none with -short);
// BRIDGE_CAMPAIGN=long runs them at full size (see README, Reliability).
// Each campaign logs its random seed; BRIDGE_CAMPAIGN_SEED=<seed> runs it
// again with the same kill moments and fault draws.
package campaign

import (
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	cgfake "github.com/chainguard-dev/image-request-bridge/internal/fake/chainguard"
	jfake "github.com/chainguard-dev/image-request-bridge/internal/fake/jira"
	snfake "github.com/chainguard-dev/image-request-bridge/internal/fake/servicenow"
)

var bridgeBin string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run()) // every campaign skips: no binary to build
	}
	dir, err := os.MkdirTemp("", "bridge-campaign-")
	if err != nil {
		panic(err)
	}
	bridgeBin = filepath.Join(dir, "bridge")
	if out, err := exec.Command("go", "build", "-o", bridgeBin, "../../cmd/bridge").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building bridge: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func long() bool { return os.Getenv("BRIDGE_CAMPAIGN") == "long" }

// seedEnv names the environment variable that sets a campaign's seed.
const seedEnv = "BRIDGE_CAMPAIGN_SEED"

// campaign skips t under -short, and returns its seed: BRIDGE_CAMPAIGN_SEED
// if set, else a new one. The seed is logged so that a failing run can be
// repeated.
func campaign(t *testing.T) uint64 {
	t.Helper()
	if testing.Short() {
		t.Skip("campaign: runs the bridge binary for minutes; skipped with -short")
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv(seedEnv); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q is not an unsigned integer", seedEnv, v)
		}
		seed = s
	}
	t.Logf("campaign seed %d (repeat with %s=%d)", seed, seedEnv, seed)
	return seed
}

const (
	catItem = "3f1dd0320a0a0b99000a53f7604a2ef9"
	orgID   = "0123456789abcdef0123456789abcdef01234567"
	cgTok   = "campaign-cg-token"
	snPass  = "campaign-sn-password"
)

// world is the fakes and a config for the bridge binary.
type world struct {
	sn     *snfake.Server
	jf     *jfake.Server
	cg     *cgfake.Server
	dir    string
	config string
	ritms  []string
	issues []string
}

func newWorld(t *testing.T, tickets int, cgOpts ...cgfake.Option) *world {
	t.Helper()
	w := &world{dir: t.TempDir()}
	// Upstream latency keeps tickets in flight long enough for kills to land
	// between every two steps.
	w.sn = snfake.New(snfake.WithBasicAuth("svc.bridge", snPass), snfake.WithLatency(15*time.Millisecond))
	t.Cleanup(w.sn.Close)
	w.jf = jfake.New(jfake.WithDeployment(jfake.Cloud), jfake.WithLatency(15*time.Millisecond))
	t.Cleanup(w.jf.Close)
	cg, err := cgfake.New(append([]cgfake.Option{cgfake.WithToken(cgTok), cgfake.WithOrg(orgID, "example.com"), cgfake.WithLatency(15 * time.Millisecond)}, cgOpts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cg.Close)
	w.cg = cg
	var images []string
	for _, c := range cgfake.DefaultCatalog() {
		images = append(images, c.Name)
	}
	for i := 0; i < tickets; i++ {
		img := images[i%len(images)]
		if i%2 == 0 {
			w.ritms = append(w.ritms, w.sn.AddRITM(snfake.RITM{CatItem: catItem, Variables: map[string]string{"image_name": img}}).SysID)
		} else {
			w.issues = append(w.issues, w.jf.AddIssue(jfake.Issue{Fields: map[string]any{w.jf.FieldID("Image name"): img}}).Key)
		}
	}
	cfg := fmt.Sprintf(`
bridge: { instance_id: campaign, concurrency: 4, lease: 30s, backoff: { min: 1s, max: 5s } }
log: { level: warn, format: json }
state: { dsn: %q }
chainguard: { api_url: %q, org_id: %q, org_name: example.com, token: %q, rate_limit: { requests_per_second: -1 } }
servicenow:
  enabled: true
  instance_url: %q
  username: svc.bridge
  password: %q
  catalog_item: %q
  schedule: "@every 1s"
  timeout: 2s
  rate_limit: { requests_per_second: -1 }
jira:
  enabled: true
  url: %q
  deployment: cloud
  email: %q
  api_token: %q
  jql: project = IMG AND status = Approved
  fields: { image: Image name, justification: Justification }
  schedule: "@every 1s"
  timeout: 2s
  rate_limit: { requests_per_second: -1 }
server: { listen: "127.0.0.1:0" }
`, filepath.Join(w.dir, "bridge.db"), cg.Addr(), orgID, cgTok, w.sn.URL(), snPass, catItem, w.jf.URL(), jfake.DefaultEmail, jfake.DefaultAPIToken)
	w.config = filepath.Join(w.dir, "config.yaml")
	if err := os.WriteFile(w.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return w
}

// tally counts the invariants over every ticket.
type tally struct {
	open, lost, dupNotes, noNote int
	creates, repos, images       int
	dups                         []string // tickets with more than one note (or requester comment)
}

func (w *world) tally() tally {
	var t tally
	for _, id := range w.ritms {
		r, ok := w.sn.RITM(id)
		switch {
		case !ok:
			t.lost++
		case r.State == "1":
			t.open++
		}
		switch n := len(w.sn.WorkNotes(id)); {
		case n == 0:
			t.noNote++
		case n > 1 || len(w.sn.Comments(id)) > 1: // the requester's comment, once too
			t.dupNotes++
			t.dups = append(t.dups, r.Number)
		}
	}
	for _, k := range w.issues {
		is, ok := w.jf.Issue(k)
		switch {
		case !ok:
			t.lost++
		case is.Status == "Approved":
			t.open++
		}
		switch n := len(w.jf.Comments(k)); {
		case n == 0:
			t.noNote++
		case n > 1:
			t.dupNotes++
			t.dups = append(t.dups, k)
		}
	}
	t.creates = w.cg.CountCalls("CreateRepo")
	t.repos = len(w.cg.OrgRepos())
	seen := map[string]bool{}
	for _, r := range w.cg.OrgRepos() {
		if seen[r.GetName()] {
			t.images = -1 // two repos for one image: a duplicate provisioning effect
		}
		seen[r.GetName()] = true
	}
	return t
}

// TestCrashCampaign: `bridge run` SIGKILLed at random moments and restarted
// until the backlog drains. Nothing is lost, provisioned twice or noted twice.
func TestCrashCampaign(t *testing.T) {
	tickets, kills := 120, 5
	if long() {
		tickets, kills = 1000, 25
	}
	seed := campaign(t)
	w := newWorld(t, tickets)
	rng := rand.New(rand.NewPCG(seed, 7))
	t.Logf("campaign: %d tickets (ServiceNow and Jira), %d kills", tickets, kills)
	var stderr bytes.Buffer
	var mu sync.Mutex
	start := func() *exec.Cmd {
		cmd := exec.Command(bridgeBin, "run", "--config", w.config)
		cmd.Stdout, cmd.Stderr = &lockedWriter{&mu, &stderr}, &lockedWriter{&mu, &stderr}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	began := time.Now()
	for k := 0; k < kills; k++ {
		cmd := start()
		time.Sleep(time.Duration(150+rng.IntN(700)) * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
	}
	cmd := start()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(4 * time.Minute)
wait:
	for time.Now().Before(deadline) && w.tally().open > 0 {
		select {
		case err := <-exited:
			mu.Lock()
			out := tail(stderr.String(), 4000)
			mu.Unlock()
			t.Fatalf("bridge run exited early (%v):\n%s", err, out)
			break wait
		case <-time.After(200 * time.Millisecond):
		}
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	<-exited
	got := w.tally()
	fmt.Printf("crash campaign: %d tickets, %d SIGKILLs, %s: lost %d, left open %d, duplicate result notes %d, tickets without a note %d, duplicate repositories %d; CreateRepo calls %d (%.2f per ticket) for %d repositories\n",
		tickets, kills, time.Since(began).Round(time.Second), got.lost, got.open, got.dupNotes, got.noNote, max(0, -got.images), got.creates, float64(got.creates)/float64(tickets), got.repos)
	if got.lost != 0 || got.open != 0 || got.dupNotes != 0 || got.noNote != 0 || got.images < 0 {
		mu.Lock()
		out := tail(stderr.String(), 4000)
		mu.Unlock()
		t.Fatalf("invariants broken: %+v\nbridge output (tail):\n%s", got, out)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return strings.TrimSpace(s)
}
