package main

import (
	"context"

	"github.com/rugwatch/rugwatch/control"
	"github.com/rugwatch/rugwatch/monitor"
)

// runStatus prints the last known states without polling.
func (a *App) runStatus(ctx context.Context, args []string) error {
	return a.reportCommand(ctx, "status", args, false, (*monitor.Ledger).StatusEach, control.Backend.Status)
}
