package monitor

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/rugwatch/rugwatch/mcpclient"
	"github.com/rugwatch/rugwatch/testkit"
)

// outsideTmp is a directory others may enter, outside /tmp.
func outsideTmp(t testing.TB) string { return testkit.OutsideTmp(t, 0o755) }

// eraHTTP serves s over Streamable HTTP; 2026-07-28 needs a stateless
// handler. methods, when set, hears every method the server receives.
func eraHTTP(t testing.TB, s *mcp.Server, stateless bool) mcpclient.Target {
	h := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s },
		&mcp.StreamableHTTPOptions{Stateless: stateless}))
	t.Cleanup(h.Close)
	return mcpclient.Target{Name: "http", Transport: mcpclient.TransportHTTP, URL: h.URL}
}

func eraStdio(t testing.TB, scenario string, versions []string, env map[string]string) mcpclient.Target {
	return selfTarget(t, "era:"+scenario+":"+strings.Join(versions, ","), env)
}

const tinyLib = `export const tools = [{ name: "echo", description: "Echoes its input.", inputSchema: { type: "object" } }];
`

// tinyServer is a Node stdio MCP server whose tool comes from a sibling
// module: the code that runs is more than the file node is given.
const tinyServer = `import readline from "node:readline";
import { tools } from "./lib.mjs";

const rl = readline.createInterface({ input: process.stdin });
const send = (m) => process.stdout.write(JSON.stringify(m) + "\n");
rl.on("line", (line) => {
  let m;
  try {
    m = JSON.parse(line);
  } catch {
    return;
  }
  if (m.id === undefined) return;
  switch (m.method) {
    case "initialize":
      send({ jsonrpc: "2.0", id: m.id, result: { protocolVersion: m.params.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: "tiny", version: "1" } } });
      break;
    case "tools/list":
      send({ jsonrpc: "2.0", id: m.id, result: { tools } });
      break;
    case "ping":
      send({ jsonrpc: "2.0", id: m.id, result: {} });
      break;
    default:
      send({ jsonrpc: "2.0", id: m.id, error: { code: -32601, message: "method not found" } });
  }
});
rl.on("close", () => process.exit(0));
`
