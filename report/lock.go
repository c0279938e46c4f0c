package report

// LockReport is `rugwatch lock verify --json`: every approval of a lock
// file, what its signatures amount to, and with --live whether the
// servers still serve what it approves. OK is false when any approval or
// the live comparison has a problem (exit 1).
type LockReport struct {
	SchemaVersion int            `json:"schema_version"`
	File          string         `json:"file"`
	Approvals     []LockApproval `json:"approvals"`
	// Live is set with --live: one entry per thing observed that the
	// file does not approve as observed.
	Live       bool           `json:"live"`
	Mismatches []LockMismatch `json:"mismatches"`
	OK         bool           `json:"ok"`
}

// LockApproval is one approval of a lock file.
type LockApproval struct {
	Server string `json:"server"`
	Kind   string `json:"kind"`
	Tool   string `json:"tool,omitempty"`
	Digest string `json:"digest"`
	// Signers are the names (else key ids) of the signatures that count;
	// Signatures is "2 of 2" against the server's quorum.
	Signers    []string `json:"signers"`
	Signatures string   `json:"signatures"`
	Problems   []string `json:"problems"`
}

// LockMismatch is a live server that no longer matches the file: a tool
// whose observed digest is not the approved one, one the file approves
// that the server no longer lists, one it lists that the file does not
// approve, or a server that could not be reached.
type LockMismatch struct {
	Server   string `json:"server"`
	Kind     string `json:"kind"`
	Tool     string `json:"tool,omitempty"`
	Locked   string `json:"locked_digest,omitempty"`
	Observed string `json:"observed_digest,omitempty"`
	Problem  string `json:"problem"`
}
