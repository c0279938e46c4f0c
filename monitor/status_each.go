package monitor

import (
	"context"
	"fmt"

	"github.com/rugwatch/rugwatch/store"
)

// statusChunk is how many servers' records one read transaction of
// StatusEach decodes. Small enough that the reports held at once are a
// few MiB whatever the fleet, large enough that opening transactions
// costs nothing next to decoding: a read transaction held across a whole
// fleet's records would also pin every page it saw against reuse by the
// writers of a running daemon for as long as the report takes to print.
const statusChunk = 128

// StatusEach is Status one server at a time: the stored records of the
// named servers (all if none), in config order, read in chunks of a few
// short read transactions and handed to fn outside them, so neither the
// report nor a transaction grows with the fleet. The next chunk is
// decoded while fn prints this one: at 10,000 servers the decoding and
// the printing were each about a second of one core. An error from fn
// stops it and is returned.
func (l *Ledger) StatusEach(ctx context.Context, names []string, fn func(ServerReport) error) error {
	servers, err := l.selectServers(names)
	if err != nil {
		return err
	}
	type chunk struct {
		reports []ServerReport
		err     error
	}
	chunks := make(chan chunk, 1)
	stop, done := make(chan struct{}), make(chan struct{})
	// Returning waits for the reader: no transaction outlives the call.
	defer func() { close(stop); <-done }()
	go func() {
		defer close(done)
		defer close(chunks)
		for start := 0; start < len(servers); start += statusChunk {
			c := chunk{err: ctx.Err()}
			if c.err == nil {
				c.reports, c.err = l.readChunk(servers[start:min(start+statusChunk, len(servers))])
			}
			select {
			case chunks <- c:
			case <-stop:
				return
			}
			if c.err != nil {
				return
			}
		}
	}()
	for c := range chunks {
		if c.err != nil {
			return c.err
		}
		for i := range c.reports {
			if err := fn(c.reports[i]); err != nil {
				return err
			}
			c.reports[i] = ServerReport{} // let the printed report go
		}
	}
	return nil
}

// readChunk reads the reports of part in one read transaction.
func (l *Ledger) readChunk(part []ServerRef) ([]ServerReport, error) {
	out := make([]ServerReport, 0, len(part))
	err := l.DB.View(func(tx *store.Tx) error {
		for _, s := range part {
			r, ok, err := tx.ServerStates(s.Name)
			if err != nil {
				return err
			}
			if !ok {
				r = store.ServerRecord{Name: s.Name, Transport: s.Transport}
			}
			out = append(out, ServerReportOf(r, s.Transport))
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
func (l *Ledger) CheckEach(ctx context.Context, names []string, fn func(ServerReport) error) error {
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
