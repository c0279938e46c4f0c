package main

import (
	"context"

	"github.com/rugwatch/rugwatch/control"
)

// runStatus prints the last known states without polling.
func (a *App) runStatus(ctx context.Context, args []string) error {
	return a.reportCommand(ctx, "status", args, false, control.Backend.Status)
}
