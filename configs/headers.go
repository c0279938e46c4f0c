package configs

import (
	"net/textproto"
	"strings"
)

// HeaderUse says where configured headers are sent.
type HeaderUse int

const (
	// ServerHeaders go on every request to an MCP server.
	ServerHeaders HeaderUse = iota
	// WebhookHeaders go on every webhook delivery.
	WebhookHeaders
)

// reservedHeaders are the headers rugwatch, or the MCP transport it
// speaks through, sets itself, with the uses where it does: a configured
// value would break framing, the MCP session or revision negotiation, or
// the webhook's signature. It is the one list: validation refuses them,
// discover leaves them out, and each sender skips them.
var reservedHeaders = map[string][]HeaderUse{
	"Host":              {ServerHeaders, WebhookHeaders},
	"Content-Length":    {ServerHeaders, WebhookHeaders},
	"Transfer-Encoding": {ServerHeaders, WebhookHeaders},
	"Connection":        {ServerHeaders, WebhookHeaders},
	"Content-Type":      {ServerHeaders, WebhookHeaders},
	// Streamable HTTP: the client must accept both JSON and an event
	// stream, and a configured Accept replaced the SDK's on every request.
	"Accept":               {ServerHeaders},
	"Mcp-Session-Id":       {ServerHeaders},
	"Mcp-Protocol-Version": {ServerHeaders},
	"Last-Event-Id":        {ServerHeaders},
	// 2026-07-28 carries the method and the tool's name in headers too.
	"Mcp-Method":        {ServerHeaders},
	"Mcp-Name":          {ServerHeaders},
	"Webhook-Id":        {WebhookHeaders},
	"Webhook-Timestamp": {WebhookHeaders},
	"Webhook-Signature": {WebhookHeaders},
}

// reservedPrefixes are header families reserved as a whole.
var reservedPrefixes = map[string][]HeaderUse{
	"Mcp-Param-": {ServerHeaders}, // 2026-07-28: one per mirrored parameter
}

// ReservedHeader reports whether a configured header called name (any
// case) is one rugwatch sets itself for use.
func ReservedHeader(use HeaderUse, name string) bool {
	canon := textproto.CanonicalMIMEHeaderKey(name)
	for _, u := range reservedHeaders[canon] {
		if u == use {
			return true
		}
	}
	for prefix, uses := range reservedPrefixes {
		if strings.HasPrefix(canon, prefix) {
			for _, u := range uses {
				if u == use {
					return true
				}
			}
		}
	}
	return false
}
