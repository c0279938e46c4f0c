package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rugwatch/rugwatch/store"
	"github.com/rugwatch/rugwatch/testkit/pgtest"
)

// BenchmarkFleetShared measures the fleet (RUGWATCH_FLEET_N servers of
// 50 tools, 1,000 by default; the contract's figure is 10,000) on each
// store in one run: the bare floor, bbolt's one process, PostgreSQL with
// one replica, and PostgreSQL with three replicas polling their shares
// side by side (each server's share decided as serve's leases decide it,
// store.Preferred over the three names). A cycle is `check --json` of
// every server: first sight (every tool new, on an empty store) and a
// steady one (nothing changed). Three replicas' cycle is the slowest
// replica's; CPU per poll is all three's over the fleet.
func BenchmarkFleetShared(b *testing.B) {
	n := fleetSize()
	const concurrency = 64
	bin := rugwatchBinB(b)
	base := startFleet(b, n)
	names := make([]string, n)
	for i := range n {
		names[i] = fmt.Sprintf("s%05d", i)
	}
	replicas := []string{"r1", "r2", "r3"}
	shares := map[string][]string{}
	for _, s := range names {
		r := store.Preferred(s, replicas)
		shares[r] = append(shares[r], s)
	}

	// setup writes a config over the fleet and runs init: on bbolt
	// (dsn "") or on the PostgreSQL database dsn.
	setup := func(name, dsn string) []string {
		dir := filepath.Join(b.TempDir(), name)
		var cfg strings.Builder
		fmt.Fprintf(&cfg, "data_dir: %s/data\nconcurrency: %d\ndefaults: { timeout: 60s }\n", dir, concurrency)
		if dsn != "" {
			fmt.Fprintf(&cfg, "store: %q\n", dsn)
		}
		cfg.WriteString("servers:\n")
		for i, s := range names {
			fmt.Fprintf(&cfg, "  - name: %s\n    url: %s/s/%d\n", s, base, i)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			b.Fatal(err)
		}
		cfgPath := filepath.Join(dir, "rugwatch.yaml")
		if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o600); err != nil {
			b.Fatal(err)
		}
		env := append(baseEnv(dir), "RUGWATCH_CONFIG="+cfgPath)
		if r := runChild(b, bin, env, "init"); r.code != 0 {
			b.Fatalf("init (%s): exit %d\n%s", name, r.code, r.stderr)
		}
		return env
	}
	// cycle runs one check per share at once and returns the slowest's
	// wall time, the CPU of all and the highest peak RSS.
	type cycleRun struct {
		wall, cpu time.Duration
		peakRSS   int64
	}
	cycle := func(env []string, shares [][]string) cycleRun {
		runs := make([]childRun, len(shares))
		errs := make([]error, len(shares))
		var wg sync.WaitGroup
		for i, share := range shares {
			wg.Go(func() {
				args := append([]string{"check", "--json"}, share...)
				if len(shares) == 1 {
					args = args[:2] // every server: no names on the command line
				}
				runs[i], errs[i] = runChildErr(bin, env, args...)
			})
		}
		wg.Wait()
		var c cycleRun
		for i, r := range runs {
			if errs[i] != nil {
				b.Fatal(errs[i])
			}
			// Exit 1: every tool is pending (never approved), a finding.
			if r.code != 1 || !json.Valid(r.stdout) {
				b.Fatalf("check: exit %d, valid JSON %v\nstderr tail:\n%s", r.code, json.Valid(r.stdout), r.stderr)
			}
			c.wall = max(c.wall, r.wall)
			c.cpu += r.cpu
			c.peakRSS = max(c.peakRSS, r.peakRSS)
		}
		return c
	}
	dbSize := func(dsn string) int64 {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close(ctx)
		var size int64
		if err := conn.QueryRow(ctx, `SELECT pg_database_size(current_database())`).Scan(&size); err != nil {
			b.Fatal(err)
		}
		return size
	}

	for b.Loop() {
		floorFirst, _, _ := floor(b, base, n, concurrency)

		boltEnv := setup("bbolt", "")
		boltFirst := cycle(boltEnv, [][]string{names})
		floorSteady, floorSteadyCPU, _ := floor(b, base, n, concurrency)
		boltSteady := cycle(boltEnv, [][]string{names})

		oneDSN := pgtest.DSN(b)
		empty := dbSize(oneDSN)
		oneEnv := setup("pg1", oneDSN)
		oneFirst := cycle(oneEnv, [][]string{names})
		oneSteady := cycle(oneEnv, [][]string{names})
		oneSize := dbSize(oneDSN) - empty

		threeDSN := pgtest.DSN(b)
		threeEnv := setup("pg3", threeDSN)
		parts := [][]string{shares["r1"], shares["r2"], shares["r3"]}
		threeFirst := cycle(threeEnv, parts)
		threeSteady := cycle(threeEnv, parts)

		tools := int64(n * fleetTools)
		perPoll := func(d time.Duration) time.Duration { return (d / time.Duration(n)).Round(time.Microsecond) }
		fmt.Printf("\nfleet %d × %d, concurrency %d per replica, %d cores; shares %d/%d/%d\n", n, fleetTools, concurrency,
			runtime.NumCPU(), len(parts[0]), len(parts[1]), len(parts[2]))
		fmt.Printf("%-28s %10s %10s %14s %14s %12s\n", "", "first", "steady", "CPU/poll 1st", "CPU/poll st.", "peak RSS")
		fmt.Printf("%-28s %10s %10s\n", "bare floor (same run)", rnd(floorFirst), rnd(floorSteady))
		row := func(name string, first, steady cycleRun) {
			fmt.Printf("%-28s %10s %10s %14s %14s %8d MiB\n", name, rnd(first.wall), rnd(steady.wall),
				perPoll(first.cpu), perPoll(steady.cpu), max(first.peakRSS, steady.peakRSS)>>20)
		}
		row("bbolt, one process", boltFirst, boltSteady)
		row("PostgreSQL, one replica", oneFirst, oneSteady)
		row("PostgreSQL, three replicas", threeFirst, threeSteady)
		fmt.Printf("three replicas ÷ bbolt: first %.2f×, steady %.2f× (goal: ≤ 2×, ≤ 1.5×)\n",
			ratio(threeFirst.wall, boltFirst.wall), ratio(threeSteady.wall, boltSteady.wall))
		fmt.Printf("PostgreSQL database per tool: %d B (one replica, after two cycles)\n", oneSize/tools)
		fmt.Printf("floor's CPU per poll, steady: %s\n", perPoll(floorSteadyCPU))
		b.ReportMetric(boltFirst.wall.Seconds(), "bbolt-first-s")
		b.ReportMetric(boltSteady.wall.Seconds(), "bbolt-steady-s")
		b.ReportMetric(oneFirst.wall.Seconds(), "pg1-first-s")
		b.ReportMetric(oneSteady.wall.Seconds(), "pg1-steady-s")
		b.ReportMetric(threeFirst.wall.Seconds(), "pg3-first-s")
		b.ReportMetric(threeSteady.wall.Seconds(), "pg3-steady-s")
		b.ReportMetric(floorSteady.Seconds(), "floor-steady-s")
		b.ReportMetric(float64(oneSize/tools), "pg-B/tool")
		b.ReportMetric(float64(max(threeFirst.peakRSS, threeSteady.peakRSS)>>20), "pg3-peakRSS-MiB/replica")
	}
}
