// Command summary reads the output of the bench package's benchmarks
// (go test -bench) on standard input and prints one markdown table of the
// measurements against their targets. run.sh pipes the benchmarks into it.
//
//	summary [-machine "text"] [-others PCT] < bench.out
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// result is one benchmark line: its name's parameters and its metrics.
type result struct {
	name    string
	params  map[string]string
	metrics map[string]float64
}

var lineRe = regexp.MustCompile(`^(Benchmark\S+?)(-\d+)?\s+\d+\s+(.*)$`)

func parse(r io.Reader) []result {
	var out []result
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<22)
	for sc.Scan() {
		m := lineRe.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		res := result{name: m[1], params: map[string]string{}, metrics: map[string]float64{}}
		for _, part := range strings.Split(m[1], "/")[1:] {
			if k, v, ok := strings.Cut(part, "="); ok {
				res.params[k] = v
			}
		}
		f := strings.Fields(m[3])
		for i := 0; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				res.metrics[f[i+1]] = v
			}
		}
		out = append(out, res)
	}
	return out
}

func (r result) kind() string {
	k, _, _ := strings.Cut(strings.TrimPrefix(r.name, "Benchmark"), "/")
	return k
}

func (r result) int(p string) int {
	n, _ := strconv.Atoi(strings.TrimSuffix(r.params[p], "ms"))
	return n
}

// table accumulates rows.
type table struct{ rows [][5]string }

func (t *table) add(measure, scenario, value, target string, ok *bool) {
	verdict := ""
	if ok != nil {
		verdict = "❌"
		if *ok {
			verdict = "✅"
		}
	}
	t.rows = append(t.rows, [5]string{measure, scenario, value, target, verdict})
}

func check(b bool) *bool { return &b }

func (t *table) print(w io.Writer) {
	fmt.Fprintln(w, "| measurement | scenario | result | target | met |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for _, r := range t.rows {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", r[0], r[1], r[2], r[3], r[4])
	}
}

func short(src string) string {
	switch src {
	case "servicenow":
		return "ServiceNow"
	case "jira":
		return "Jira"
	}
	return src
}

func scenario(r result) string {
	s := short(r.params["src"])
	if n := r.int("backlog"); n > 0 {
		s += fmt.Sprintf(", %s tickets", thousands(n))
	}
	if _, ok := r.params["latency"]; ok {
		s += fmt.Sprintf(", %d ms", r.int("latency"))
	}
	if c := r.params["C"]; c != "" {
		s += ", C=" + c
	}
	return s
}

