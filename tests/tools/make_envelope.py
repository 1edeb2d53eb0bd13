#!/usr/bin/python3
"""make_envelope.py MODE WRAPPED_FILE KEY_FILE MESSAGE OUT: a hybrid RSA
envelope (docs/KEYS.md) from a key wrapped elsewhere (openssl pkeyutl):
"KHE1" | mode | wrapped length (2 bytes) | wrapped | IV | AES-256-GCM
ciphertext and tag, the 7-byte header as associated data (Debian's
python3-cryptography for the AES-GCM part)."""
import os
import sys

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

mode, wrapped_file, key_file, message, out = sys.argv[1:6]
wrapped = open(wrapped_file, "rb").read()
key = open(key_file, "rb").read()
header = b"KHE1" + bytes([int(mode)]) + len(wrapped).to_bytes(2, "big")
iv = os.urandom(12)
ct = AESGCM(key).encrypt(iv, message.encode(), header)
open(out, "wb").write(header + wrapped + iv + ct)
