package store

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// benchStore opens a file store holding `done` finished records.
func benchStore(b *testing.B, done int) *SQLite {
	b.Helper()
	ctx := context.Background()
	st, err := Open(ctx, filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	now := time.Now()
	for i := range done {
		id := fmt.Sprintf("done%028d", i)
		rec, _, err := st.Claim(ctx, "servicenow", id, "RITM", "seed", now, now.Add(time.Minute))
		if err != nil {
			b.Fatal(err)
		}
		rec.State = isync.StateDone
		if err := st.Save(ctx, &rec); err != nil {
			b.Fatal(err)
		}
	}
	return st
}

// BenchmarkTicketLifecycle is the store work of one provisioned ticket, in
// the engine's order: claimed and marked provisioning (ClaimStart);
// provisioned with its audit row; done with its audit row, the lease ended in
// the same commit. It reports the
// WAL frames (pages written) per ticket: their writes are most of a commit's
// cost.
func BenchmarkTicketLifecycle(b *testing.B) {
	for _, existing := range []int{0, 10000} {
		b.Run(fmt.Sprintf("existing=%d", existing), func(b *testing.B) {
			st := benchStore(b, existing)
			frames := walFrames(b, st)
			b.ResetTimer()
			for i := range b.N {
				lifecycle(b, st, i)
			}
			b.StopTimer()
			b.ReportMetric(float64(frames())/float64(b.N), "wal-frames/ticket")
		})
	}
}

// BenchmarkTicketLifecycleConcurrent is the same work from 4 and 32
// goroutines at once (the engine's default concurrency, and the one of the
// 50 ms benchmarks): the writes that wait meanwhile are committed together.
func BenchmarkTicketLifecycleConcurrent(b *testing.B) {
	for _, workers := range []int{4, 32} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			st := benchStore(b, 0)
			frames := walFrames(b, st)
			commits := st.w.commits.Load()
			var next atomic.Int64
			b.SetParallelism(max(workers/runtime.GOMAXPROCS(0), 1))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					lifecycle(b, st, int(next.Add(1)))
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(frames())/float64(b.N), "wal-frames/ticket")
			b.ReportMetric(float64(st.w.commits.Load()-commits)/float64(b.N), "commits/ticket")
		})
	}
}

// lifecycle is the store work of ticket i.
func lifecycle(b *testing.B, st *SQLite, i int) {
	ctx := context.Background()
	// Ids in hash order, as sys_ids are: each ticket lands on its own pages,
	// not next to the previous one's.
	id := RequestID("bench", strconv.Itoa(i))[4:] + "0000000000000000"
	now := time.Now()
	until := now.Add(5 * time.Minute)
	rec, _, err := st.ClaimStart(ctx, "servicenow", id, "RITM", "bench", now, until,
		isync.Record{State: isync.StateProvisioning, Attempts: 1, Image: "python"})
	if err != nil {
		b.Fatal(err)
	}
	entry := isync.AuditEntry{Time: now, Source: "servicenow", TicketID: id, Key: "RITM", RequestID: rec.RequestID,
		Requester: "dev@example.com", Image: "python", Justification: "build pipeline", Decision: isync.DecisionProvisioned,
		RepoID: "repo", Detail: "provisioned", Actor: "bench"}
	rec.State, rec.Result = isync.StateProvisioned, isync.Result{RepoID: "repo", PullRef: "cgr.dev/x/python:latest", Method: "CreateRepo"}
	if err := st.Save(ctx, &rec, entry); err != nil {
		b.Fatal(err)
	}
	entry.Decision = isync.DecisionReported
	rec.State, rec.LeaseOwner, rec.LeaseUntil = isync.StateDone, "", time.Time{}
	if err := st.Save(ctx, &rec, entry); err != nil {
		b.Fatal(err)
	}
}

// walFrames stops the store's background checkpointer and returns a function
// that counts the WAL frames written since it was called.
func walFrames(b *testing.B, st *SQLite) func() int {
	b.Helper()
	if err := st.ckpt.close(); err != nil {
		b.Fatal(err)
	}
	st.ckpt = nil
	ctx := context.Background()
	checkpoint := func() int {
		var busy, log, done int
		if err := st.db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &log, &done); err != nil {
			b.Fatal(err)
		}
		return log
	}
	checkpoint() // start from an empty log
	return checkpoint
}

// BenchmarkClaim is one Claim of a new ticket.
func BenchmarkClaim(b *testing.B) {
	st := benchStore(b, 0)
	ctx := context.Background()
	now := time.Now()
	b.ResetTimer()
	for i := range b.N {
		if _, _, err := st.Claim(ctx, "servicenow", fmt.Sprintf("%032x", i), "RITM", "bench", now, now.Add(time.Minute)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUnfinished is the store's part of an idle poll: finding the
// unfinished records among many finished ones.
func BenchmarkUnfinished(b *testing.B) {
	for _, done := range []int{10000, 100000} {
		b.Run(fmt.Sprintf("done=%d", done), func(b *testing.B) {
			if done > 10000 && testing.Short() {
				b.Skip("short")
			}
			st := benchStore(b, done)
			ctx := context.Background()
			b.ResetTimer()
			for range b.N {
				if err := st.Unfinished(ctx, "servicenow", func(isync.Record) error { return nil }); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
