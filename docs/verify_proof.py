#!/usr/bin/env python3
"""Checks ordo's proofs without ordo: Python 3.8+ standard library only.

    python3 verify_proof.py FILE [--verifier-key NAME+HASH+KEYDATA | --verifier-key @KEYFILE]

FILE is what `ordo checkpoint`, `ordo prove inclusion|consistency|order` print with
`--format json`, or a bare checkpoint note. Exit 0 when it holds; 5 naming what fails.

It re-implements, from the public specifications and nothing of ordo's code:
- RFC 9162 section 2.1: leaf and node hashes, inclusion (2.1.3.2) and consistency
  (2.1.4.2) verification;
- C2SP tlog-checkpoint and signed-note, with Ed25519 verification from RFC 8032
  section 6 (slow, exact, dependency-free);
- ordo's leaf: the event's export envelope without `hash`, as JSON with sorted keys and no
  whitespace (docs/format.md, "The hash chain").
docs/proofs.md says what each proof proves and what it does not.
"""

import base64
import hashlib
import json
import sys


class Unproven(Exception):
    pass


# --- RFC 9162 ------------------------------------------------------------------------------

def leaf_hash(data):
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def verify_inclusion(index, size, leaf, path, root):
    if index >= size:
        raise Unproven("leaf index %d is not in a tree of %d leaves" % (index, size))
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            raise Unproven("the inclusion path is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0 or r != root:
        raise Unproven("the inclusion path does not lead to the root")


def verify_consistency(old_size, size, old_root, root, proof):
    if old_size == 0 or old_size > size:
        raise Unproven("sizes %d and %d have no consistency proof" % (old_size, size))
    if old_size == size:
        if proof or old_root != root:
            raise Unproven("equal sizes need an empty proof and equal roots")
        return
    if not proof:
        raise Unproven("the consistency proof is empty")
    if old_size & (old_size - 1) == 0:
        proof = [old_root] + list(proof)
    fn, sn = old_size - 1, size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            raise Unproven("the consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0 or fr != old_root or sr != root:
        raise Unproven("the consistency proof does not lead to both roots")


# --- Ed25519 verification (RFC 8032 section 6) --------------------------------------------

P = 2 ** 255 - 19
Q = 2 ** 252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)


def _add(a, b):
    x = (a[1] - a[0]) * (b[1] - b[0]) % P
    y = (a[1] + a[0]) * (b[1] + b[0]) % P
    c = 2 * a[3] * b[3] * D % P
    d = 2 * a[2] * b[2] % P
    e, f, g, h = y - x, d - c, d + c, y + x
    return (e * f, g * h, f * g, e * h)


def _mul(s, pt):
    out = (0, 1, 1, 0)
    while s > 0:
        if s & 1:
            out = _add(out, pt)
        pt = _add(pt, pt)
        s >>= 1
    return out


def _equal(a, b):
    return (a[0] * b[2] - b[0] * a[2]) % P == 0 and (a[1] * b[2] - b[1] * a[2]) % P == 0


def _recover_x(y, sign):
    if y >= P:
        return None
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P)
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P != 0:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P != 0:
        return None
    if (x & 1) != sign:
        x = P - x
    return x


