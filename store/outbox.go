package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/rugwatch/rugwatch"
)

// Delivery states.
const (
	DeliveryPending   = "pending"   // waiting for its next attempt
	DeliveryDelivered = "delivered" // the receiver acknowledged it
	DeliveryDead      = "dead"      // given up: permanent error, endpoint gone or out of time
)

// Delivery is one event queued for one alert channel.
type Delivery struct {
	// ID is "dlv_" + event id + "_" + channel (see DeliveryID): one per
	// (event, channel), so queueing the same pair twice is a no-op.
	ID       string `json:"id"`
	EventID  string `json:"event_id"`
	EventSeq uint64 `json:"event_seq"`
	// Channel names the notifier: "log", "webhook:ops", "email:security".
	Channel     string    `json:"channel"`
	State       string    `json:"state"`
	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	// LastError is the latest failure, sanitised by the caller; never a
	// secret.
	LastError   string    `json:"last_error,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	DeliveredAt time.Time `json:"delivered_at,omitzero"`
	// ClaimedBy names the dispatcher (replica) that ClaimDue gave this
	// pending delivery to, until ClaimedUntil; NextAttempt is
	// ClaimedUntil meanwhile, so nobody else finds it due. Recording the
	// outcome clears both; a claim that runs out uncleared (its claimer
	// died) makes the delivery due again for anyone.
	ClaimedBy    string    `json:"claimed_by,omitempty"`
	ClaimedUntil time.Time `json:"claimed_until,omitzero"`
}

// Sub-buckets of outbox; see the tree in doc.go. Migration 3 creates them;
// the outbox still creates one it finds missing, and reads a missing one
// as empty, so a read-only open of an older file works.
var (
	bucketDeliveries = []byte("deliveries")
	bucketDue        = []byte("due")
	bucketOrder      = []byte("order")
)

// DeliveryID is the ID of the delivery of event eventID to channel.
func DeliveryID(eventID, channel string) string {
	return "dlv_" + eventID + "_" + channel
}

// outbox returns the outbox sub-buckets; with create false (read
// transactions) a missing one comes back nil, meaning empty.
func (t *Tx) outbox(create bool) (deliveries, due, order kvBucket, err error) {
	root, err := t.bucket(bucketOutbox)
	if err != nil {
		return nil, nil, nil, err
	}
	get := func(name []byte) (kvBucket, error) {
		if !create {
			return root.Bucket(name), nil
		}
		b, err := root.CreateBucketIfNotExists(name)
		if err != nil {
			return nil, fmt.Errorf("create outbox bucket %q: %w", name, err)
		}
		return b, nil
	}
	if deliveries, err = get(bucketDeliveries); err != nil {
		return nil, nil, nil, err
	}
	if due, err = get(bucketDue); err != nil {
		return nil, nil, nil, err
	}
	if order, err = get(bucketOrder); err != nil {
		return nil, nil, nil, err
	}
	return deliveries, due, order, nil
}

// dueKey orders pending deliveries by next attempt, then ID. Times before
// the Unix epoch (including the zero time: "at once") sort first.
func dueKey(next time.Time, id string) []byte {
	var ns uint64
	if next.After(time.Unix(0, 0)) {
		ns = uint64(next.UnixNano())
	}
	k := make([]byte, 8, 8+len(id))
	binary.BigEndian.PutUint64(k, ns)
	return append(k, id...)
}

// orderKey orders deliveries by event seq, then ID, for newest-first lists.
func orderKey(seq uint64, id string) []byte {
	return append(u64(seq), id...)
}

// EnqueueDelivery queues d. It is meant to run in the transaction that
// appends d's event, so that recording and queueing commit together. If a
// delivery with d.ID exists already, nothing changes. An empty State means
// pending; a zero CreatedAt means now; a zero NextAttempt means at once.
func (t *Tx) EnqueueDelivery(d Delivery) error {
	switch {
	case d.ID == "":
		return errors.New("enqueue delivery: empty id")
	case d.EventID == "" || d.Channel == "":
		return fmt.Errorf("enqueue delivery %s: event id and channel are required", d.ID)
	}
	if d.State == "" {
		d.State = DeliveryPending
	}
	if err := checkDeliveryState(d.State); err != nil {
		return fmt.Errorf("enqueue delivery %s: %w", d.ID, err)
	}
	if d.CreatedAt.IsZero() {
		d.CreatedAt = t.db.now().UTC()
	}
	deliveries, due, order, err := t.outbox(true)
	if err != nil {
		return err
	}
	if deliveries.Get([]byte(d.ID)) != nil {
		return nil
	}
	if err := putDelivery(deliveries, d); err != nil {
		return err
	}
	if err := order.Put(orderKey(d.EventSeq, d.ID), nil); err != nil {
		return fmt.Errorf("index delivery %s: %w", d.ID, err)
	}
	if d.State == DeliveryPending {
		if err := due.Put(dueKey(d.NextAttempt, d.ID), nil); err != nil {
			return fmt.Errorf("index delivery %s: %w", d.ID, err)
		}
	}
	return nil
}

// UpdateDelivery replaces the stored delivery with d.ID by d and keeps the
// due index in step: only pending deliveries are in it. The event and
// channel of a delivery never change.
func (t *Tx) UpdateDelivery(d Delivery) error {
	if err := checkDeliveryState(d.State); err != nil {
		return fmt.Errorf("update delivery %s: %w", d.ID, err)
	}
	deliveries, due, _, err := t.outbox(true)
	if err != nil {
		return err
	}
	old, ok, err := getDelivery(deliveries, d.ID)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("update delivery %s: no such delivery", d.ID)
	}
	return replaceDelivery(deliveries, due, old, d)
}

// ModifyDelivery reads the delivery with id, lets fn change it and stores
// the change as UpdateDelivery does, decoding it once: settling a batch
// read every delivery twice, a third of the dispatcher's cost. fn returns
// false to leave the delivery as it is. ok is false, and fn not called,
// when there is no such delivery.
func (t *Tx) ModifyDelivery(id string, fn func(d *Delivery) bool) (ok bool, err error) {
	deliveries, due, _, err := t.outbox(true)
	if err != nil {
		return false, err
	}
	old, ok, err := getDelivery(deliveries, id)
	if err != nil || !ok {
		return false, err
	}
	d := old
	if !fn(&d) {
		return true, nil
	}
	if d.ID != old.ID {
		return true, fmt.Errorf("update delivery %s: its id cannot change", id)
	}
	if err := checkDeliveryState(d.State); err != nil {
		return true, fmt.Errorf("update delivery %s: %w", d.ID, err)
	}
	return true, replaceDelivery(deliveries, due, old, d)
}

// replaceDelivery stores d over old (the same id, read in this
// transaction) and keeps the due index in step. Only a pending delivery
// can be claimed: a settled one loses its claim here, whoever settled it.
func replaceDelivery(deliveries, due kvBucket, old, d Delivery) error {
	if old.EventID != d.EventID || old.EventSeq != d.EventSeq || old.Channel != d.Channel {
		return fmt.Errorf("update delivery %s: event and channel cannot change", d.ID)
	}
	if d.State != DeliveryPending {
		d.ClaimedBy, d.ClaimedUntil = "", time.Time{}
	}
	if old.State == DeliveryPending {
		if err := due.Delete(dueKey(old.NextAttempt, old.ID)); err != nil {
			return fmt.Errorf("unindex delivery %s: %w", d.ID, err)
		}
	}
	if err := putDelivery(deliveries, d); err != nil {
		return err
	}
	if d.State == DeliveryPending {
		if err := due.Put(dueKey(d.NextAttempt, d.ID), nil); err != nil {
			return fmt.Errorf("index delivery %s: %w", d.ID, err)
		}
	}
	return nil
}

// Delivery returns the delivery with id.
func (t *Tx) Delivery(id string) (Delivery, bool, error) {
	deliveries, _, _, err := t.outbox(false)
	if err != nil || deliveries == nil {
		return Delivery{}, false, err
	}
	return getDelivery(deliveries, id)
}

// DueDeliveries returns up to limit (all if limit <= 0) pending deliveries
// whose NextAttempt is not after now, the earliest first. It reads only the
// due index, not the whole outbox. It claims nothing: a dispatcher that
// will send what it finds uses ClaimDue.
func (t *Tx) DueDeliveries(now time.Time, limit int) ([]Delivery, error) {
	deliveries, due, _, err := t.outbox(false)
	if err != nil || due == nil {
		return nil, err
	}
	end := dueKey(now, "")
	var out []Delivery
	c := due.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if limit > 0 && len(out) >= limit {
			break
		}
		if len(k) < 8 || bytes.Compare(k[:8], end) > 0 {
			break
		}
		d, err := indexedDelivery(deliveries, "due", k)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// ClaimDue takes up to limit (all if limit <= 0) of the deliveries
// DueDeliveries would return and claims each for owner until now+lease:
// its NextAttempt, and so its key in the due index, moves to then, so no
// other ClaimDue finds it due before the lease runs out. Run it in
// Update: the read and the move commit together, and write transactions
// are serialised (across replicas on PostgreSQL), so two owners never
// claim the same delivery at once. A claim changes nothing else: not
// Attempts, so a claimer that dies costs the delivery no attempt, and the
// next owner to find it due sends it (at least once). The claimer records
// the outcome with ModifyDelivery or UpdateDelivery, clearing the claim.
func (t *Tx) ClaimDue(now time.Time, limit int, owner string, lease time.Duration) ([]Delivery, error) {
	switch {
	case owner == "":
		return nil, errors.New("claim deliveries: empty owner")
	case lease <= 0:
		return nil, fmt.Errorf("claim deliveries for %s: lease %v is not positive", owner, lease)
	}
	due, err := t.DueDeliveries(now, limit)
	if err != nil || len(due) == 0 {
		return nil, err
	}
	deliveries, index, _, err := t.outbox(true)
	if err != nil {
		return nil, err
	}
	until := now.Add(lease).UTC()
	for i, old := range due {
		d := old
		d.NextAttempt, d.ClaimedBy, d.ClaimedUntil = until, owner, until
		if err := replaceDelivery(deliveries, index, old, d); err != nil {
			return nil, fmt.Errorf("claim delivery %s: %w", d.ID, err)
		}
		due[i] = d
	}
	return due, nil
}

// NextDue is the earliest NextAttempt among pending deliveries; false if
// none is pending.
func (t *Tx) NextDue() (time.Time, bool, error) {
	deliveries, due, _, err := t.outbox(false)
	if err != nil || due == nil {
		return time.Time{}, false, err
	}
	k, _ := due.Cursor().First()
	if k == nil {
		return time.Time{}, false, nil
	}
	d, err := indexedDelivery(deliveries, "due", k)
	if err != nil {
		return time.Time{}, false, err
	}
	return d.NextAttempt, true, nil
}

// ListDeliveries returns up to limit (all if limit <= 0) deliveries in state
// ("" for every state), newest event first.
func (t *Tx) ListDeliveries(state string, limit int) ([]Delivery, error) {
	if state != "" {
		if err := checkDeliveryState(state); err != nil {
			return nil, fmt.Errorf("list deliveries: %w", err)
		}
	}
	deliveries, _, order, err := t.outbox(false)
	if err != nil || order == nil {
		return nil, err
	}
	var out []Delivery
	c := order.Cursor()
	for k, _ := c.Last(); k != nil; k, _ = c.Prev() {
		if limit > 0 && len(out) >= limit {
			break
		}
		d, err := indexedDelivery(deliveries, "order", k)
		if err != nil {
			return nil, err
		}
		if state == "" || d.State == state {
			out = append(out, d)
		}
	}
	return out, nil
}

// Event returns the event with seq.
func (t *Tx) Event(seq uint64) (rugwatch.Event, bool, error) {
	b, err := t.bucket(bucketEvents)
	if err != nil {
		return rugwatch.Event{}, false, err
	}
	v := b.Get(u64(seq))
	if v == nil {
		return rugwatch.Event{}, false, nil
	}
	e, err := decodeEvent(v)
	if err != nil {
		return rugwatch.Event{}, false, fmt.Errorf("decode event %d: %w", seq, err)
	}
	return e, true, nil
}

// indexedDelivery reads the delivery an index key names: 8 bytes of order
// (a due time or an event seq), then the delivery id. The indexes are
// written in the same transaction as the deliveries, so a key naming none
// means a corrupt outbox, reported as such rather than skipped.
func indexedDelivery(deliveries kvBucket, index string, k []byte) (Delivery, error) {
	id := string(k[8:])
	d, ok, err := getDelivery(deliveries, id)
	if err != nil {
		return Delivery{}, err
	}
	if !ok {
		return Delivery{}, fmt.Errorf("outbox %s index names missing delivery %s", index, id)
	}
	return d, nil
}

func checkDeliveryState(s string) error {
	switch s {
	case DeliveryPending, DeliveryDelivered, DeliveryDead:
		return nil
	}
	return fmt.Errorf("unknown delivery state %q", s)
}

func putDelivery(b kvBucket, d Delivery) error {
	v, err := encode(d)
	if err != nil {
		return fmt.Errorf("encode delivery %s: %w", d.ID, err)
	}
	if err := b.Put([]byte(d.ID), v); err != nil {
		return fmt.Errorf("put delivery %s: %w", d.ID, err)
	}
	return nil
}

func getDelivery(b kvBucket, id string) (Delivery, bool, error) {
	return getJSON[Delivery](b, []byte(id), "delivery "+id)
}
