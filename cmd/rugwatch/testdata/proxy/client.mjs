// A real MCP client for rugwatch's proxy tests and demos: the official
// TypeScript SDK's Client over stdio (a command, as a client config's
// entry runs it) or Streamable HTTP (a URL).
//
//   node client.mjs stdio COMMAND [ARG...]
//   node client.mjs http URL       ($RUGWATCH_TEST_BEARER, if set, is sent as a bearer token)
//
// It reads one JSON command per line on stdin and writes one JSON line per
// answer on stdout:
//   {"op":"list"}                          -> {"op":"list","tools":[...]}
//   {"op":"call","name":N,"arguments":A}   -> {"op":"call","result":R} or {"op":"call","error":{"code":C,"message":M}}
//   {"op":"list_resources"}                -> {"op":"list_resources","resources":[...],"resourceTemplates":[...]}
//   {"op":"read_resource","uri":U}         -> {"op":"read_resource","result":R} or {"op":"read_resource","error":{...}}
//   {"op":"wait_list_changed"}             -> {"op":"wait_list_changed"} once a
//                                             notifications/tools/list_changed arrived (since the last wait)
//   {"op":"close"}                         -> closes and exits 0
// After connecting it writes {"op":"connected","serverInfo":...,"instructions":...,"protocolVersion":...}.
// Errors it cannot answer with go to stderr with exit 1.
import { createInterface } from "node:readline";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ToolListChangedNotificationSchema } from "@modelcontextprotocol/sdk/types.js";

const [mode, target, ...rest] = process.argv.slice(2);
let transport;
if (mode === "stdio") {
  // The child gets this process's environment, as a client app passes its own.
  transport = new StdioClientTransport({ command: target, args: rest, env: process.env, stderr: "inherit" });
} else if (mode === "http") {
  // rugwatch's listeners want a bearer token, loopback included.
  const bearer = process.env.RUGWATCH_TEST_BEARER;
  const requestInit = bearer ? { headers: { Authorization: `Bearer ${bearer}` } } : undefined;
  transport = new StreamableHTTPClientTransport(new URL(target), { requestInit });
} else {
  process.stderr.write("usage: client.mjs stdio COMMAND [ARG...] | http URL\n");
  process.exit(2);
}

const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const client = new Client({ name: "rugwatch-ts-test-client", version: "1.0.0" }, { capabilities: {} });

let changed = 0;
let waiter = null;
client.setNotificationHandler(ToolListChangedNotificationSchema, async () => {
  changed++;
  if (waiter) {
    const w = waiter;
    waiter = null;
    changed = 0;
    w();
  }
});

try {
  await client.connect(transport);
} catch (e) {
  process.stderr.write(`connect: ${e?.message ?? e}\n`);
  process.exit(1);
}
out({
  op: "connected",
  serverInfo: client.getServerVersion(),
  instructions: client.getInstructions() ?? null,
  capabilities: client.getServerCapabilities(),
});

const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of rl) {
  if (!line.trim()) continue;
  const cmd = JSON.parse(line);
  try {
    switch (cmd.op) {
      case "list": {
        const res = await client.listTools();
        out({ op: "list", tools: res.tools });
        break;
      }
      case "call": {
        try {
          const res = await client.callTool({ name: cmd.name, arguments: cmd.arguments ?? {} });
          out({ op: "call", result: res });
        } catch (e) {
          out({ op: "call", error: { code: e?.code ?? null, message: String(e?.message ?? e) } });
        }
        break;
      }
      case "list_resources": {
        const res = await client.listResources();
        const tmpl = await client.listResourceTemplates();
        out({ op: "list_resources", resources: res.resources, resourceTemplates: tmpl.resourceTemplates });
        break;
      }
      case "read_resource": {
        try {
          const res = await client.readResource({ uri: cmd.uri });
          out({ op: "read_resource", result: res });
        } catch (e) {
          out({ op: "read_resource", error: { code: e?.code ?? null, message: String(e?.message ?? e) } });
        }
        break;
      }
      case "wait_list_changed": {
        if (changed > 0) {
          changed = 0;
        } else {
          await new Promise((resolve) => { waiter = resolve; });
        }
        out({ op: "wait_list_changed" });
        break;
      }
      case "close":
        await client.close();
        process.exit(0);
      default:
        out({ op: cmd.op, error: { code: null, message: "unknown op" } });
    }
  } catch (e) {
    out({ op: cmd.op, error: { code: e?.code ?? null, message: String(e?.message ?? e) } });
  }
}
await client.close();
