package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"
)

// DisabledChannel is an alert channel the dispatcher stopped sending to
// because its receiver answered 410 Gone. It stays disabled across reloads
// and restarts until a human enables it again (rugwatch alerts enable):
// an endpoint that said it is gone must not be posted to, and reported as
// gone, again by every start.
type DisabledChannel struct {
	Channel    string    `json:"channel"`
	DisabledAt time.Time `json:"disabled_at"`
	// Reason is the sanitised error that disabled it; never a secret.
	Reason string `json:"reason,omitempty"`
	// EventID is the event whose delivery got the 410.
	EventID string `json:"event_id,omitempty"`
}

// bucketDisabled is outbox/disabled (schema v5): channel name → DisabledChannel.
var bucketDisabled = []byte("disabled")

// disabledBucket returns outbox/disabled; with create false (read
// transactions) a missing one comes back nil, meaning none disabled.
func (t *Tx) disabledBucket(create bool) (kvBucket, error) {
	root, err := t.bucket(bucketOutbox)
	if err != nil {
		return nil, err
	}
	if !create {
		return root.Bucket(bucketDisabled), nil
	}
	b, err := root.CreateBucketIfNotExists(bucketDisabled)
	if err != nil {
		return nil, fmt.Errorf("create outbox bucket %q: %w", bucketDisabled, err)
	}
	return b, nil
}

// DisableChannel records c as disabled; a channel disabled already keeps
// its first record, which says when and why it went.
func (t *Tx) DisableChannel(c DisabledChannel) error {
	if c.Channel == "" {
		return errors.New("disable channel: empty name")
	}
	b, err := t.disabledBucket(true)
	if err != nil {
		return err
	}
	if b.Get([]byte(c.Channel)) != nil {
		return nil
	}
	if c.DisabledAt.IsZero() {
		c.DisabledAt = t.db.now().UTC()
	}
	v, err := encode(c)
	if err != nil {
		return fmt.Errorf("encode disabled channel %s: %w", c.Channel, err)
	}
	if err := b.Put([]byte(c.Channel), v); err != nil {
		return fmt.Errorf("disable channel %s: %w", c.Channel, err)
	}
	return nil
}

// EnableChannel removes channel's disabled record; false if it was not
// disabled.
func (t *Tx) EnableChannel(channel string) (bool, error) {
	b, err := t.disabledBucket(true)
	if err != nil {
		return false, err
	}
	if b.Get([]byte(channel)) == nil {
		return false, nil
	}
	if err := b.Delete([]byte(channel)); err != nil {
		return false, fmt.Errorf("enable channel %s: %w", channel, err)
	}
	return true, nil
}

// ChannelDisabled returns channel's disabled record, if it is disabled.
func (t *Tx) ChannelDisabled(channel string) (DisabledChannel, bool, error) {
	b, err := t.disabledBucket(false)
	if err != nil || b == nil {
		return DisabledChannel{}, false, err
	}
	return getJSON[DisabledChannel](b, []byte(channel), "disabled channel "+channel)
}

// DisabledChannels lists every disabled channel, by name.
func (t *Tx) DisabledChannels() ([]DisabledChannel, error) {
	b, err := t.disabledBucket(false)
	if err != nil || b == nil {
		return nil, err
	}
	var out []DisabledChannel
	err = b.ForEach(func(k, v []byte) error {
		var c DisabledChannel
		if err := json.Unmarshal(v, &c); err != nil {
			return fmt.Errorf("decode disabled channel %s: %w", k, err)
		}
		out = append(out, c)
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Channel < out[j].Channel })
	return out, err
}
