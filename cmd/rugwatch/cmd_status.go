package main

import "context"

// runStatus prints the last known states without polling.
func (a *App) runStatus(ctx context.Context, args []string) error {
	return a.reportCommand(ctx, "status", args, false, backend.Status)
}
