package notify

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/rugwatch/rugwatch"
)

// PayloadVersion is the "version" of the webhook body.
const PayloadVersion = 1

// payload is the webhook body of DESIGN.md. Every key is always present,
// so receivers see one stable shape; fields may be added, never renamed.
type payload struct {
	Version        int                `json:"version"`
	ID             string             `json:"id"`
	Type           rugwatch.EventType `json:"type"`
	Severity       rugwatch.Severity  `json:"severity"`
	Server         string             `json:"server"`
	Tool           string             `json:"tool"`
	ApprovedDigest rugwatch.Digest    `json:"approved_digest"`
	ObservedDigest rugwatch.Digest    `json:"observed_digest"`
	Changes        []rugwatch.Change  `json:"changes"`
	Findings       []rugwatch.Finding `json:"findings"`
	OccurredAt     string             `json:"occurred_at"`
	Message        string             `json:"message"`
	// Seq and ChainHead place the event in the hash-chained log, so a
	// receiver can later prove the log was cut or rolled back:
	// rugwatch verify --head SEQ:CHAIN_HEAD.
	Seq       uint64          `json:"seq"`
	ChainHead rugwatch.Digest `json:"chain_head"`
}

// Payload is the webhook body for e. It is marshalled once per send and
// those exact bytes are signed and sent.
func Payload(e rugwatch.Event) ([]byte, error) {
	p := payload{
		Version:        PayloadVersion,
		ID:             e.ID,
		Type:           e.Type,
		Severity:       e.Severity,
		Server:         e.Server,
		Tool:           e.Tool,
		ApprovedDigest: e.ApprovedDigest,
		ObservedDigest: e.ObservedDigest,
		Changes:        e.Changes,
		Findings:       e.Findings,
		OccurredAt:     e.OccurredAt.UTC().Format(time.RFC3339),
		Message:        e.Message,
		Seq:            e.Seq,
		ChainHead:      e.ChainHead,
	}
	if p.Changes == nil {
		p.Changes = []rugwatch.Change{}
	}
	if p.Findings == nil {
		p.Findings = []rugwatch.Finding{}
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("marshal payload of event %s: %w", e.ID, err)
	}
	return b, nil
}
