#!/usr/bin/env node
// Heap figures of the firmware on the real MicroPython VM (the WebAssembly port from npm), for
// the bench (hil/bench.py): the live heap after boot, and what one steady-state turn of the
// loop allocates.
//
//   node tests/mp/bench_heap.mjs [--json OUT] [--turns N] [--heap BYTES] [--mpy DIR]
//                                [--script FILE] [--timeout S]
//
// The board-side sources (firmware/**/*.py, protocol/*.py that do not import construct and are
// not marked `# host-only`, the files host/deploy.py puts on the board), or
// with --mpy DIR the .mpy files host/deploy.py built into DIR (firmware/**.mpy,
// protocol/*.mpy: what the board runs), and tests/board/*.py (the fake board objects of
// therapy_kit.py) are copied into the VM's filesystem under /repo, as tests/mp/run_lane.mjs
// does; then tests/mp/bench_heap.py (or --script FILE, a path in the repo: a module with a
// generator main(turns), begin(turns) and resume(live), as bench_heap.py) runs there, each of its yields
// answered with the live heap measured from here, and prints one line
//   BENCHHEAP {json}
// which this script passes on, with the VM's version added (and writes to --json OUT).
// --heap is the VM's first heap (this port grows it as needed: figures are measured, not
// limited, by it). Exit code 0 if the script printed its line, 2 otherwise (a VM crash, a
// timeout, a usage error).

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const VM_ROOT = "/repo";
const CONSTRUCT_IMPORT = /^\s*(?:import|from)\s+construct\b/m;
const HOST_ONLY = /^# host-only\b/m; // as host/deploy.py: never copied to the board
const MARK = "BENCHHEAP ";

function usage(msg) {
  if (msg) process.stderr.write(`bench_heap: ${msg}\n`);
  process.stderr.write(
    "usage: node tests/mp/bench_heap.mjs [--json OUT] [--turns N] [--heap BYTES] [--mpy DIR]" +
      " [--script FILE] [--timeout S]\n",
  );
  process.exit(2);
}

function parseArgs(argv) {
  const opts = {
    json: null, turns: 2000, heap: 192 * 1024, script: "tests/mp/bench_heap.py", timeout: 120,
    mpy: null,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => (i + 1 < argv.length ? argv[++i] : usage(`${a} needs a value`));
    if (a === "--json") opts.json = value();
    else if (a === "--turns") opts.turns = Number(value());
    else if (a === "--heap") opts.heap = Number(value());
    else if (a === "--script") opts.script = value();
    else if (a === "--mpy") opts.mpy = value();
    else if (a === "--timeout") opts.timeout = Number(value());
    else if (a === "-h" || a === "--help") usage();
    else usage(`unknown argument ${a}`);
  }
  if (!(opts.turns > 0) || !(opts.heap > 0) || !(opts.timeout > 0)) {
    usage("--turns, --heap and --timeout must be positive");
  }
  return opts;
}

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

const isPy = (name) => name.endsWith(".py");

