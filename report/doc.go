// Package report is what every front end prints about rugwatch's state:
// the status, check, diff, verify and alerts reports as JSON types with
// stable field names (report.go), and SARIF 2.1.0 for code-scanning
// tools (sarif.go). The CLI, the control socket, the web view and the
// metrics read these types; none of them needs the state machine to.
package report
