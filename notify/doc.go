// Package notify owns rugwatch's alert channels (log, Standard Webhooks,
// SMTP email), the webhook payload, and the outbox dispatcher that carries
// every queued delivery to its channel with retries and backoff.
//
// The flow: the transaction that appends an event also queues one
// store.Delivery per routed channel (Route, then Enqueue). The Dispatcher
// picks due deliveries from the store, calls the channel's Notifier outside
// any transaction, and records the outcome afterwards: delivered only once
// the receiver acknowledged (2xx, SMTP 250 after DATA), rescheduled with
// exponential backoff on a retryable failure, dead on a permanent one. A
// dead delivery raises an "alert.dead" event that the other channels get;
// a webhook answering 410 Gone is disabled and reported as
// "alert.disabled". Delivery is at least once; the event id is the
// idempotency key (webhook-id header, email Message-ID).
//
// What notify must never do: log, store or return a secret. Webhook signing
// secrets, custom header values and SMTP passwords are configs.Secret
// references resolved at the moment of each send, kept only in that call's
// locals, and every error a Notifier returns has the resolved values
// scrubbed out before it leaves the call. Text from MCP servers reaches
// email and logs only through package visible, and never reaches a mail
// header unescaped. notify does not speak MCP, evaluate tools or read the
// config file; it is handed a parsed configs.Config.
package notify
