package store

import "time"

// ChurnState is what a ServerRecord remembers of the new tool names its
// server listed: a budget that drains at the configured rate per hour,
// and, while the server churns, how much of its listings was summarised
// rather than recorded. The monitor decides every field (monitor/churn.go);
// the store only keeps them.
type ChurnState struct {
	// Spent is how many new names the budget had counted at At.
	Spent float64   `json:"spent"`
	At    time.Time `json:"at"`
	// Since is when the server started churning; zero while it does not.
	Since time.Time `json:"since,omitzero"`
	// Summarised counts the new names left unrecorded since ReportedAt,
	// the time of the last server.churning event.
	Summarised int       `json:"summarised,omitempty"`
	ReportedAt time.Time `json:"reported_at,omitzero"`
}
