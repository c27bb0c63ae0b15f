// Runs one MicroPython script under the official WebAssembly port.
// stdin: JSON {"script": str, "files": {"/abs/path": base64}, "heapsize": int}
// stdout: what the script printed; exit 1 with the traceback on stderr if it raised.
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript/micropython.mjs";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const job = JSON.parse(Buffer.concat(chunks).toString("utf8"));

const mp = await loadMicroPython({
  heapsize: job.heapsize || 1024 * 1024,
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  linebuffer: false,
});

function mkdirs(path) {
  let here = "";
  for (const part of path.split("/").filter(Boolean)) {
    here += "/" + part;
    try { mp.FS.mkdir(here); } catch (e) { /* exists */ }
  }
}

for (const [path, b64] of Object.entries(job.files || {})) {
  mkdirs(path.slice(0, path.lastIndexOf("/")));
  mp.FS.writeFile(path, Buffer.from(b64, "base64"));
}

try {
  mp.runPython(job.script);
} catch (err) {
  process.stderr.write(String(err && err.message ? err.message : err) + "\n");
  process.exit(1);
}
