package store

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	gosync "sync"
	"syscall"
	"testing"
	"time"

	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// killChildEnv names the store a re-executed test binary writes to until it
// is killed (see TestKillChildWriter).
const killChildEnv = "BRIDGE_STORE_KILL_CHILD"

// killRecord is what the writer stores for ticket i, so that the parent can
// check every committed record field by field.
func killRecord(i int) (id string, state isync.State, repo string, lastErr string) {
	id = fmt.Sprintf("t%06d", i)
	state = []isync.State{isync.StateProvisioning, isync.StateProvisioned, isync.StateRejected, isync.StateDone}[i%4]
	// Large rows fill the WAL quickly, so kills also land during checkpoints.
	return id, state, "repo-" + id, strings.Repeat(strconv.Itoa(i%10), 2000+i%1000)
}

// TestKillChildWriter is the child side of TestStoreSurvivesKill: run with
// killChildEnv set, it writes tickets (claim, save, audit) in a loop and
// prints "committed N" after each one's writes have all returned. Without
// the variable it does nothing.
func TestKillChildWriter(t *testing.T) {
	path := os.Getenv(killChildEnv)
	if path == "" {
		t.Skip("child process of TestStoreSurvivesKill")
	}
	start, _ := strconv.Atoi(os.Getenv(killChildEnv + "_START"))
	ctx := context.Background()
	s, err := Open(ctx, path)
	if err != nil {
		fmt.Println("open failed:", err)
		os.Exit(2)
	}
	out := bufio.NewWriter(os.Stdout)
	for i := start; ; i++ {
		id, state, repo, lastErr := killRecord(i)
		now := t0.Add(time.Duration(i) * time.Second)
		rec, ok, err := s.Claim(ctx, "servicenow", id, "RITM"+id, "killer", now, now.Add(time.Minute))
		if err != nil || !ok {
			fmt.Println("claim failed:", ok, err)
			os.Exit(2)
		}
		rec.State, rec.Result.RepoID, rec.LastError = state, repo, lastErr
		if err := s.Save(ctx, &rec); err != nil {
			fmt.Println("save failed:", err)
			os.Exit(2)
		}
		if err := s.Append(ctx, isync.AuditEntry{Time: now, Source: "servicenow", TicketID: id, Decision: isync.DecisionProvisioned, RepoID: repo}); err != nil {
			fmt.Println("append failed:", err)
			os.Exit(2)
		}
		fmt.Fprintf(out, "committed %d\n", i)
		out.Flush()
	}
}

// TestStoreSurvivesKill SIGKILLs a process writing to the store, several
// times at different moments: each time the store reopens, passes
// PRAGMA integrity_check, and holds every record and audit row whose writes
// had returned before the kill.
func TestStoreSurvivesKill(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	path := filepath.Join(t.TempDir(), "bridge.db")
	committed := map[int]bool{}
	for round, after := range []int{1, 37, 150, 400} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKillChildWriter$", "-test.count=1")
		// Each round writes tickets of its own: the one the kill interrupted
		// may have landed unreported, and must not be written twice.
		cmd.Env = append(os.Environ(), killChildEnv+"="+path, killChildEnv+"_START="+strconv.Itoa(round*100_000))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		n := 0
		for sc.Scan() {
			line := sc.Text()
			v, ok := strings.CutPrefix(line, "committed ")
			if !ok {
				if strings.Contains(line, "failed:") {
					t.Fatalf("round %d: child: %s", round, line)
				}
				continue
			}
			i, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("round %d: child said %q", round, line)
			}
			committed[i] = true
			if n++; n == after {
				// Mid-loop: the next transaction is very likely in flight.
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
			}
		}
		werr := cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: the writer was not killed (%v)\n%s", round, werr, stderr.String())
		}
		checkKilledStore(t, path, committed)
	}
	if len(committed) < 1+37+150+400 {
		t.Fatalf("only %d records were committed", len(committed))
	}
}

func checkKilledStore(t *testing.T, path string, committed map[int]bool) {
	t.Helper()
	ctx := context.Background()
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("reopening after SIGKILL: %v", err)
	}
	defer s.Close()
	var check string
	if err := s.db.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check after SIGKILL: %q, %v", check, err)
	}
	audited := map[string]int{}
	if err := s.Audit(ctx, AuditFilter{}, func(e isync.AuditEntry) error { audited[e.TicketID]++; return nil }); err != nil {
		t.Fatal(err)
	}
	for i := range committed {
		id, state, repo, lastErr := killRecord(i)
		rec, err := s.Get(ctx, "servicenow", id)
		if err != nil {
			t.Fatalf("committed record %s: %v", id, err)
		}
		if rec.State != state || rec.Result.RepoID != repo || rec.LastError != lastErr || rec.Key != "RITM"+id || rec.RequestID != RequestID("servicenow", id) {
			t.Fatalf("committed record %s came back as state %s repo %q key %q (error of %d bytes)", id, rec.State, rec.Result.RepoID, rec.Key, len(rec.LastError))
		}
		if audited[id] != 1 {
			t.Fatalf("committed record %s has %d audit rows, want 1", id, audited[id])
		}
	}
}

