package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// childEnv carries a child's Config; its presence makes the test binary a
// child bridge (see ChildMain).
const childEnv = "BRIDGE_BENCH_CHILD"

// resultPrefix marks the child's result line on its standard output.
const resultPrefix = "BENCH-RESULT "

// ChildMain runs the bridge when this process was started by RunChild: it
// reports false when it was not. Call it first thing in TestMain and exit
// with the code it returns.
func ChildMain() (int, bool) {
	raw := os.Getenv(childEnv)
	if raw == "" {
		return 0, false
	}
	var cfg Config
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "bench child: bad config:", err)
		return 2, true
	}
	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench child:", err)
			return 2, true
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "bench child:", err)
			return 2, true
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	out, err := RunConfig(context.Background(), cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench child:", err)
		return 1, true
	}
	out.PeakRSS = vmHWM()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	out.GoSys, out.GoHeapInuse = int64(ms.Sys), int64(ms.HeapInuse)
	if cfg.MemProfile != "" {
		if f, err := os.Create(cfg.MemProfile); err == nil {
			_ = pprof.Lookup("heap").WriteTo(f, 0)
			f.Close()
		}
	}
	b, _ := json.Marshal(out)
	fmt.Println(resultPrefix + string(b))
	return 0, true
}

// RunChild runs cfg in a child process, the current executable re-executed,
// so that its peak resident memory and CPU time are the bridge's alone.
func RunChild(ctx context.Context, cfg Config) (Outcome, error) {
	raw, err := json.Marshal(cfg)
	if err != nil {
		return Outcome{}, err
	}
	exe, err := os.Executable()
	if err != nil {
		return Outcome{}, err
	}
	cmd := exec.CommandContext(ctx, exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(raw))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return Outcome{}, fmt.Errorf("bench child: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	var out Outcome
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	found := false
	for sc.Scan() {
		if line, ok := strings.CutPrefix(sc.Text(), resultPrefix); ok {
			if err := json.Unmarshal([]byte(line), &out); err != nil {
				return out, err
			}
			found = true
		}
	}
	if !found {
		return out, fmt.Errorf("bench child printed no result: %s", strings.TrimSpace(stderr.String()))
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		out.CPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		if out.PeakRSS == 0 {
			out.PeakRSS = ru.Maxrss * 1024
		}
	}
	return out, nil
}

// vmHWM is this process's peak resident set size, from /proc/self/status.
func vmHWM() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return 0
}
