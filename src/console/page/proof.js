// A record's inclusion proof, checked in the browser with WebCrypto, so an
// officer need not trust the server's word that a record is in the log:
// leaf hash = SHA-256(0x00 ‖ record bytes), node = SHA-256(0x01 ‖ l ‖ r)
// (RFC 6962 / RFC 9162 §2.1.3.2), the root against the checkpoint's, and
// the checkpoint's Ed25519 signed-note signature against the log's key.
"use strict";

function b64bytes(s) {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

function same(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** RFC 9162 §2.1.3.2: the root an inclusion proof leads to, or null. */
async function rootFromInclusion(index, size, leaf, path) {
  if (index >= size) return null;
  let fn = index, sn = size - 1, r = leaf;
  for (const p of path) {
    if (sn === 0) return null;
    if (fn % 2 === 1 || fn === sn) {
      r = await sha256(concat([1], p, r));
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
      }
    } else {
      r = await sha256(concat([1], r, p));
    }
    fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
  }
  return sn === 0 ? r : null;
}

/** A C2SP checkpoint note: its signed text, size, root and signatures. */
function parseCheckpoint(note) {
  const at = note.indexOf("\n\n");
  if (at < 0) return null;
  const text = note.slice(0, at + 1);
  const lines = text.split("\n");
  const sigs = note.slice(at + 2).split("\n").filter((l) => l.startsWith("— ")).map((l) => {
    const [name, sig] = l.slice(2).split(" ");
    return {name, sig: b64bytes(sig)};
  });
  return {text, origin: lines[0], size: Number(lines[1]), root: b64bytes(lines[2] || ""), sigs};
}

/** Checks the log's signature on a checkpoint: true, false, or null when
 * this browser has no Ed25519. */
async function checkpointSigned(cp, vkey) {
  // <name>+<hash hex>+<base64 key>: the key's base64 may hold '+' too.
  const i = vkey.indexOf("+"), j = vkey.indexOf("+", i + 1);
  if (i < 0 || j < 0) return false;
  const name = vkey.slice(0, i), hash = vkey.slice(i + 1, j), key = vkey.slice(j + 1);
  const raw = b64bytes(key);
  if (raw[0] !== 1) return false;
  const pub = raw.slice(1);
  const sig = cp.sigs.find((s) => s.name === name && s.sig.length === 68 &&
    s.sig.slice(0, 4).every((b, i) => b === parseInt(hash.slice(2 * i, 2 * i + 2), 16)));
  if (!sig) return false;
  let k;
  try { k = await crypto.subtle.importKey("raw", pub, {name: "Ed25519"}, false, ["verify"]); }
  catch (e) { return null; }
  return crypto.subtle.verify({name: "Ed25519"}, k, sig.sig.slice(4), new TextEncoder().encode(cp.text));
}

/** Every step of the check, each {key, vars, ok} with ok true, false or null. */
async function checkInclusion(answer, vkey) {
  const p = answer.proof;
  const steps = [];
  const leaf = await sha256(concat([0], b64bytes(answer.record_bytes)));
  const leafOk = same(leaf, b64bytes(p.leafHash));
  steps.push({key: "proof.leaf", ok: leafOk});
  const root = await rootFromInclusion(p.leafIdx, p.treeSize, leaf, p.proof.map(b64bytes));
  steps.push({key: "proof.path", vars: {n: p.proof.length, size: p.treeSize}, ok: !!root && same(root, b64bytes(p.root))});
  const cp = parseCheckpoint(answer.checkpoint || "");
  steps.push({key: "proof.cp", ok: !!cp && !!root && cp.size === p.treeSize && same(cp.root, root)});
  const signed = cp ? await checkpointSigned(cp, vkey || "") : false;
  steps.push(signed === null ? {key: "proof.sig.na", ok: null} : {key: "proof.sig", ok: signed});
  return steps;
}
