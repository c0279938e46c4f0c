// Re-capture the listings described in sources.json.
//
//   node refresh.mjs                 # every entry
//   node refresh.mjs github notion   # some entries (file name without .json)
//
// For each entry: install package@version (exact) into a fresh temporary
// directory with `npm install --no-audit --no-fund`, write the entry's dummy
// credential files (paths relative to that directory), run
// node_modules/.bin/<bin> <args> through capture.mjs with a clean environment
// (PATH, HOME=<dir>/home, and each name in env set to "dummy"), then write
// <file> and update the entry's tool count in sources.json.
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const here = path.dirname(new URL(import.meta.url).pathname);
const sourcesPath = path.join(here, "sources.json");
const sources = JSON.parse(fs.readFileSync(sourcesPath, "utf8"));
const only = process.argv.slice(2).map((a) => a.replace(/\.json$/, ""));
let failed = 0;

// run starts capture.mjs in its own process group and, once it has exited,
// kills what is left of that group: some servers start helpers that outlive
// them (@heroku/mcp-server starts `npx -y heroku@latest --repl`).
function run(cmd, args, opts) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { ...opts, detached: true, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
    child.on("close", (status) => {
      clearTimeout(timer);
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {}
      resolve({ status, stdout, stderr });
    });
  });
}

for (const src of sources) {
  if (only.length && !only.includes(src.file.replace(/\.json$/, ""))) continue;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `rugwatch-real-${src.file.replace(/\.json$/, "")}-`));
  fs.writeFileSync(path.join(dir, "package.json"), '{"private":true}\n');
  fs.mkdirSync(path.join(dir, "home"));
  const inst = spawnSync("npm", ["install", "--no-audit", "--no-fund", `${src.package}@${src.version}`], {
    cwd: dir,
    encoding: "utf8",
    timeout: 600_000,
    env: { ...process.env, PUPPETEER_SKIP_DOWNLOAD: "1", PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD: "1" },
  });
  if (inst.status !== 0) {
    console.error(`${src.file}: npm install failed\n${inst.stderr}`);
    failed++;
    continue;
  }
  for (const [rel, content] of Object.entries(src.files ?? {})) {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    fs.writeFileSync(path.join(dir, rel), content);
  }
  const env = { PATH: process.env.PATH, HOME: path.join(dir, "home") };
  for (const name of src.env) env[name] = "dummy";
  const cap = await run(
    process.execPath,
    [path.join(here, "capture.mjs"), "--cwd", dir, "--timeout", "60", "--", path.join(dir, "node_modules/.bin", src.bin), ...src.args],
    { cwd: dir, env },
  );
  const summary = (cap.stderr.match(/capture: .*/g) ?? ["capture: no output"]).pop();
  if (cap.status !== 0) {
    console.error(`${src.file}: ${summary}`);
    failed++;
    continue;
  }
  const tools = JSON.parse(cap.stdout);
  fs.writeFileSync(path.join(here, src.file), cap.stdout);
  src.tools = tools.length;
  console.error(`${src.file}: ${summary}`);
  try {
    fs.rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
  } catch (err) {
    console.error(`${src.file}: left ${dir}: ${err.message}`);
  }
}

fs.writeFileSync(sourcesPath, "[\n" + sources.map((s) => "  " + JSON.stringify(s)).join(",\n") + "\n]\n");
process.exit(failed ? 1 : 0);
