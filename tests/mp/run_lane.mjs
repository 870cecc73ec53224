#!/usr/bin/env node
// The MicroPython lane: run tests/board/test_*.py on the real MicroPython VM (the WebAssembly
// port from npm), the same files pytest runs on CPython.
//
//   node tests/mp/run_lane.mjs [--json OUT] [--timeout S] [--heap BYTES] [SELECT...]
//
// SELECT picks test files: a path (tests/board/test_codec.py), a file name (test_codec.py) or
// a module name (test_codec), optionally with ::test_name to run one test.
//
// The board-side sources (firmware/**/*.py, and protocol/*.py that do not import construct),
// protocol/vectors/**, tests/board/** and tests/mp/runner.py are copied into the VM's
// filesystem under /repo, mirroring the repo's paths; the VM's cwd is /repo, so a test opens
// "protocol/vectors/x.json" just as it does on CPython from the repo root.
//
// Output: the VM's output as it runs (PASS/FAIL per test, tracebacks), then
//   MPLANE FAIL <test id> <traceback as a JSON string>      one line per failure
//   MPLANE passed=N failed=M
//   mplane: N passed, M failed
// Exit code: 0 if every test passed and at least one ran; 1 if any failed or none ran;
// 2 on a usage error, a VM crash or a timeout. --json OUT writes
// {"micropython", "files", "passed": [ids], "failed": [{"id", "traceback"}]}.
//
// The VM runs in a worker thread so that --timeout (default 60 s) can stop a test that hangs.

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const VM_ROOT = "/repo";
const VM_RESULTS = "/mplane/results.json";
const CONSTRUCT_IMPORT = /^\s*(?:import|from)\s+construct\b/m;

// ---- main thread -----------------------------------------------------------------------

function usage(msg) {
  if (msg) process.stderr.write(`run_lane: ${msg}\n`);
  process.stderr.write(
    "usage: node tests/mp/run_lane.mjs [--lane board|rig] [--json OUT] [--timeout S] " +
      "[--heap BYTES] [SELECT...]\n",
  );
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { lane: "board", json: null, timeout: 60, heap: 4 * 1024 * 1024, select: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => (i + 1 < argv.length ? argv[++i] : usage(`${a} needs a value`));
    if (a === "--lane") opts.lane = value();
    else if (a === "--json") opts.json = value();
    else if (a === "--timeout") opts.timeout = Number(value());
    else if (a === "--heap") opts.heap = Number(value());
    else if (a === "-h" || a === "--help") usage();
    else if (a.startsWith("-")) usage(`unknown option ${a}`);
    else opts.select.push(a);
  }
  if (!(opts.timeout > 0) || !(opts.heap > 0)) usage("--timeout and --heap must be positive");
  if (!(opts.lane in LANES)) usage(`--lane is one of ${Object.keys(LANES).join(", ")}`);
  return opts;
}

// Repo-relative paths (with "/") of the files under dir whose name passes keep.
function walk(dir, keep) {
  const out = [];
  const abs = path.join(ROOT, dir);
  if (!fs.existsSync(abs)) return out;
  for (const ent of fs.readdirSync(abs, { withFileTypes: true })) {
    if (ent.name === "__pycache__" || ent.name.startsWith(".")) continue;
    const rel = `${dir}/${ent.name}`;
    if (ent.isDirectory()) out.push(...walk(rel, keep));
    else if (ent.isFile() && keep(ent.name)) out.push(rel);
  }
  return out.sort();
}

function isPy(name) {
  return name.endsWith(".py");
}

function boardProtocolFiles() {
  const abs = path.join(ROOT, "protocol");
  if (!fs.existsSync(abs)) return [];
  return fs
    .readdirSync(abs)
    .filter((n) => isPy(n) && fs.statSync(path.join(abs, n)).isFile())
    .filter((n) => !CONSTRUCT_IMPORT.test(fs.readFileSync(path.join(abs, n), "utf8")))
    .sort()
    .map((n) => `protocol/${n}`);
}

// {files: [test file paths], only: {path: [test names]} | null}
// What each lane copies to the VM and which test files it runs there: the pump's firmware
// and board-side protocol with tests/board, or the rig controller (hil/rigctl) with its core
// tests and their fake board.
const LANES = {
  board: {
    copy: () => [
      ...walk("firmware", isPy),
      ...boardProtocolFiles(),
      ...walk("protocol/vectors", () => true),
      ...walk("tests/board", () => true),
    ],
    tests: () =>
      walk("tests/board", (n) => n.startsWith("test_") && isPy(n)).filter(
        (p) => p.split("/").length === 3,
      ),
  },
  rig: {
    copy: () => ["hil/__init__.py", ...walk("hil/rigctl", isPy), "tests/rig/rigfake.py",
                 "tests/rig/test_rigctl_core.py"],
    tests: () => ["tests/rig/test_rigctl_core.py"],
  },
};

