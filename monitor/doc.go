// Package monitor decides what a server's answers mean and keeps the
// state that follows. It owns:
//
//   - evaluation: the tool state machine and drift severity (evaluate.go),
//     a pure function of a listing (mcpclient), the rules' findings
//     (detect) and the stored record;
//   - the Recorder, which writes one poll's outcome in one store
//     transaction as gather, decide, apply, persist (record.go), and the
//     shadowing findings it keeps current across servers (shadowing.go);
//   - the Ledger (ledger.go), the one owner of every transition a human
//     asks for — approve, revoke, pin a launch identity — and of the reads
//     around them, called alike by the CLI offline, by the daemon behind
//     its control socket and by the proxy; the Recorder and the Ledger are
//     the only writers of tool states; enforcement (enforce.go): what the
//     proxy may pass;
//   - the alerts a poll folds into summaries (alerts.go), the scheduler and
//     the watch loop of serve (scheduler.go), and the Poller and Fleet that
//     drive them from a config's ServerSpecs (fleet.go);
//   - the pins a listing carries beside its tools: the launch identity
//     (identity.go, revision.go, cloak.go hold what of them is the state
//     machine's) and the egress destinations a sandboxed server uses,
//     approved by a signed statement (egress.go).
//
// The package must never hold a private key beyond the optional
// first-sight Signer it is handed.
package monitor
