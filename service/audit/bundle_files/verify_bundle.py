#!/usr/bin/env python3
"""Kiểm tra gói bằng chứng Canh Gác / verify a Canh Gác evidence bundle.

Needs only Python 3.9+ and the `cryptography` package. Usage:

    python verify_bundle.py bang-chung.zip [--key "name+keyid+base64"]

This is a deliberately independent implementation of the checks (RFC 6962 leaf hashing,
RFC 9162 inclusion proofs, C2SP signed-note Ed25519 signatures, C2SP checkpoint bodies), so a
verifier does not have to trust the server's code. Exit 0 when every entry is proven.
"""

import base64
import hashlib
import json
import sys
import zipfile


def leaf_hash(data):
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_inclusion_proof(index, size, leaf, proof):
    # RFC 9162 section 2.1.3.2
    if index >= size:
        raise ValueError("index beyond tree size")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ValueError("proof too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ValueError("proof too short")
    return r


def parse_verifier_key(text):
    name, key_id, key64 = text.strip().split("+")
    raw = base64.b64decode(key64, validate=True)
    if len(raw) != 33 or raw[0] != 1:
        raise ValueError("only Ed25519 verifier keys are supported")
    expected = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4]
    if expected.hex() != key_id:
        raise ValueError("verifier key id does not match its key")
    return name, expected, raw[1:]


def open_note(note, keys):
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    text, sep, sigs = note.rpartition("\n\n")
    if not sep:
        raise ValueError("note has no signature block")
    text += "\n"
    verified = False
    for line in sigs.rstrip("\n").split("\n"):
        if not line.startswith("\u2014 "):
            raise ValueError("malformed signature line")
        name, _, sig64 = line[2:].rpartition(" ")
        sig = base64.b64decode(sig64, validate=True)
        for key_name, key_id, public in keys:
            if key_name == name and sig[:4] == key_id:
                try:
                    Ed25519PublicKey.from_public_bytes(public).verify(sig[4:], text.encode())
                except InvalidSignature:
                    raise ValueError("invalid signature by " + name) from None
                verified = True
    if not verified:
        raise ValueError("no trusted key signed the checkpoint")
    return text


def parse_checkpoint(text):
    lines = text.split("\n")
    origin, size, root = lines[0], int(lines[1]), base64.b64decode(lines[2], validate=True)
    if not origin or len(root) != 32 or str(size) != lines[1]:
        raise ValueError("malformed checkpoint")
    return origin, size, root


def verify(path, extra_keys=()):
    with zipfile.ZipFile(path) as bundle:
        key_texts = [bundle.read("verifier.key").decode().strip(), *extra_keys]
        keys = [parse_verifier_key(k) for k in key_texts]
        _origin, size, root = parse_checkpoint(open_note(bundle.read("checkpoint.txt").decode(), keys))
        count = 0
        for number, line in enumerate(bundle.read("entries.jsonl").decode().splitlines(), 1):
            item = json.loads(line)
            body = item["body"].encode()
            if json.loads(body)["seq"] != item["seq"]:
                raise ValueError(f"line {number}: entry number does not match its body")
            proof = [base64.b64decode(p, validate=True) for p in item["inclusion_proof"]]
            got = root_from_inclusion_proof(item["seq"], size, leaf_hash(body), proof)
            if got != root:
                raise ValueError(f"line {number}: entry {item['seq']} is not in the signed log")
            count += 1
    return count, size


def main(argv):
    if len(argv) < 2:
        print(__doc__)
        return 2
    extra = [argv[i + 1] for i, a in enumerate(argv) if a == "--key" and i + 1 < len(argv)]
    try:
        count, size = verify(argv[1], extra)
    except (ValueError, KeyError, zipfile.BadZipFile) as exc:
        print(f"KHÔNG HỢP LỆ / INVALID: {exc}")
        return 1
    print(f"HỢP LỆ / VALID: {count} mục có trong nhật ký đã ký ({size} mục) / "
          f"{count} entries proven in the signed log of {size} entries")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
