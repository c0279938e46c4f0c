package main

import (
	"time"

	"github.com/rugwatch/rugwatch/monitor"
)

// lockStatInterval is how often serve looks at approvals_from's file for
// a change: one stat, no read unless it changed.
const lockStatInterval = time.Second

// startLockFollower keeps the approvals of approvals_from applied while
// the daemon runs: a pass at start, when the file changes (a stat a
// second), on SIGHUP and after a poll's events (a tool first seen may be
// one the file approves). Each pass goes through the daemon's Ledger, as
// `rugwatch approve` does.
func (d *daemon) startLockFollower() {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		var f *monitor.LockFollower
		every := lockStatInterval
		if d.app.lockEvery > 0 {
			every = d.app.lockEvery
		}
		tick := time.NewTicker(every)
		defer tick.Stop()
		woken := true // the pass at start
		for {
			cfg, _, _ := d.current()
			reread := d.lockReread.Swap(false)
			if cfg.ApprovalsFrom == "" {
				f = nil
			} else {
				due := woken || reread
				if f == nil || f.Path != cfg.ApprovalsFrom {
					f, due = &monitor.LockFollower{Path: cfg.ApprovalsFrom}, true
				}
				if due || f.Changed() {
					d.lockPass(f, reread)
				}
			}
			woken = false
			select {
			case <-d.ctx.Done():
				return
			case <-tick.C:
			case <-d.lockWake:
				woken = true // a poll's events or a reload: offer the file again
			}
		}
	}()
}

// lockPass runs one pass of f over the daemon's Ledger and logs what it
// took and, once each, what it refused.
func (d *daemon) lockPass(f *monitor.LockFollower, reread bool) {
	l := d.backend().(monitor.Observed).Ledger
	p, err := f.Pass(d.ctx, l, reread)
	log := d.app.log
	if err != nil {
		log.Error("approvals_from not read; the approvals already taken stay", "error", err)
	}
	if p.Changed && err == nil {
		log.Info("approvals_from read", "file", f.Path)
	}
	for _, s := range p.Applied {
		log.Info("approval taken from approvals_from", "signature", s)
	}
	for _, s := range p.Refused {
		log.Warn("approvals_from signature refused", "signature", s)
	}
	if d.app.lockPassed != nil {
		d.app.lockPassed(p, err)
	}
}

// wakeLockFollower asks for a pass; reread makes it read the file even if
// it looks unchanged (SIGHUP).
func (d *daemon) wakeLockFollower(reread bool) {
	if reread {
		d.lockReread.Store(true)
	}
	select {
	case d.lockWake <- struct{}{}:
	default:
	}
}