func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// breakdown lists the per-ticket (or per-poll) call metrics of one upstream.
func breakdown(r result, upstream, per string) string {
	var parts []string
	for k, v := range r.metrics {
		name, ok := strings.CutPrefix(k, "call:"+upstream+"_")
		if !ok || !strings.HasSuffix(name, "/"+per) {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %.3g", strings.ReplaceAll(strings.TrimSuffix(name, "/"+per), "_", " "), v))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

func main() {
	machine := flag.String("machine", "", "machine description for the first row")
	others := flag.String("others", "", "share of the machine's CPU used by other processes during the run")
	flag.Parse()
	results := parse(os.Stdin)
	t := &table{}
	if *machine != "" {
		t.add("machine", *machine, "", "", nil)
	}
	if *others != "" {
		t.add("machine load", "CPU used by other processes during the run (shared host)", *others, "", nil)
	}

	naive := map[int]float64{} // latency → tickets/s
	for _, r := range results {
		if r.kind() == "Naive" {
			naive[r.int("latency")] = r.metrics["tickets/s"]
		}
	}
	var memRows []result
	for _, r := range results {
		if r.kind() != "Throughput" {
			continue
		}
		lat, c := r.int("latency"), r.int("C")
		tps, calls := r.metrics["tickets/s"], r.metrics["calls/ticket"]
		target, tgt := 1000.0, "≥ 1,000 tickets/s"
		if lat > 0 {
			target = 0.9 * float64(c) / (calls * float64(lat) / 1000)
			tgt = fmt.Sprintf("≥ %.0f tickets/s (90%% of %d / (%.3f × %d ms))", target, c, calls, lat)
		}
		val := fmt.Sprintf("%.0f tickets/s", tps)
		if n := naive[lat]; n > 0 && r.params["src"] == "servicenow" {
			val += fmt.Sprintf(" (naive %.0f, ×%.1f)", n, tps/n)
		}
		t.add("throughput", scenario(r), val, tgt, check(tps >= target))
		if r.int("backlog") >= 10000 {
			up := "sn"
			if r.params["src"] == "jira" {
				up = "jira"
			}
			srcCalls := r.metrics[up+"-calls/ticket"]
			detail := fmt.Sprintf("%.3f = %s %.3f (%s) + Chainguard %.3f (%s)", calls, short(r.params["src"]), srcCalls,
				breakdown(r, map[string]string{"sn": "servicenow", "jira": "jira"}[up], "ticket"), r.metrics["cg-calls/ticket"], breakdown(r, "chainguard", "ticket"))
			t.add("upstream calls per ticket", scenario(r), detail, "≤ 2.05", check(calls <= 2.05))
			p99 := r.metrics["own-p99-ms"]
			t.add("bridge's own time per ticket", scenario(r),
				fmt.Sprintf("p50 %.2f ms, p99 %.2f ms (of which store p50 %.2f, p99 %.2f)", r.metrics["own-p50-ms"], p99, r.metrics["store-p50-ms"], r.metrics["store-p99-ms"]),
				"p99 ≤ 5 ms", check(p99 <= 5))
		}
		if r.metrics["peak-MiB"] > 0 && lat == 0 && r.params["src"] == "servicenow" {
			memRows = append(memRows, r)
		}
	}
	for _, r := range results {
		if r.kind() == "Naive" {
			t.add("naive sequential baseline", scenario(r), fmt.Sprintf("%.0f tickets/s, %.3f calls/ticket", r.metrics["tickets/s"], r.metrics["calls/ticket"]), "", nil)
		}
	}
	for _, r := range results {
		if r.kind() == "Webhook" {
			lat := r.int("latency")
			beyond := r.metrics["beyond-upstream-p99-ms"]
			t.add("webhook to closed", scenario(r),
				fmt.Sprintf("p50 %.1f ms, p99 %.1f ms; upstream p50 %.1f ms (%.2f calls); beyond upstream p99 %.1f ms",
					r.metrics["p50-ms"], r.metrics["p99-ms"], r.metrics["upstream-p50-ms"], r.metrics["calls/ticket"], beyond),
				fmt.Sprintf("≤ 200 ms + upstream (%d ms latency)", lat), check(beyond <= 200))
		}
	}
	for _, r := range results {
		if r.kind() == "Memory" {
			memRows = append(memRows, r)
		}
	}
	if len(memRows) > 0 {
		sort.Slice(memRows, func(i, j int) bool { return memRows[i].int("backlog") < memRows[j].int("backlog") })
		var parts []string
		peak, biggest := 0.0, 0
		for _, r := range memRows {
			parts = append(parts, fmt.Sprintf("%s: %.0f MiB", thousands(r.int("backlog")), r.metrics["peak-MiB"]))
			if r.int("backlog") >= biggest {
				biggest, peak = r.int("backlog"), r.metrics["peak-MiB"]
			}
		}
		t.add("peak resident memory (VmHWM of the bridge process)", "ServiceNow, 0 ms, C=4, by backlog", strings.Join(parts, "; "),
			"≤ 150 MiB at 100,000, sublinear", check(peak <= 150 && biggest >= 100000))
	}
	for _, r := range results {
		if r.kind() == "Memory" {
			t.add("throughput", scenario(r), fmt.Sprintf("%.0f tickets/s, %.3f calls/ticket, bridge CPU %.2f ms/ticket", r.metrics["tickets/s"], r.metrics["calls/ticket"], r.metrics["cpu-ms/ticket"]), "", nil)
		}
	}
	for _, r := range results {
		if r.kind() != "Idle" {
			continue
		}
		sn, jr, cg := r.metrics["sn-calls/poll"], r.metrics["jira-calls/poll"], r.metrics["cg-calls/poll"]
		t.add("idle cost per poll", fmt.Sprintf("ServiceNow + Jira, nothing approved, %s done tickets each in the store", thousands(r.int("done"))),
			fmt.Sprintf("ServiceNow %.2f (%s), Jira %.2f (%s), Chainguard %.2f; %.2f ms a poll", sn, breakdown(r, "servicenow", "poll"), jr, breakdown(r, "jira", "poll"), cg, r.metrics["poll-p50-ms"]),
			"1 listing call per source", check(sn == 1 && jr == 1 && cg == 0))
	}
	for _, r := range results {
		if r.metrics["cpu-ms/ticket"] > 0 && r.kind() == "Throughput" && r.int("backlog") >= 10000 {
			t.add("bridge CPU per ticket", scenario(r), fmt.Sprintf("%.2f ms (CPU-bound ceiling on 2 cores ≈ %.0f tickets/s)", r.metrics["cpu-ms/ticket"], 2000/r.metrics["cpu-ms/ticket"]), "", nil)
		}
	}
	t.print(os.Stdout)
}
