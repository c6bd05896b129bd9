#!/usr/bin/env python3
"""Regenerate the independent G.711 mu-law reference tables with CPython's `audioop`.

`audioop` (CPython <= 3.12) implements G.711 mu-law after the Sun Microsystems reference code,
independently of voxbridge-audio. Run from anywhere:

    python3 crates/audio/tests/data/gen_mulaw_ref.py

Writes, next to this script:
- mulaw_encode_ref.bin: 65,536 bytes; byte at index `v as u16` is lin2ulaw of the i16 `v`.
- mulaw_decode_ref.bin: 256 little-endian i16 values; entry `c` is ulaw2lin of code `c`.
"""
import audioop
import os
import struct

here = os.path.dirname(os.path.abspath(__file__))

pcm = b"".join(struct.pack("<h", v if v < 32768 else v - 65536) for v in range(65536))
enc = audioop.lin2ulaw(pcm, 2)
assert len(enc) == 65536
with open(os.path.join(here, "mulaw_encode_ref.bin"), "wb") as f:
    f.write(enc)

dec = audioop.ulaw2lin(bytes(range(256)), 2)
assert len(dec) == 512
with open(os.path.join(here, "mulaw_decode_ref.bin"), "wb") as f:
    f.write(dec)