def _decompress(s):
    y = int.from_bytes(s, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x = _recover_x(y, sign)
    return None if x is None else (x, y, 1, x * y % P)


_GY = 4 * pow(5, P - 2, P) % P
_G = (_recover_x(_GY, 0), _GY, 1, _recover_x(_GY, 0) * _GY % P)


def ed25519_verify(public, message, signature):
    if len(public) != 32 or len(signature) != 64:
        return False
    a, r = _decompress(public), _decompress(signature[:32])
    s = int.from_bytes(signature[32:], "little")
    if a is None or r is None or s >= Q:
        return False
    h = int.from_bytes(hashlib.sha512(signature[:32] + public + message).digest(), "little") % Q
    return _equal(_mul(s, _G), _add(r, _mul(h, a)))


# --- Signed notes and checkpoints ----------------------------------------------------------

def parse_verifier(text):
    name, key_hash, data = text.strip().split("+", 2)
    key = base64.b64decode(data, validate=True)
    if len(key) != 33 or key[0] != 1:
        raise Unproven("the verifier key is not an Ed25519 key")
    digest = hashlib.sha256(name.encode() + b"\n" + key).digest()
    if digest[:4].hex() != key_hash:
        raise Unproven("the verifier key's hash does not match its name and key")
    return name, bytes.fromhex(key_hash), key[1:]


def open_checkpoint(note, verifier):
    """Returns (origin, size, root, what was said of the signature)."""
    said = None
    if "\n\n" in note:
        split = note.rindex("\n\n")
        text, block = note[: split + 1], note[split + 2:]
        said = "not checked"
        if verifier:
            name, key_hash, public = verifier
            for line in block.splitlines():
                if not line.startswith("\u2014 "):
                    raise Unproven("malformed signature line %r" % line)
                signer, blob = line[2:].split(" ", 1)
                blob = base64.b64decode(blob, validate=True)
                if signer == name and blob[:4] == key_hash:
                    if not ed25519_verify(public, text.encode(), blob[4:]):
                        raise Unproven("the signature by %s does not verify" % name)
                    said = "verified by " + name
                    break
            else:
                raise Unproven("the note is not signed by %s" % name)
    else:
        text = note
        if verifier:
            raise Unproven("the checkpoint is not signed")
    lines = text.split("\n")
    if len(lines) < 4 or not lines[0] or not text.endswith("\n"):
        raise Unproven("the checkpoint does not have origin, size and root lines")
    root = base64.b64decode(lines[2], validate=True)
    if not lines[1].isdigit() or len(root) != 32:
        raise Unproven("the checkpoint's size or root is malformed")
    return lines[0], int(lines[1]), root, said


def checkpoint_of(obj, verifier):
    origin, size, root, said = open_checkpoint(obj["note"], verifier)
    if (origin, size, root.hex()) != (obj["origin"], obj["tree_size"], obj["root_hash"]):
        raise Unproven("the checkpoint's fields differ from its note")
    return size, root, said


def canonical(envelope):
    unhashed = {k: v for k, v in envelope.items() if k != "hash"}
    return json.dumps(unhashed, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def check(text, verifier):
    try:
        obj = json.loads(text)
    except ValueError:
        origin, size, root, said = open_checkpoint(text, verifier)
        return "checkpoint of %d events, root %s, signature %s" % (size, root.hex(), said)
    unhex = lambda values: [bytes.fromhex(v) for v in values]
    if "format" in obj:
        if obj["format"] != "ordo-evidence/v1":
            raise Unproven("unknown bundle format %r" % obj["format"])
        size, root, said = checkpoint_of(obj["checkpoint"], verifier)
        for i, event in enumerate(obj["events"]):
            envelope = event["envelope"]
            if envelope["order_id"] != obj["order_id"] or envelope["version"] != i + 1:
                raise Unproven("event %d is not version %d of order %s" % (i, i + 1, obj["order_id"]))
            verify_inclusion(envelope["position"] - 1, size, leaf_hash(canonical(envelope)),
                             unhex(event["proof"]), root)
        return "%d events of order %s in the tree of %d events, signature %s" % (
            len(obj["events"]), obj["order_id"], size, said)
    if "leaf_hash" in obj:
        verify_inclusion(obj["position"] - 1, obj["tree_size"], bytes.fromhex(obj["leaf_hash"]),
                         unhex(obj["proof"]), bytes.fromhex(obj["root_hash"]))
        return "position %d is in the tree of %d events" % (obj["position"], obj["tree_size"])
    if "old_size" in obj:
        verify_consistency(obj["old_size"], obj["tree_size"], bytes.fromhex(obj["old_root"]),
                           bytes.fromhex(obj["root_hash"]), unhex(obj["proof"]))
        return "the tree of %d events extends the tree of %d" % (obj["tree_size"], obj["old_size"])
    if "note" in obj:
        size, root, said = checkpoint_of(obj, verifier)
        return "checkpoint of %d events, root %s, signature %s" % (size, root.hex(), said)
    raise Unproven("not a proof, checkpoint or evidence bundle")


def main(argv):
    if len(argv) not in (2, 4) or (len(argv) == 4 and argv[2] != "--verifier-key"):
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        text = f.read()
    try:
        verifier = None
        if len(argv) == 4:
            key = argv[3]
            if key.startswith("@"):
                with open(key[1:], encoding="utf-8") as f:
                    key = f.read()
            verifier = parse_verifier(key)
        print("ok: " + check(text, verifier))
        return 0
    except (Unproven, KeyError, TypeError, ValueError) as e:
        print("the proof does not hold: %s" % e, file=sys.stderr)
        return 5


if __name__ == "__main__":
    sys.exit(main(sys.argv))
