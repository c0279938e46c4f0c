package monitor

import (
	"context"
	"fmt"
	"sync"

	"github.com/rugwatch/rugwatch/report"
	"github.com/rugwatch/rugwatch/store"
)

// statusChunk is how many servers' records one read transaction of
// StatusEach decodes. Small enough that the reports held at once are a
// few MiB whatever the fleet, large enough that opening transactions
// costs nothing next to decoding: a read transaction held across a whole
// fleet's records would also pin every page it saw against reuse by the
// writers of a running daemon for as long as the report takes to print.
const statusChunk = 128

// statusReaders is how many chunks StatusEach decodes at once, ahead of
// the one being printed.
const statusReaders = 2

// StatusEach is Status one server at a time: the stored records of the
// named servers (all if none), in config order, read in chunks of a few
// short read transactions and handed to fn outside them, so neither the
// report nor a transaction grows with the fleet. The next chunks are
// decoded, statusReaders at once, while fn prints this one. An error
// from fn stops it and is returned.
func (l *Ledger) StatusEach(ctx context.Context, names []string, fn func(report.ServerReport) error) error {
	servers, err := l.selectServers(names)
	if err != nil {
		return err
	}
	// Who polls each server, on a shared store (none on bbolt).
	owners, err := l.DB.Owners(ctx)
	if err != nil {
		return err
	}
	type chunk struct {
		reports []report.ServerReport
		err     error
	}
	// Each chunk's result comes through its own channel, queued in config
	// order: the readers finish in any order, fn sees the servers in one.
	// The chunk fn waits on is out of the queue: statusReaders-1 queued
	// behind it makes statusReaders readers at most.
	pending := make(chan chan chunk, statusReaders-1)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// Returning waits for the readers: no transaction outlives the call.
	defer func() { close(stop); wg.Wait() }()
	wg.Go(func() {
		defer close(pending)
		for start := 0; start < len(servers); start += statusChunk {
			result := make(chan chunk, 1)
			select {
			case pending <- result:
			case <-stop:
				return
			}
			part := servers[start:min(start+statusChunk, len(servers))]
			wg.Go(func() {
				c := chunk{err: ctx.Err()}
				if c.err == nil {
					c.reports, c.err = l.readChunk(part, owners)
				}
				result <- c
			})
		}
	})
	for result := range pending {
		c := <-result
		if c.err != nil {
			return c.err
		}
		for i := range c.reports {
			if err := fn(c.reports[i]); err != nil {
				return err
			}
			c.reports[i] = report.ServerReport{} // let the printed report go
		}
	}
	return nil
}

// readChunk reads the reports of part in one read transaction.
func (l *Ledger) readChunk(part []ServerRef, owners map[string]string) ([]report.ServerReport, error) {
	out := make([]report.ServerReport, 0, len(part))
	err := l.DB.View(func(tx *store.Tx) error {
		for _, s := range part {
			r, ok, err := tx.ServerStates(s.Name)
			if err != nil {
				return err
			}
			if !ok {
				r = store.ServerRecord{Name: s.Name, Transport: s.Transport}
			}
			sr := report.ServerReportOf(r, s.Transport)
			sr.Owner = owners[s.Name]
			if err := l.showSignatures(tx, r, &sr); err != nil {
				return err
			}
			out = append(out, sr)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading server states: %w", err)
	}
	// The records read are decoded; their pages of the mapped file need
	// not stay this process's resident memory.
	if err := l.DB.ReleaseMapped(); err != nil {
		return nil, err
	}
	return out, nil
}

// CheckEach is Check with the report handed to fn server by server, as
// StatusEach does.
func (l *Ledger) CheckEach(ctx context.Context, names []string, fn func(report.ServerReport) error) error {
	servers, err := l.selectServers(names)
	if err != nil {
		return err
	}
	if l.Poll == nil {
		return fmt.Errorf("this backend cannot poll")
	}
	polled := make([]string, len(servers))
	for i, s := range servers {
		polled[i] = s.Name
	}
	if err := l.Poll(ctx, polled); err != nil {
		return err
	}
	if err := l.afterWrite(ctx); err != nil {
		return err
	}
	return l.StatusEach(ctx, polled, fn)
}
