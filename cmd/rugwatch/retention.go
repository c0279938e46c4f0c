package main

import (
	"fmt"
	"time"

	"github.com/rugwatch/rugwatch/configs"
	"github.com/rugwatch/rugwatch/monitor"
	"github.com/rugwatch/rugwatch/signatures"
)

// pruneEvery is how often serve prunes the event log when retention is
// set: a day's retention is kept to within the hour.
const pruneEvery = time.Hour

// startPruner prunes the event log at once and then every pruneEvery,
// with the config in force at each pass (a reload may set or change
// retention). A retention whose checkpoints cannot be signed, or would
// not verify, fails the start rather than every pass.
func (d *daemon) startPruner(cfg *configs.Config) error {
	if cfg.Retention > 0 && !cfg.Ephemeral {
		if _, err := d.pruner(cfg); err != nil {
			return err
		}
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		t := time.NewTicker(pruneEvery)
		defer t.Stop()
		for {
			d.pruneOnce()
			select {
			case <-d.ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return nil
}

// pruneOnce runs one pass of retention, if the config has one.
func (d *daemon) pruneOnce() {
	cfg, _, _ := d.current()
	if cfg.Retention == 0 || cfg.Ephemeral {
		return
	}
	var res monitor.Pruned
	p, err := d.pruner(cfg)
	if err == nil {
		res, err = p.Prune(d.ctx)
	}
	if err != nil && d.ctx.Err() == nil {
		d.app.log.Error("pruning the event log failed; keeping every event", "error", err)
	}
	if d.app.pruned != nil {
		d.app.pruned(res, err)
	}
}

// pruner is the retention of cfg, its checkpoints signed with
// signing_key (serve defaults it to the approver key init wrote), whose
// public key must be trusted: a checkpoint no trusted key verifies would
// make every later verify fail.
func (d *daemon) pruner(cfg *configs.Config) (*monitor.Pruner, error) {
	s, err := signatures.LoadPrivateKey(cfg.SigningKey, d.app.keyPassword)
	if err != nil {
		return nil, fmt.Errorf("retention %s: loading signing_key, which signs the event log's checkpoints: %w", cfg.Retention, err)
	}
	keys, err := signatures.LoadPublicKeys(cfg.TrustedKeys)
	if err != nil {
		return nil, fmt.Errorf("loading trusted keys: %w", err)
	}
	trusted := false
	for _, k := range keys {
		trusted = trusted || k.ID == s.KeyID()
	}
	if !trusted {
		return nil, fmt.Errorf("retention %s: signing_key %s (%s) is not among trusted_keys in %s; its checkpoints would not verify",
			cfg.Retention, s.KeyID(), cfg.SigningKey, cfg.Path)
	}
	_, ver, _ := d.current()
	return &monitor.Pruner{DB: d.db, Retention: cfg.Retention.Duration(), Signer: s, Verifier: ver, Log: d.app.log}, nil
}