function boardProtocolFiles() {
  return fs
    .readdirSync(path.join(ROOT, "protocol"))
    .filter((n) => isPy(n))
    .filter((n) => {
      const text = fs.readFileSync(path.join(ROOT, "protocol", n), "utf8");
      return !CONSTRUCT_IMPORT.test(text) && !HOST_ONLY.test(text);
    })
    .sort()
    .map((n) => `protocol/${n}`);
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const vmPackage = path.join(ROOT, "node_modules", "@micropython", "micropython-webassembly-pyscript");
  if (!fs.existsSync(vmPackage)) {
    process.stderr.write(`bench_heap: ${vmPackage} is missing: run 'make setup' (npm ci) first\n`);
    process.exit(2);
  }
  if (!fs.existsSync(path.join(ROOT, opts.script))) usage(`no such script ${opts.script}`);
  let sources;
  const fromRepo = (rel) => [rel, fs.readFileSync(path.join(ROOT, rel))];
  const tests = [...walk("tests/board", isPy), opts.script].map(fromRepo);
  if (opts.mpy) {
    const dir = path.resolve(opts.mpy);
    const isMpy = (name) => name.endsWith(".mpy");
    const built = [];
    for (const sub of ["firmware", "protocol"]) {
      const abs = path.join(dir, sub);
      if (!fs.existsSync(abs)) usage(`--mpy ${opts.mpy}: no ${sub}/ in it`);
      const found = (function list(d, rel) {
        const out = [];
        for (const ent of fs.readdirSync(d, { withFileTypes: true })) {
          if (ent.isDirectory()) out.push(...list(path.join(d, ent.name), `${rel}/${ent.name}`));
          else if (ent.isFile() && isMpy(ent.name)) out.push(`${rel}/${ent.name}`);
        }
        return out;
      })(abs, sub);
      built.push(...found.map((rel) => [rel, fs.readFileSync(path.join(dir, rel))]));
    }
    if (built.length === 0) usage(`--mpy ${opts.mpy}: no .mpy files`);
    sources = [...built, ...tests];
  } else {
    sources = [...walk("firmware", isPy), ...boardProtocolFiles()].map(fromRepo).concat(tests);
  }
  const worker = new Worker(fileURLToPath(import.meta.url), {
    workerData: { sources, script: opts.script, turns: opts.turns, heap: opts.heap },
    stdout: false,
    stderr: false,
  });
  let line = null;
  const output = [];
  const outcome = await new Promise((resolve) => {
    const timer = setTimeout(() => resolve({ error: `timed out after ${opts.timeout} s` }),
      opts.timeout * 1000);
    const finish = (v) => {
      clearTimeout(timer);
      resolve(v);
    };
    worker.on("message", (msg) => {
      if (msg.type === "out") {
        if (msg.text.startsWith(MARK)) line = msg.text.slice(MARK.length).trim();
        else output.push(msg.text);
      } else if (msg.type === "done") finish(msg);
      else if (msg.type === "crash") finish({ error: msg.error });
    });
    worker.on("error", (e) => finish({ error: `worker error: ${e?.stack ?? e}` }));
    worker.on("exit", (code) =>
      setTimeout(() => finish({ error: `VM worker exited (${code}) before finishing` }), 200),
    );
  });
  await worker.terminate();
  if (outcome.error || line === null) {
    process.stderr.write(output.join(""));
    process.stderr.write(`bench_heap: ${outcome.error ?? "the script printed no BENCHHEAP line"}\n`);
    process.exit(2);
  }
  const result = JSON.parse(line);
  result.micropython = outcome.version;
  const text = JSON.stringify(result);
  if (opts.json) fs.writeFileSync(opts.json, text + "\n");
  process.stdout.write(`${MARK}${text}\n`);
  process.exit(0);
}

async function runInVm({ sources, script, turns, heap }) {
  try {
    const { loadMicroPython } = await import("@micropython/micropython-webassembly-pyscript");
    const mp = await loadMicroPython({
      heapsize: heap,
      stdout: (line) => parentPort.postMessage({ type: "out", text: line + "\n" }),
      stderr: (line) => parentPort.postMessage({ type: "out", text: line + "\n" }),
    });
    for (const [rel, data] of sources) {
      const dest = `${VM_ROOT}/${rel}`;
      mp.FS.mkdirTree(path.posix.dirname(dest));
      mp.FS.writeFile(dest, data);
    }
    const dir = path.posix.dirname(script);
    const name = path.posix.basename(script, ".py");
    mp.runPython(`
import os, sys
os.chdir(${JSON.stringify(VM_ROOT)})
sys.path.insert(0, ${JSON.stringify(VM_ROOT)})
sys.path.insert(0, ${JSON.stringify(`${VM_ROOT}/tests/board`)})
sys.path.insert(0, ${JSON.stringify(`${VM_ROOT}/${dir}`)})
`);
    // The script's main(turns) is a generator: it yields where it wants the live heap. This
    // port's gc.collect() only collects when control is back in JavaScript (it cannot scan the
    // WebAssembly stack: a collection asked for inside Python is deferred, and gc.mem_alloc()
    // there counts the garbage too), so each measurement is taken here, between two calls into
    // Python: collect, then read gc.mem_alloc(), and send it in. Functions are looked up once
    // (each proxy handed to JavaScript is an object Python keeps).
    const mod = mp.pyimport(name);
    const gc = mp.pyimport("gc");
    const collect = gc.collect;
    const memAlloc = gc.mem_alloc;
    const resume = mod.resume;
    mod.begin(turns);
    let live = null;
    while (resume(live)) {
      collect();
      live = memAlloc();
    }
    const version = `${mp.pyimport("sys").version}`;
    parentPort.postMessage({ type: "done", version });
  } catch (e) {
    parentPort.postMessage({ type: "crash", error: `${e?.stack ?? e}` });
  }
}

if (isMainThread) {
  await main();
} else {
  await runInVm(workerData);
}
