// Package ops owns what operators look at while rugwatch serves: the
// Prometheus metrics on http_listen (/metrics) and the read-only web view
// of servers, tools and diffs, with the guard both sit behind (a bearer
// token off loopback, a Host check against DNS rebinding on it).
//
// It is a package of its own because none of the job packages of
// DESIGN.md fits: monitor and notify only declare the small observer
// interfaces they call (monitor.PollObserver, notify.DeliveryObserver) and
// must not know Prometheus; cmd/rugwatch only wires; and the web view is a
// renderer of untrusted text like visible, but for browsers, with its own
// rules (html/template escaping, a strict Content-Security-Policy, no
// script). It reads the store only through the Ledger's read methods and
// the store's summary reads, and never writes: nothing here approves,
// revokes or sends.
//
// No label of any metric carries text a server chose: server names and
// channel names come from the config, event types, severities, states and
// outcomes are rugwatch's own constants, and tool names are never labels.
// Per-server series stop at MaxServers.
package ops