function selectTests(select, lane) {
  const all = LANES[lane].tests();
  if (select.length === 0) return { files: all, only: null };
  const files = new Set();
  const only = {};
  let wholeFiles = new Set();
  for (const sel of select) {
    const [fileSel, testName] = sel.split("::");
    const matches = all.filter((p) => {
      const base = path.posix.basename(p);
      return p === fileSel || base === fileSel || base === `${fileSel}.py`;
    });
    if (matches.length === 0) usage(`no test file matches ${JSON.stringify(sel)}`);
    for (const p of matches) {
      files.add(p);
      if (testName) (only[p] ??= []).push(testName);
      else wholeFiles.add(p);
    }
  }
  for (const p of wholeFiles) delete only[p];
  return { files: all.filter((p) => files.has(p)), only: Object.keys(only).length ? only : null };
}

async function main() {
  // A closed pipe (e.g. `| head`) ends the run quietly instead of with a stack trace.
  process.stdout.on("error", (e) => process.exit(e.code === "EPIPE" ? 1 : 2));
  const opts = parseArgs(process.argv.slice(2));
  const vmPackage = path.join(ROOT, "node_modules", "@micropython", "micropython-webassembly-pyscript");
  if (!fs.existsSync(vmPackage)) {
    process.stderr.write(`run_lane: ${vmPackage} is missing: run 'make setup' (npm ci) first\n`);
    process.exit(2);
  }
  const { files, only } = selectTests(opts.select, opts.lane);
  const copy = [...LANES[opts.lane].copy(), "tests/mp/runner.py"];
  const sources = copy.map((rel) => [rel, fs.readFileSync(path.join(ROOT, rel))]);
  process.stdout.write(
    `mplane: ${copy.length} files copied to the VM; ${files.length} test file(s)\n`,
  );

  const worker = new Worker(fileURLToPath(import.meta.url), {
    workerData: { sources, files, only, heap: opts.heap },
    stdout: false,
    stderr: false,
  });
  let current = null; // the test running now, for the timeout message
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
    // Give messages still in flight a moment to arrive before calling an exit a crash.
    worker.on("exit", (code) =>
      setTimeout(() => finish({ error: `VM worker exited (${code}) before finishing` }), 200),
    );
  });
  await worker.terminate();

  if (outcome.error) {
    if (opts.json) fs.writeFileSync(opts.json, JSON.stringify({ error: outcome.error }) + "\n");
    process.stdout.write(`MPLANE ERROR ${JSON.stringify(outcome.error)}\n`);
    process.stdout.write("mplane: 0 passed, 1 failed\n");
    process.exit(2);
  }
  const { passed, failed } = outcome.results;
  for (const f of failed) process.stdout.write(`MPLANE FAIL ${f.id} ${JSON.stringify(f.traceback)}\n`);
  process.stdout.write(`MPLANE passed=${passed.length} failed=${failed.length}\n`);
  if (opts.json) {
    const report = { micropython: outcome.version, files, passed, failed };
    fs.writeFileSync(opts.json, JSON.stringify(report, null, 1) + "\n");
  }
  if (passed.length + failed.length === 0) process.stdout.write("MPLANE ERROR \"no test ran\"\n");
  process.stdout.write(`mplane: ${passed.length} passed, ${failed.length} failed\n`);
  process.exit(failed.length === 0 && passed.length > 0 ? 0 : 1);
}

// ---- worker thread: the VM ----------------------------------------------------------------

async function runInVm({ sources, files, only, heap }) {
  try {
    const { loadMicroPython } = await import("@micropython/micropython-webassembly-pyscript");
    const mp = await loadMicroPython({
      heapsize: heap,
      // Through the message port, so that output stays in order with the "done" message.
      stdout: (line) => parentPort.postMessage({ type: "out", text: line + "\n" }),
      stderr: (line) => parentPort.postMessage({ type: "err", text: line + "\n" }),
    });
    mp.FS.mkdirTree(path.posix.dirname(VM_RESULTS));
    for (const [rel, data] of sources) {
      const dest = `${VM_ROOT}/${rel}`;
      mp.FS.mkdirTree(path.posix.dirname(dest));
      mp.FS.writeFile(dest, data);
    }
    mp.registerJsModule("mplane_js", {
      started: (id) => parentPort.postMessage({ type: "started", id }),
    });
    mp.runPython(`
import os, sys
os.chdir(${JSON.stringify(VM_ROOT)})
sys.path.insert(0, ${JSON.stringify(VM_ROOT)})
sys.path.insert(0, ${JSON.stringify(`${VM_ROOT}/tests/mp`)})
import runner
sys.path.pop(0)
import json, mplane_js
runner.main(json.loads(${JSON.stringify(JSON.stringify(files))}),
            ${JSON.stringify(VM_RESULTS)},
            json.loads(${JSON.stringify(JSON.stringify(only))}),
            mplane_js.started)
`);
    const results = JSON.parse(mp.FS.readFile(VM_RESULTS, { encoding: "utf8" }));
    const version = `${mp.pyimport("sys").version}`;
    parentPort.postMessage({ type: "done", results, version });
  } catch (e) {
    parentPort.postMessage({ type: "crash", error: `${e?.stack ?? e}` });
  }
}

// Last, so that every top-level const above is initialised when main() runs.
if (isMainThread) {
  await main();
} else {
  await runInVm(workerData);
}
