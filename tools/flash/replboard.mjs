// The simulated board's serial console: the WebAssembly port's REPL served over TCP, so
// mpremote (or any terminal) reaches it as socket://127.0.0.1:PORT, or through a pty made
// by socat.  The flash is mirrored from a host directory at start and written back after
// every command, as a real board's flash keeps what was written.
// argv: JSON {"port": dir of micropython.mjs, "flash": dir, "listen": tcp port (0 = any)}
// prints "listening <port>" once ready.
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { pathToFileURL } from "node:url";

const job = JSON.parse(process.argv[2]);
const { loadMicroPython } = await import(pathToFileURL(path.join(job.port, "micropython.mjs")));

let conn = null;
let stripOK = 0;  // raw-paste replies carry no "OK": drop the one the raw REPL prints
const toHost = (t) => {
  let b = typeof t === "number" ? Buffer.from([t])
    : typeof t === "string" ? Buffer.from(t, "latin1") : Buffer.from(t);
  while (stripOK && b.length) { b = b.subarray(1); stripOK -= 1; }
  if (conn && b.length) conn.write(b);
};
const WINDOW = 4096;
const mp = await loadMicroPython({ heapsize: 2 * 1024 * 1024, stdout: toHost, stderr: toHost,
                                   linebuffer: false });
const SYSTEM = new Set(["/tmp", "/dev", "/proc", "/home"]);

function copyIn(hostDir, boardDir) {
  for (const name of fs.readdirSync(hostDir)) {
    const h = path.join(hostDir, name);
    const b = (boardDir === "/" ? "" : boardDir) + "/" + name;
    if (fs.statSync(h).isDirectory()) {
      try { mp.FS.mkdir(b); } catch (e) { /* exists */ }
      copyIn(h, b);
    } else mp.FS.writeFile(b, fs.readFileSync(h));
  }
}

function copyOut(boardDir, hostDir) {
  fs.mkdirSync(hostDir, { recursive: true });
  const seen = new Set();
  for (const name of mp.FS.readdir(boardDir)) {
    if (name === "." || name === "..") continue;
    const b = (boardDir === "/" ? "" : boardDir) + "/" + name;
    if (SYSTEM.has(b)) continue;
    seen.add(name);
    const h = path.join(hostDir, name);
    if (mp.FS.isDir(mp.FS.stat(b).mode)) copyOut(b, h);
    else fs.writeFileSync(h, mp.FS.readFile(b));
  }
  for (const name of fs.readdirSync(hostDir)) {
    if (!seen.has(name)) fs.rmSync(path.join(hostDir, name), { recursive: true, force: true });
  }
}

copyIn(job.flash, "/");
mp.replInit();

function feed(c) {
  const r = mp.replProcessChar(c);
  if (r === 256) {
    // Ctrl-D on an empty raw-REPL line: a soft reset, reported as a board does
    toHost("MPY: soft reboot\r\n");
    const keep = conn;
    conn = null;            // the banner of the fresh REPL is not echoed
    mp.replInit();
    conn = keep;
    mp.replProcessChar(1);  // back in raw REPL, as after a soft reset in raw mode
  }
}

const server = net.createServer((socket) => {
  if (conn) { socket.end(); return; }
  conn = socket;
  let held = [];
  let paste = null;  // the code of a raw-paste transfer, while one is under way
  let credit = 0;
  socket.on("data", (data) => {
    let command = false;
    for (const c of data) {
      if (paste !== null) {
        // raw-paste mode: take the code, grant a new window as each one is used up
        if (c === 4) {
          toHost("\x04");
          stripOK = 2;
          for (const b of paste) feed(b);
          feed(4);
          paste = null;
          command = true;
          continue;
        }
        paste.push(c);
        if (--credit === 0) { credit = WINDOW; toHost("\x01"); }
        continue;
      }
      // raw-paste request (Ctrl-E 'A' Ctrl-A): "R\x01" and the window size
      if (held.length || c === 5) {
        held.push(c);
        if (held.length === 3) {
          if (held[1] === 65 && held[2] === 1) {
            toHost(Buffer.from([0x52, 0x01, WINDOW & 0xff, WINDOW >> 8]));
            paste = [];
            credit = WINDOW;
          } else held.forEach(feed);
          held = [];
        } else if (held.length === 2 && held[1] !== 65) {
          held.forEach(feed);
          held = [];
        }
        continue;
      }
      feed(c);
      if (c === 4) command = true;
    }
    if (command) copyOut("/", job.flash);
  });
  socket.on("close", () => { copyOut("/", job.flash); conn = null; });
  socket.on("error", () => { conn = null; });
});
server.listen(job.listen || 0, "127.0.0.1", () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});
process.on("SIGTERM", () => { copyOut("/", job.flash); process.exit(0); });
