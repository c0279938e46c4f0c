// Package proxy is rugwatch's enforcing MCP gateway: it stands between an
// MCP client and one configured server so that only approved tools,
// exactly as approved, ever reach the model.
//
// It owns one client session at a time (Serve), speaking MCP's JSON-RPC
// to the client over any SDK connection (stdio for `rugwatch proxy`,
// Streamable HTTP for serve's proxy_listen) and to the server through a
// mcpclient.Session (the same bounded, sandboxed client the polls use):
//
//   - tools/list is answered from a full upstream listing, recorded first
//     through the monitor's state machine (Backend.Enforce: a drift the
//     proxy sees is an event and an alert at once), holding only tools
//     whose live digest matches a verified approval, each sent as the
//     approver signed it — pending, drifted, revoked and removed tools are
//     withheld;
//   - tools/call is refused for a tool not approved right now or never
//     listed, and for arguments outside the approved input schema
//     (validated with a real JSON Schema validator; unknown properties
//     refused); results are checked with the poisoning rules, flagged as
//     result.flagged events, and withheld with results: block;
//   - the initialize result carries the approved instructions only;
//   - upstream list_changed and approvals or revocations made meanwhile
//     reach the client as list_changed (the allowed set is re-read twice a
//     second);
//   - everything else passes through unchanged in both directions,
//     server requests (sampling, elicitation, roots) relayed to the client.
//
// ServeGateway is the gateway (`rugwatch proxy --all`, /mcp on
// proxy_listen): one client session over many servers, each served by a
// Serve of its own over an in-memory pipe, so every check above stays in
// one place; the gateway merges their lists under the name policy (a
// name two servers serve is served by neither: tool.shadowed), routes
// calls, and shares one taint between the servers' sessions.
//
// The proxy fails closed: when it cannot read approvals it serves no
// tools and refuses every call. It must never send the client's
// credentials upstream (it has none to send: upstream credentials are the
// server's configured references, resolved by the caller), never forward
// a call the client could not have seen listed, and never rebuild a tool
// definition from a lossy model.
package proxy
