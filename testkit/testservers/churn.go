package testservers

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ChurnMode is the mode of the churning server: a stdio server whose every
// listing holds the tools "keep" (its description from $KEEP_DESC) and
// "stable", and $CHURN_N tools it never listed before, named churn_<random>_<i>, as a
// server that floods its watcher with new names would. Each poll starts a
// new process, so each poll sees new names.
const ChurnMode = "churn"

func churnServer() {
	n, _ := strconv.Atoi(os.Getenv("CHURN_N"))
	keep := os.Getenv("KEEP_DESC")
	if keep == "" {
		keep = "Adds two numbers."
	}
	var salt [6]byte
	_, _ = rand.Read(salt[:])
	prefix := "churn_" + hex.EncodeToString(salt[:]) + "_"
	desc, _ := json.Marshal(keep)

	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	out := bufio.NewWriter(os.Stdout)
	for in.Scan() {
		var req struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		if json.Unmarshal(in.Bytes(), &req) != nil || req.ID == nil {
			continue
		}
		result := `{}`
		switch req.Method {
		case "initialize":
			result = `{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"churn","version":"1"}}`
		case "tools/list":
			var b strings.Builder
			fmt.Fprintf(&b, `{"tools":[{"name":"keep","description":%s,"inputSchema":{"type":"object","properties":{"a":{"type":"number"}}}}`, desc)
			b.WriteString(`,{"name":"stable","description":"Never changes.","inputSchema":{"type":"object"}}`)
			for i := range n {
				fmt.Fprintf(&b, `,{"name":"%s%d","description":"Churned tool %d.","inputSchema":{"type":"object"}}`, prefix, i, i)
			}
			b.WriteString(`]}`)
			result = b.String()
		}
		fmt.Fprintf(out, `{"jsonrpc":"2.0","id":%s,"result":%s}`+"\n", req.ID, result)
		out.Flush()
	}
}
