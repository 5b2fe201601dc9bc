package bench_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chainguard-dev/image-request-bridge/bench"
)

// The end-to-end benchmarks run only with -bench and BRIDGE_BENCH=1 (run.sh
// sets it): each one seeds a backlog and drives the whole bridge through it,
// which takes seconds to minutes. With -benchtime=1x each runs once.
//
//	BRIDGE_BENCH=1            run them
//	BRIDGE_BENCH_INPROC=1     run the bridge in the benchmark process rather
//	                          than in a child (so -cpuprofile sees it; no
//	                          peak memory or CPU figures then)
//	BRIDGE_BENCH_PROFILE_DIR  the child bridge writes a CPU profile per
//	                          benchmark there

func TestMain(m *testing.M) {
	if code, ok := bench.ChildMain(); ok {
		os.Exit(code)
	}
	os.Exit(m.Run())
}

func heavy(b *testing.B) {
	b.Helper()
	if os.Getenv("BRIDGE_BENCH") == "" {
		b.Skip("end-to-end benchmark: set BRIDGE_BENCH=1 (see bench/run.sh)")
	}
}

// run runs cfg in a child process, or here with BRIDGE_BENCH_INPROC.
func run(b *testing.B, cfg bench.Config, forceChild bool) bench.Outcome {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cfg.StateDir = b.TempDir()
	var (
		out bench.Outcome
		err error
	)
	if os.Getenv("BRIDGE_BENCH_INPROC") != "" && !forceChild {
		out, err = bench.RunConfig(ctx, cfg)
	} else {
		if dir := os.Getenv("BRIDGE_BENCH_PROFILE_DIR"); dir != "" {
			base := filepath.Join(dir, strings.NewReplacer("/", "_", "=", "-").Replace(b.Name()))
			cfg.CPUProfile, cfg.MemProfile = base+".cpu.pprof", base+".heap.pprof"
		}
		out, err = bench.RunChild(ctx, cfg)
	}
	if err != nil {
		b.Fatal(err)
	}
	return out
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// perTicket sums the calls to upstream (all when "") per processed ticket.
func perTicket(out bench.Outcome, prefix string) float64 {
	n := 0
	for k, v := range out.Calls {
		if strings.HasPrefix(k, prefix) {
			n += v
		}
	}
	return float64(n) / float64(max(out.Processed, 1))
}

// backlog drives one backlog through the bridge and reports its metrics.
func backlog(b *testing.B, source, mode string, size int, latency time.Duration, concurrency int, forceChild bool) {
	backlogCatalog(b, source, mode, size, size, latency, concurrency, forceChild)
}

// backlogCatalog is backlog with a catalog of `catalog` images: tickets ask
// for them in turn, so past the catalog's size images are already present.
func backlogCatalog(b *testing.B, source, mode string, size, catalog int, latency time.Duration, concurrency int, forceChild bool) {
	heavy(b)
	for range b.N {
		b.StopTimer()
		u, err := bench.StartUpstreams(latency, catalog)
		if err != nil {
			b.Fatal(err)
		}
		u.Seed(source, size)
		cfg := bench.Config{Endpoints: u.Endpoints(), Sources: []string{source}, Mode: mode, Concurrency: concurrency}
		b.StartTimer()
		out := run(b, cfg, forceChild)
		b.StopTimer()
		open := u.Open(source)
		u.Close()
		if open != 0 || out.Processed != size || out.Errors != 0 {
			b.Fatalf("%d of %d tickets closed, %d still open, %d errors", out.Processed, size, open, out.Errors)
		}
		b.ReportMetric(float64(out.Processed)/out.Wall.Seconds(), "tickets/s")
		b.ReportMetric(perTicket(out, ""), "calls/ticket")
		b.ReportMetric(perTicket(out, "chainguard "), "cg-calls/ticket")
		if source == bench.SourceJira {
			b.ReportMetric(perTicket(out, "jira "), "jira-calls/ticket")
			b.ReportMetric(perTicket(out, "jira GET transitions"), "jira-get-transitions/ticket")
		} else {
			b.ReportMetric(perTicket(out, "servicenow "), "sn-calls/ticket")
		}
		if mode == bench.ModeEngine {
			b.ReportMetric(ms(out.OwnP50), "own-p50-ms")
			b.ReportMetric(ms(out.OwnP99), "own-p99-ms")
			b.ReportMetric(ms(out.StoreP50), "store-p50-ms")
			b.ReportMetric(ms(out.StoreP99), "store-p99-ms")
		}
		if out.PeakRSS > 0 {
			b.ReportMetric(float64(out.PeakRSS)/(1<<20), "peak-MiB")
			b.ReportMetric(ms(out.CPU)/float64(out.Processed), "cpu-ms/ticket")
			b.ReportMetric(float64(out.GoSys)/(1<<20), "go-sys-MiB")
		}
		for k, v := range out.Calls {
			b.ReportMetric(float64(v)/float64(out.Processed), "call:"+strings.ReplaceAll(k, " ", "_")+"/ticket")
		}
		b.ReportMetric(0, "ns/op")
		b.Logf("%s: %d tickets in %s; calls %v", b.Name(), out.Processed, out.Wall.Round(time.Millisecond), out.Calls)
	}
}

// BenchmarkThroughput: the engine through backlogs of 1,000 and 10,000
// approved tickets, with no latency (default concurrency 4) and with 50 ms
// per upstream request (concurrency 32).
func BenchmarkThroughput(b *testing.B) {
	for _, source := range []string{bench.SourceServiceNow, bench.SourceJira} {
		for _, c := range []struct {
			latency     time.Duration
			concurrency int
		}{{0, 4}, {50 * time.Millisecond, 32}} {
			for _, size := range sizes() {
				b.Run(fmt.Sprintf("src=%s/backlog=%d/latency=%dms/C=%d", source, size, c.latency.Milliseconds(), c.concurrency), func(b *testing.B) {
					backlog(b, source, bench.ModeEngine, size, c.latency, c.concurrency, false)
				})
			}
		}
	}
}

// BenchmarkNaive: the sequential baseline (NaivePass) over the same fakes.
// With 50 ms latency it manages about ten tickets a second, so it is
// measured on a smaller backlog; its rate does not depend on the size.
func BenchmarkNaive(b *testing.B) {
	for _, c := range []struct {
		size    int
		latency time.Duration
	}{{1000, 0}, {10000, 0}, {300, 50 * time.Millisecond}} {
		b.Run(fmt.Sprintf("src=servicenow/backlog=%d/latency=%dms", c.size, c.latency.Milliseconds()), func(b *testing.B) {
			backlog(b, bench.SourceServiceNow, bench.ModeNaive, c.size, c.latency, 1, false)
		})
	}
}

// BenchmarkMemory: peak resident memory of a bridge process working through
// a 100,000-ticket backlog (always in a child process). The catalog has 2,000
// images, about the size of Chainguard's: the provisioner caches the catalog,
// so a catalog as large as the backlog would measure the catalog instead.
// Tickets past the 2,000th ask for images already present (CreateRepo
// answers ALREADY_EXISTS, then ListRepos finds the repository).
func BenchmarkMemory(b *testing.B) {
	b.Run("src=servicenow/backlog=100000/catalog=2000/latency=0ms/C=4", func(b *testing.B) {
		backlogCatalog(b, bench.SourceServiceNow, bench.ModeEngine, 100000, 2000, 0, 4, true)
	})
}

// BenchmarkWebhook: webhook-to-closed latency, one ticket at a time, through
// the real HTTP server and the engine's queue.
func BenchmarkWebhook(b *testing.B) {
	for _, c := range []struct {
		n       int
		latency time.Duration
	}{{200, 0}, {40, 50 * time.Millisecond}} {
		b.Run(fmt.Sprintf("src=servicenow/latency=%dms", c.latency.Milliseconds()), func(b *testing.B) {
			heavy(b)
			for range b.N {
				b.StopTimer()
				u, err := bench.StartUpstreams(c.latency, c.n)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				out, err := bench.Webhook(context.Background(), u, c.n, b.TempDir())
				b.StopTimer()
				u.Close()
				if err != nil {
					b.Fatal(err)
				}
				own := make([]time.Duration, len(out.Latency))
				for i := range out.Latency {
					own[i] = out.Latency[i] - out.Upstream[i]
				}
				b.ReportMetric(ms(bench.Percentile(out.Latency, 0.5)), "p50-ms")
				b.ReportMetric(ms(bench.Percentile(out.Latency, 0.99)), "p99-ms")
				b.ReportMetric(ms(bench.Percentile(out.Upstream, 0.5)), "upstream-p50-ms")
				b.ReportMetric(ms(bench.Percentile(own, 0.99)), "beyond-upstream-p99-ms")
				calls := 0
				for _, v := range out.Calls {
					calls += v
				}
				b.ReportMetric(float64(calls)/float64(c.n), "calls/ticket")
				b.ReportMetric(0, "ns/op")
				b.Logf("calls %v", out.Calls)
			}
		})
	}
}

// BenchmarkIdle: what a poll costs when nothing is approved, with both
// sources enabled and 10,000 finished tickets per source in the store.
func BenchmarkIdle(b *testing.B) {
	const done, passes = 10000, 20
	b.Run(fmt.Sprintf("src=servicenow+jira/done=%d", done), func(b *testing.B) {
		heavy(b)
		for range b.N {
			b.StopTimer()
			u, err := bench.StartUpstreams(0, 1)
			if err != nil {
				b.Fatal(err)
			}
			for range 100 {
				u.AddClosedRITM()
				u.AddDoneIssue()
			}
			b.StartTimer()
			out, err := bench.Idle(context.Background(), u, []string{bench.SourceServiceNow, bench.SourceJira}, done, passes, b.TempDir())
			b.StopTimer()
			u.Close()
			if err != nil {
				b.Fatal(err)
			}
			sum := func(prefix string) float64 {
				n := 0
				for k, v := range out.Calls {
					if strings.HasPrefix(k, prefix) {
						n += v
					}
				}
				return float64(n) / float64(passes)
			}
			b.ReportMetric(sum("servicenow "), "sn-calls/poll")
			b.ReportMetric(sum("jira "), "jira-calls/poll")
			b.ReportMetric(sum("chainguard "), "cg-calls/poll")
			b.ReportMetric(ms(bench.Percentile(out.Wall, 0.5)), "poll-p50-ms")
			for k, v := range out.Calls {
				b.ReportMetric(float64(v)/float64(passes), "call:"+strings.ReplaceAll(k, " ", "_")+"/poll")
			}
			b.ReportMetric(0, "ns/op")
			b.Logf("calls over %d polls: %v", passes, out.Calls)
		}
	})
}

// sizes are the backlogs of BenchmarkThroughput; BRIDGE_BENCH_SIZES (comma
// separated) replaces them.
func sizes() []int {
	v := os.Getenv("BRIDGE_BENCH_SIZES")
	if v == "" {
		return []int{1000, 10000}
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		var n int
		if _, err := fmt.Sscan(f, &n); err == nil && n > 0 {
			out = append(out, n)
		}
	}
	return out
}
