#!/usr/bin/env node
// The rig controller's MicroPython lane: the core tests of the rig controller
// (tests/rig/test_rigctl_core.py, with its fake board) on the real MicroPython VM, the same
// files pytest runs on CPython.
//
//   node tests/mp/run_rig_lane.mjs [--json OUT] [--timeout S]
//
// It reuses the board lane's VM worker (run_lane.mjs, started as a worker thread, runs
// runner.py in the WebAssembly VM) with its own set of files: hil/rigctl/*.py (the rig's
// board-side code), hil/__init__.py, tests/rig/rigfake.py and the test file, under /repo as in
// the repository. Output and exit code as run_lane.mjs: PASS/FAIL lines, then
//   MPLANE FAIL <test id> <traceback as a JSON string>      one line per failure
//   MPLANE passed=N failed=M
// and 0 if every test passed and at least one ran, 1 if any failed or none ran, 2 on a usage
// error, a VM crash or a timeout.

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, "..", "..");
const VM_WORKER = path.join(HERE, "run_lane.mjs");
const TESTS = ["tests/rig/test_rigctl_core.py"];
const HEAP = 4 * 1024 * 1024;

function usage(msg) {
  if (msg) process.stderr.write(`run_rig_lane: ${msg}\n`);
  process.stderr.write("usage: node tests/mp/run_rig_lane.mjs [--json OUT] [--timeout S]\n");
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { json: null, timeout: 60 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => (i + 1 < argv.length ? argv[++i] : usage(`${a} needs a value`));
    if (a === "--json") opts.json = value();
    else if (a === "--timeout") opts.timeout = Number(value());
    else usage(`unknown argument ${a}`);
  }
  if (!(opts.timeout > 0)) usage("--timeout must be positive");
  return opts;
}

function sourceFiles() {
  const rigctl = fs
    .readdirSync(path.join(ROOT, "hil", "rigctl"))
    .filter((n) => n.endsWith(".py"))
    .sort()
    .map((n) => `hil/rigctl/${n}`);
  return ["hil/__init__.py", ...rigctl, "tests/rig/rigfake.py", ...TESTS, "tests/mp/runner.py"];
}

async function main() {
  process.stdout.on("error", (e) => process.exit(e.code === "EPIPE" ? 1 : 2));
  const opts = parseArgs(process.argv.slice(2));
  const vmPackage = path.join(ROOT, "node_modules", "@micropython", "micropython-webassembly-pyscript");
  if (!fs.existsSync(vmPackage)) {
    process.stderr.write(`run_rig_lane: ${vmPackage} is missing: run 'make setup' (npm ci) first\n`);
    process.exit(2);
  }
  const copy = sourceFiles();
  const sources = copy.map((rel) => [rel, fs.readFileSync(path.join(ROOT, rel))]);
  process.stdout.write(`mplane(rig): ${copy.length} files copied to the VM; ${TESTS.length} test file(s)\n`);

  const worker = new Worker(VM_WORKER, {
    workerData: { sources, files: TESTS, only: null, heap: HEAP },
    stdout: false,
    stderr: false,
  });
  let current = null;
  const outcome = await new Promise((resolve) => {
    const timer = setTimeout(() => {
      worker.terminate();
      resolve({ error: `timed out after ${opts.timeout} s` + (current ? ` in ${current}` : "") });
    }, opts.timeout * 1000);
    const finish = (v) => {
      clearTimeout(timer);
      resolve(v);
    };
    worker.on("message", (msg) => {
      if (msg.type === "out") process.stdout.write(msg.text);
      else if (msg.type === "err") process.stderr.write(msg.text);
      else if (msg.type === "started") current = msg.id;
      else if (msg.type === "done") finish(msg);
      else if (msg.type === "crash") finish({ error: msg.error });
    });
    worker.on("error", (e) => finish({ error: `worker error: ${e?.stack ?? e}` }));
    worker.on("exit", (code) =>
      setTimeout(() => finish({ error: `VM worker exited (${code}) before finishing` }), 200),
    );
  });
  await worker.terminate();

  if (outcome.error) {
    if (opts.json) fs.writeFileSync(opts.json, JSON.stringify({ error: outcome.error }) + "\n");
    process.stdout.write(`MPLANE ERROR ${JSON.stringify(outcome.error)}\n`);
    process.exit(2);
  }
  const { passed, failed } = outcome.results;
  for (const f of failed) process.stdout.write(`MPLANE FAIL ${f.id} ${JSON.stringify(f.traceback)}\n`);
  process.stdout.write(`MPLANE passed=${passed.length} failed=${failed.length}\n`);
  if (opts.json) {
    const report = { micropython: outcome.version, files: TESTS, passed, failed };
    fs.writeFileSync(opts.json, JSON.stringify(report, null, 1) + "\n");
  }
  process.exit(failed.length === 0 && passed.length > 0 ? 0 : 1);
}

await main();
