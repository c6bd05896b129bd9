#!/usr/bin/env python3
"""Generates the ASR accuracy set's audio from its manifest, deterministically.

    scripts/gen-asr-accuracy.py        # writes tests/data/asr-accuracy/{clean,noisy}/*.wav

Needs: python3 (3.11+, for tomllib), espeak-ng, sox. The tests and the measurement only read the
committed outputs (so results do not depend on the espeak-ng version installed).

For each `[[answer]]` of tests/data/asr-accuracy/manifest.toml:
- espeak-ng speaks `text` with `voice` at `speed` words per minute;
- sox resamples it to 8 kHz, band-limits it to the telephone band (300-3400 Hz), trims the
  silence at both ends and normalises it to -6 dBFS peak;
- clean/ID.wav: that, G.711 mu-law encoded (an 8 kHz mu-law WAV: what Twilio sends, 8 KB/s);
- noisy/ID.wav: the same speech with 0.4 s before and after it, plus noise at 15 dB SNR (noise
  RMS 15 dB below the speech's RMS over the trimmed utterance), band-limited like the speech,
  white for odd ids and pink for even ones, from a generator seeded by the id; then mu-law.
"""

import array
import math
import pathlib
import random
import subprocess
import sys
import tempfile
import tomllib
import wave

ROOT = pathlib.Path(__file__).resolve().parent.parent
SET = ROOT / "tests" / "data" / "asr-accuracy"
RATE = 8000
SNR_DB = 15.0
PAD_S = 0.4
BAND = "300-3400"


def run(*args):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def read_pcm(path):
    with wave.open(str(path), "rb") as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1 and w.getframerate() == RATE
        samples = array.array("h")
        samples.frombytes(w.readframes(w.getnframes()))
    if sys.byteorder == "big":
        samples.byteswap()
    return list(samples)


def write_pcm(path, samples):
    data = array.array("h", samples)
    if sys.byteorder == "big":
        data.byteswap()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(data.tobytes())


def rms(samples):
    return math.sqrt(sum(s * s for s in samples) / max(len(samples), 1))


def noise(seed, n, pink):
    """`n` samples of unit-variance Gaussian noise; pink through Paul Kellet's economy filter."""
    rng = random.Random(seed)
    out = []
    b0 = b1 = b2 = 0.0
    for _ in range(n):
        white = rng.gauss(0.0, 1.0)
        if pink:
            b0 = 0.99765 * b0 + white * 0.0990460
            b1 = 0.96300 * b1 + white * 0.2965164
            b2 = 0.57000 * b2 + white * 1.0526913
            out.append(b0 + b1 + b2 + white * 0.1848)
        else:
            out.append(white)
    return out


def main():
    manifest = tomllib.loads((SET / "manifest.toml").read_text())
    for sub in ("clean", "noisy"):
        (SET / sub).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        for answer in manifest["answer"]:
            ident = answer["id"]
            raw, band = tmp / "raw.wav", tmp / "band.wav"
            run("espeak-ng", "-v", answer["voice"], "-s", str(answer["speed"]), "-w", str(raw),
                answer["text"])
            run("sox", "-R", "-D", str(raw), "-c", "1", "-b", "16", str(band),
                "rate", "-v", str(RATE), "sinc", BAND,
                "silence", "1", "0.01", "-50d", "reverse", "silence", "1", "0.01", "-50d",
                "reverse", "gain", "-n", "-6")
            run("sox", "-R", "-D", str(band), "-e", "u-law", str(SET / "clean" / f"{ident}.wav"))

            speech = read_pcm(band)
            pad = [0] * int(PAD_S * RATE)
            padded = pad + speech + pad
            number = int("".join(c for c in ident if c.isdigit()) or "0")
            raw_noise = noise(ident, len(padded), pink=number % 2 == 0)
            peak = max(abs(v) for v in raw_noise)
            write_pcm(tmp / "noise.wav", [round(v / peak * 16000) for v in raw_noise])
            run("sox", "-R", "-D", str(tmp / "noise.wav"), str(tmp / "noise-band.wav"),
                "sinc", BAND)
            band_noise = read_pcm(tmp / "noise-band.wav")[: len(padded)]
            band_noise += [0] * (len(padded) - len(band_noise))
            scale = rms(speech) / (10 ** (SNR_DB / 20)) / max(rms(band_noise), 1e-9)
            mixed = [max(-32768, min(32767, round(s + n * scale)))
                     for s, n in zip(padded, band_noise)]
            write_pcm(tmp / "mixed.wav", mixed)
            run("sox", "-R", "-D", str(tmp / "mixed.wav"), "-e", "u-law",
                str(SET / "noisy" / f"{ident}.wav"))
    total = sum(p.stat().st_size for p in SET.rglob("*.wav"))
    print(f"{len(manifest['answer'])} answers, {total / 1e6:.2f} MB of audio in {SET}")


if __name__ == "__main__":
    main()
