// Package store owns rugwatch's one bbolt file: what was observed on every
// server, the current and past approvals, the hash-chained event log and the
// schema migrations that shape the file.
//
// The bucket tree (every value is JSON unless noted):
//
//	/
//	├── meta
//	│   ├── "schema"            → uint64, big endian: the applied migration version
//	│   ├── "head"              → "sha256:<hex>" of the last event record's stored bytes
//	│   └── "checkpoint"        → CheckpointRecord: where the chain continues after
//	│                             retention cut the oldest records (checkpoint.go)
//	├── servers
//	│   └── <server>            → ServerRecord, its tools inline but for their definitions
//	├── definitions             (schema v6)
//	│   └── <server>            → {"<tool>": its canonical definition, …}
//	├── polled                  (created by the first poll that changed nothing)
//	│   └── <server>            → uint64 BE unix ns: when it was last polled; a
//	│                             reader takes the later of this and the record's
//	├── listings                (created by the first poll recorded with a fingerprint)
//	│   └── <server>            → 32 bytes: the fingerprint of the listing last recorded,
//	│                             32 bytes: the digest of the state it left (record bytes,
//	│                             approvals and their verdicts); a poll matching both
//	│                             writes only its time to polled
//	├── approvals               (current approvals; at most one per key)
//	│   └── <server>/           bucket
//	│       └── <kind>\x00<tool> → ApprovalRecord  (instructions: "instructions\x00", egress: "egress\x00", launch: "launch\x00")
//	├── approval_history        (superseded and revoked approvals, append only)
//	│   └── <server>/           bucket, its sequence numbers the keys
//	│       └── <uint64 BE>     → ApprovalRecord
//	├── events                  (the append-only log; bucket sequence = last seq)
//	│   └── <seq uint64 BE>     → rugwatch.Event, exactly the bytes that were hashed
//	└── outbox                  (schema v2; the notify dispatcher's deliveries)
//	    ├── deliveries          (schema v3, with due and order)
//	    │   └── <delivery id>   → Delivery; id "dlv_<event id>_<channel>"
//	    ├── due                 (index: pending deliveries only)
//	    │   └── <next attempt unix ns, uint64 BE><delivery id> → empty
//	    │                         A claim (ClaimDue, in one write transaction)
//	    │                         moves the key and NextAttempt to the lease's
//	    │                         end and sets ClaimedBy/ClaimedUntil, so no
//	    │                         other replica finds it due meanwhile; the
//	    │                         recorded outcome clears the claim, and one
//	    │                         never recorded runs out: due again for all
//	    ├── order               (index: every delivery, for newest-first lists)
//	    │   └── <event seq uint64 BE><delivery id> → empty
//	    └── disabled            (schema v5: channels a 410 Gone disabled)
//	        └── <channel>       → DisabledChannel
//
// Each event record carries in Prev the sha256 of the previous record's
// stored bytes, and meta "head" holds the sha256 of the last one, so editing,
// dropping or reordering a record breaks the chain that VerifyChain
// recomputes. The digest is always taken over the bytes as stored; nothing is
// re-marshalled to check it.
//
// Migrations are an ordered list applied in one write transaction when the
// file is opened read-write. A file whose schema is newer than this binary
// knows is refused; a read-only open of a file that still needs migrating is
// refused too, rather than read with the wrong shape.
//
// Every byte slice and json.RawMessage handed out is copied out of the
// transaction, so callers may keep and modify what they get after View or
// Update returns. A Tx is valid only inside the function it was passed to.
//
// What store must not do: speak MCP, read config, send alerts, hold or check
// keys or signatures. The only cryptography here is sha256 for the event
// chain. Approval envelopes are stored verbatim and returned verbatim; callers
// verify them against trusted keys before they believe a stored approval.
package store
