package monitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/report"
	"github.com/rugwatch/rugwatch/signatures"
	"github.com/rugwatch/rugwatch/store"
)

// Retention: the Pruner cuts the events older than the configured
// retention from the log, behind a checkpoint of the chain head signed
// with the daemon's signing_key (store/checkpoint.go draws the cut).
// Before it signs, it verifies what it signs over: the current checkpoint's
// signature and the chain from it, so a log edited before the cut is
// never laundered into a signed one. The checkpoint also carries, per
// tool, the newest drift or revocation among the cut events: the replay
// check of approvals reads them once the events are gone.

// CheckpointSigner signs checkpoints: the daemon's signing_key.
type CheckpointSigner interface {
	SignCheckpoint(cp signatures.Checkpoint) ([]byte, error)
	KeyID() string
}

// CheckpointVerifier checks a signed checkpoint against the trusted keys.
type CheckpointVerifier interface {
	VerifyCheckpoint(envelope []byte) (signatures.Checkpoint, error)
}

// checkpointVerifier is v's checkpoint side; nil when it has none (a
// verifier of approvals only, in tests), and then no checkpoint verifies.
func checkpointVerifier(v Verifier) CheckpointVerifier {
	cv, _ := v.(CheckpointVerifier)
	return cv
}

// CheckCheckpoint verifies a stored checkpoint: a trusted key signed it,
// and it names the seq and head the store continues the chain from.
func CheckCheckpoint(v CheckpointVerifier, rec store.CheckpointRecord) (signatures.Checkpoint, error) {
	if v == nil {
		return signatures.Checkpoint{}, errors.New("checkpoint of the event log: no trusted keys to verify it")
	}
	cp, err := v.VerifyCheckpoint(rec.Envelope)
	if err != nil {
		return signatures.Checkpoint{}, fmt.Errorf("checkpoint of the event log at seq %d: %w", rec.Seq, err)
	}
	if cp.Seq != rec.Seq || cp.ChainHead != rec.Head {
		return signatures.Checkpoint{}, fmt.Errorf("checkpoint of the event log: signed for seq %d head %s, stored as seq %d head %s",
			cp.Seq, cp.ChainHead, rec.Seq, rec.Head)
	}
	return cp, nil
}

// DefaultPruneBatch is how many records one write transaction of a prune
// deletes: a few milliseconds of the write lock.
const DefaultPruneBatch = 1000

// Pruner cuts events older than Retention from the event log.
type Pruner struct {
	DB        *store.DB
	Retention time.Duration
	Signer    CheckpointSigner
	Verifier  CheckpointVerifier
	// Batch is how many records each write transaction deletes (0:
	// DefaultPruneBatch).
	Batch int
	Now   func() time.Time
	Log   *slog.Logger
}

// Pruned is what one Prune did.
type Pruned struct {
	// Checkpoint is the new checkpoint; zero when nothing was old enough.
	Checkpoint store.Head
	// Deleted counts the records deleted, with those an interrupted prune
	// left behind.
	Deleted int
}