var (
	templateOnce  gosync.Once
	templateBytes []byte
	templateErr   error
)

// realStore returns the path of a copy of a real store holding 300 tickets
// and their audit rows, enough to span many pages. The store is built once
// (closed, so its WAL is checkpointed into the file) and copied for each test.
func realStore(t *testing.T) string {
	t.Helper()
	templateOnce.Do(func() { templateBytes, templateErr = buildTemplateStore(300) })
	if templateErr != nil {
		t.Fatal(templateErr)
	}
	path := filepath.Join(t.TempDir(), "bridge.db")
	if err := os.WriteFile(path, templateBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func buildTemplateStore(rows int) ([]byte, error) {
	dir, err := os.MkdirTemp("", "bridge-store-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "bridge.db")
	ctx := context.Background()
	s, err := Open(ctx, path)
	if err != nil {
		return nil, err
	}
	for i := 0; i < rows; i++ {
		id, state, repo, lastErr := killRecord(i)
		rec, _, err := s.Claim(ctx, "jira", id, "IMG-"+strconv.Itoa(i), "a", t0, t0.Add(time.Minute))
		if err != nil {
			return nil, err
		}
		rec.State, rec.Result.RepoID, rec.LastError = state, repo, lastErr[:200]
		if err := s.Save(ctx, &rec); err != nil {
			return nil, err
		}
		if err := s.Append(ctx, isync.AuditEntry{Time: t0, Source: "jira", TicketID: id, Decision: isync.DecisionRejected, Detail: lastErr[:300]}); err != nil {
			return nil, err
		}
	}
	if err := s.Close(); err != nil {
		return nil, err
	}
	if _, err := os.Stat(path + "-wal"); err == nil {
		return nil, errors.New("the WAL was not checkpointed on close")
	}
	return os.ReadFile(path)
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// A real store with random bytes written over its middle is refused at Open
// with a message that says it is corrupt and names the file; it is never
// reset, repaired or migrated: the file is byte for byte what it was.
func TestCorruptStoreRefused(t *testing.T) {
	for seed := uint64(1); seed <= 8; seed++ {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			path := realStore(t)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(seed, 0x1b2))
			// Random bytes over a stretch in the middle of the file: past the
			// 100-byte header, across page boundaries.
			n := 2048 + rng.IntN(4096)
			off := len(data)/4 + rng.IntN(len(data)/2-n)
			for i := off; i < off+n; i++ {
				data[i] = byte(rng.Uint32())
			}
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			before := fileSum(t, path)
			s, err := Open(context.Background(), path)
			if err == nil {
				s.Close()
				t.Fatalf("Open accepted a store with %d random bytes at offset %d", n, off)
			}
			if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, "corrupt") {
				t.Errorf("Open error does not say the store at its path is corrupt: %v", err)
			}
			if fileSum(t, path) != before {
				t.Errorf("the corrupt store was modified by the refused Open")
			}
		})
	}
}

// A store cut short (a bad copy, a full disk during a restore) is refused
// the same way.
func TestTruncatedStoreRefused(t *testing.T) {
	path := realStore(t)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, st.Size()/2); err != nil {
		t.Fatal(err)
	}
	before := fileSum(t, path)
	if s, err := Open(context.Background(), path); err == nil {
		s.Close()
		t.Fatal("Open accepted a store cut in half")
	} else if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("Open error: %v", err)
	} else {
		t.Logf("refused: %v", err)
	}
	if fileSum(t, path) != before {
		t.Errorf("the truncated store was modified by the refused Open")
	}
}

// A store written by a newer bridge (higher schema version) is refused with
// a message that says so, and left exactly as it was.
func TestNewerSchemaRefusedUntouched(t *testing.T) {
	path := realStore(t)
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	future := SchemaVersion() + 1
	if _, err := db.Exec(fmt.Sprintf("PRAGMA user_version = %d", future)); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE TABLE from_the_future (x TEXT)"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	before := fileSum(t, path)
	_, err = Open(context.Background(), path)
	if err == nil || !strings.Contains(err.Error(), "newer than this bridge supports") || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open of a newer store: %v", err)
	}
	if fileSum(t, path) != before {
		t.Errorf("the newer store was modified by the refused Open")
	}
}

// A healthy store passes the open-time check quickly enough not to matter
// at start-up.
func TestIntegrityCheckAtOpenIsCheap(t *testing.T) {
	path := realStore(t)
	start := time.Now()
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("opening a 300-ticket store took %s", d)
	}
}
