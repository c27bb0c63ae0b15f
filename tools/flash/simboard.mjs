// Runs a simulated MicroPython board: the official WebAssembly port, with the board's
// flash mirrored from a host directory before the run and back after it (also when the
// program raised), as flash keeps its contents across a deep sleep or a crash.
// stdin: JSON {"port": dir of micropython.mjs, "flash": dir, "sim": dir, "simfs": dir,
//              "script": str, "heapsize": int}
// stdout: what the board printed; exit 1 with the traceback on stderr if it raised.
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const job = JSON.parse(Buffer.concat(chunks).toString("utf8"));
const { loadMicroPython } = await import(pathToFileURL(path.join(job.port, "micropython.mjs")));

const mp = await loadMicroPython({
  heapsize: job.heapsize || 1024 * 1024,
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  linebuffer: false,
});

const SYSTEM = new Set(["/tmp", "/dev", "/proc", "/home", "/.sim/lib"]);

function mkdirs(p) {
  let here = "";
  for (const part of p.split("/").filter(Boolean)) {
    here += "/" + part;
    try { mp.FS.mkdir(here); } catch (e) { /* exists */ }
  }
}

function copyIn(hostDir, boardDir) {
  mkdirs(boardDir);
  for (const name of fs.readdirSync(hostDir)) {
    const h = path.join(hostDir, name);
    const b = (boardDir === "/" ? "" : boardDir) + "/" + name;
    if (fs.statSync(h).isDirectory()) copyIn(h, b);
    else mp.FS.writeFile(b, fs.readFileSync(h));
  }
}

function copyOut(boardDir, hostDir, skip) {
  fs.mkdirSync(hostDir, { recursive: true });
  const seen = new Set();
  for (const name of mp.FS.readdir(boardDir)) {
    if (name === "." || name === "..") continue;
    const b = (boardDir === "/" ? "" : boardDir) + "/" + name;
    if (SYSTEM.has(b) || skip.has(b)) continue;
    seen.add(name);
    const h = path.join(hostDir, name);
    if (mp.FS.isDir(mp.FS.stat(b).mode)) copyOut(b, h, skip);
    else fs.writeFileSync(h, mp.FS.readFile(b));
  }
  for (const name of fs.readdirSync(hostDir)) {
    if (!seen.has(name)) fs.rmSync(path.join(hostDir, name), { recursive: true, force: true });
  }
}

copyIn(job.flash, "/");
copyIn(job.sim, "/.sim");
copyIn(job.simfs, "/.sim/lib");

let failed = null;
try {
  mp.runPython(job.script);
} catch (err) {
  failed = String(err && err.message ? err.message : err);
}
copyOut("/", job.flash, new Set(["/.sim"]));
copyOut("/.sim", job.sim, new Set());
if (failed !== null) {
  process.stderr.write(failed + "\n");
  process.exit(1);
}
