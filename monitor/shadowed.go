package monitor

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/store"
)

// ToolShadowed records that servers (two or more) behind one gateway
// serve a tool called tool, which the gateway therefore serves from none
// of them, as one critical tool.shadowed event under the first of them.
func (l *Ledger) ToolShadowed(ctx context.Context, tool string, servers []string) error {
	return l.toolShadowed(ctx, tool, servers, nil)
}

// ToolShadowed is Ledger.ToolShadowed, telling OnEvent what it recorded.
func (o Observed) ToolShadowed(ctx context.Context, tool string, servers []string) error {
	return o.toolShadowed(ctx, tool, servers, o.OnEvent)
}

func (l *Ledger) toolShadowed(ctx context.Context, tool string, servers []string, onEvent func(rugwatch.Event)) error {
	servers = slices.Sorted(slices.Values(servers))
	if len(servers) < 2 {
		return usagef("tool.shadowed needs two servers, got %d", len(servers))
	}
	for _, s := range servers {
		if _, ok := l.server(s); !ok {
			return usagef("no server %q in %s (configured: %s)", s, l.Where, l.serverNames())
		}
	}
	e := rugwatch.Event{Type: rugwatch.EventToolShadowed, Severity: rugwatch.SeverityCritical, Server: servers[0], Tool: tool,
		OccurredAt: l.now(), Message: fmt.Sprintf("servers %s each serve a tool of this name; the gateway serves it from neither until one is removed from the gateway or renamed (or gateway.names: prefixed)",
			strings.Join(servers, " and "))}
	if err := l.DB.Update(func(tx *store.Tx) error { return l.appendEvent(tx, &e) }); err != nil {
		return err
	}
	tell(onEvent, []rugwatch.Event{e})
	if l.AfterNotice != nil {
		return l.AfterNotice(ctx)
	}
	return l.afterWrite(ctx)
}