// Prune cuts, once, every event older than the retention but the last:
// it verifies the log, signs a checkpoint of the newest event to cut,
// installs it and deletes the records up to it in batches.
func (p *Pruner) Prune(ctx context.Context) (Pruned, error) {
	var out Pruned
	if p.Retention <= 0 {
		return out, nil
	}
	now := time.Now().UTC()
	if p.Now != nil {
		now = p.Now().UTC()
	}
	// What an interrupted prune left first: its checkpoint stands.
	n, err := p.deleteCut(ctx)
	out.Deleted += n
	if err != nil {
		return out, err
	}
	var (
		cur, next  store.CheckpointRecord
		hasCur     bool
		cut        store.Head
		withdrawal = map[[2]string]uint64{}
		egressSeen = map[string]uint64{}
	)
	if err := p.DB.View(func(tx *store.Tx) error {
		var err error
		if cur, hasCur, err = tx.Checkpoint(); err != nil {
			return err
		}
		return nil
	}); err != nil {
		return out, fmt.Errorf("pruning the event log: %w", err)
	}
	if hasCur {
		cp, err := CheckCheckpoint(p.Verifier, cur)
		if err != nil {
			return out, fmt.Errorf("pruning the event log: refusing to prune behind a checkpoint that does not verify: %w", err)
		}
		for _, w := range cp.Withdrawn {
			withdrawal[[2]string{w.Server, w.Tool}] = w.Seq
		}
		for _, w := range cp.EgressApproved {
			egressSeen[w.Server] = w.Seq
		}
	}
	if _, _, err := p.DB.VerifyChainHead(); err != nil {
		return out, fmt.Errorf("pruning the event log: refusing to sign a checkpoint over a broken chain: %w", err)
	}
	horizon := now.Add(-p.Retention)
	err = p.DB.View(func(tx *store.Tx) error {
		var ok bool
		var err error
		if cut, ok, err = tx.CutBefore(horizon); err != nil || !ok {
			return err
		}
		return tx.Transitions(cur.Seq, func(tr store.Transition) error {
			if tr.Seq > cut.Seq {
				return errStopScan
			}
			if ok, withdraws := tr.Moves(); ok && withdraws {
				k := [2]string{tr.Server, tr.Tool}
				withdrawal[k] = max(withdrawal[k], tr.Seq)
			}
			if tr.Type == rugwatch.EventEgressApproved {
				egressSeen[tr.Server] = max(egressSeen[tr.Server], tr.Seq)
			}
			return nil
		})
	})
	if err != nil && !errors.Is(err, errStopScan) {
		return out, fmt.Errorf("pruning the event log: %w", err)
	}
	if cut.Seq == 0 {
		return out, nil
	}
	cp := signatures.Checkpoint{Seq: cut.Seq, ChainHead: cut.Digest, Before: horizon, SignedAt: now}
	for k, seq := range withdrawal {
		cp.Withdrawn = append(cp.Withdrawn, signatures.Withdrawal{Server: k[0], Tool: k[1], Seq: seq})
	}
	signatures.SortWithdrawals(cp.Withdrawn)
	for server, seq := range egressSeen {
		cp.EgressApproved = append(cp.EgressApproved, signatures.Withdrawal{Server: server, Seq: seq})
	}
	signatures.SortWithdrawals(cp.EgressApproved)
	env, err := p.Signer.SignCheckpoint(cp)
	if err != nil {
		return out, fmt.Errorf("pruning the event log: %w", err)
	}
	next = store.CheckpointRecord{Seq: cut.Seq, Head: cut.Digest, Envelope: env}
	// A checkpoint no trusted key verifies would break verify for good.
	if _, err := CheckCheckpoint(p.Verifier, next); err != nil {
		return out, fmt.Errorf("pruning the event log: the signing key %s is not among the trusted keys, so its checkpoints would not verify: %w",
			p.Signer.KeyID(), err)
	}
	if err := p.DB.Update(func(tx *store.Tx) error { return tx.Cut(cur, next) }); err != nil {
		return out, fmt.Errorf("pruning the event log: %w", err)
	}
	out.Checkpoint = next.ChainHead()
	if p.Log != nil {
		p.Log.Info("event log checkpoint signed; pruning older events", "seq", cut.Seq, "chain_head", string(cut.Digest),
			"before", horizon.Format(time.RFC3339), "key_id", p.Signer.KeyID())
	}
	n, err = p.deleteCut(ctx)
	out.Deleted += n
	return out, err
}

var errStopScan = errors.New("stop scanning")

// deleteCut deletes the records up to the checkpoint, a batch per write
// transaction, until none is left or ctx ends.
func (p *Pruner) deleteCut(ctx context.Context) (int, error) {
	batch := p.Batch
	if batch <= 0 {
		batch = DefaultPruneBatch
	}
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n, err := p.DB.PruneBatch(batch)
		total += n
		if err != nil || n == 0 {
			return total, err
		}
	}
}

// seedWithdrawn starts r.withdrawn from the checkpoint's word on the
// events retention cut, when its signature holds. One that does not
// fails closed: believing it could lower a seq and let a replay through,
// and ignoring it forgets every drift the cut took, so no approval bound
// at or before the cut counts (verify reports the checkpoint; the tools
// are withheld until approved again).
func (r *Recorder) seedWithdrawn(tx *store.Tx) error {
	rec, ok, err := tx.Checkpoint()
	if err != nil || !ok || r.checkpointSeedOff {
		return err
	}
	cp, err := CheckCheckpoint(checkpointVerifier(r.Verifier), rec)
	if err != nil {
		if r.Log != nil {
			r.Log.Error("the event log's checkpoint does not verify: approvals bound at or before it count as none until approved again; run `rugwatch verify`", "error", err)
		}
		r.distrustThrough = rec.Seq
		return nil
	}
	for _, w := range cp.Withdrawn {
		key := w.Server + "\x00" + w.Tool
		r.withdrawn[key] = max(r.withdrawn[key], w.Seq)
	}
	for _, w := range cp.EgressApproved {
		r.egressLog.note(store.Transition{Type: rugwatch.EventEgressApproved, Server: w.Server, Seq: w.Seq})
	}
	return nil
}

// verifyCheckpoint adds the log's checkpoint to rep: where the kept
// chain starts and who signed it, or why the signature does not hold.
// ok says a checkpoint is there and verifies.
func (l *Ledger) verifyCheckpoint(rep *report.VerifyReport) (ok bool, err error) {
	var rec store.CheckpointRecord
	var found bool
	if err := l.DB.View(func(tx *store.Tx) error {
		rec, found, err = tx.Checkpoint()
		return err
	}); err != nil || !found {
		return false, err
	}
	rep.Checkpoint = rec.ChainHead().String()
	if l.checkpointCheckOff {
		return true, nil
	}
	cp, err := CheckCheckpoint(checkpointVerifier(l.Verifier), rec)
	if err != nil {
		rep.CheckpointError = err.Error()
		return false, nil
	}
	rep.CheckpointKey = cp.KeyID
	return true, nil
}
