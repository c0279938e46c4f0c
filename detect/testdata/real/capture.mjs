// Capture the `tools` array of an MCP server's tools/list over stdio.
//
//   node capture.mjs [--cwd DIR] [--timeout SECONDS] -- COMMAND [ARGS...] > out.json
//
// Uses the official TypeScript SDK client (@modelcontextprotocol/sdk, resolved
// from the rugwatch repository's node_modules). The child inherits this
// process's environment, so dummy API keys are given as ordinary variables:
//
//   GITHUB_PERSONAL_ACCESS_TOKEN=dummy node capture.mjs -- node_modules/.bin/mcp-server-github
//
// tools/list is paginated to the end (a repeated cursor is an error); the concatenated tools are printed as
// one pretty JSON array on stdout. The server's stderr goes to our stderr.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import * as z from "zod";

// tools/list is requested with a permissive result schema rather than
// client.listTools(): the tools are kept exactly as the server sent them (no
// unknown field stripped, no listing rejected for a non-conforming
// inputSchema, as server-gitlab's is).
const ListToolsLoose = z.looseObject({
  tools: z.array(z.unknown()),
  nextCursor: z.string().optional(),
});

let cwd = process.cwd();
let timeout = 60;
const argv = process.argv.slice(2);
while (argv.length && argv[0] !== "--") {
  const flag = argv.shift();
  if (flag === "--cwd") cwd = argv.shift();
  else if (flag === "--timeout") timeout = Number(argv.shift());
  else {
    console.error(`unknown flag ${flag}`);
    process.exit(2);
  }
}
argv.shift(); // "--"
if (!argv.length) {
  console.error("usage: node capture.mjs [--cwd DIR] [--timeout S] -- COMMAND [ARGS...]");
  process.exit(2);
}
const [command, ...args] = argv;

const timer = setTimeout(() => {
  console.error(`capture: timeout after ${timeout}s`);
  process.exit(3);
}, timeout * 1000);

const transport = new StdioClientTransport({
  command,
  args,
  cwd,
  env: { ...process.env },
  stderr: "inherit",
});
let protocol = "?";
transport.setProtocolVersion = (v) => {
  protocol = v;
};
const client = new Client({ name: "rugwatch-capture", version: "0.0.0" });
try {
  await client.connect(transport);
  const tools = [];
  let cursor;
  let pages = 0;
  do {
    const res = await client.request(
      { method: "tools/list", params: cursor ? { cursor } : {} },
      ListToolsLoose,
    );
    tools.push(...res.tools);
    if (res.nextCursor && res.nextCursor === cursor) throw new Error(`repeated cursor ${cursor}`);
    cursor = res.nextCursor;
    pages++;
  } while (cursor);
  const sv = client.getServerVersion();
  console.error(
    `capture: ${tools.length} tools in ${pages} page(s); server ${sv?.name} ${sv?.version}; protocol ${protocol}`,
  );
  process.stdout.write(JSON.stringify(tools, null, 2) + "\n");
  clearTimeout(timer);
  await client.close().catch(() => {});
  process.exit(0);
} catch (err) {
  console.error(`capture: ${err?.stack ?? err}`);
  process.exit(1);
}
