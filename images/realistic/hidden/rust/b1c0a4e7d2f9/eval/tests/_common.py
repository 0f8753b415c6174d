"""Run ./executable (the program under test) the way every hidden test does."""

import random
import subprocess
from pathlib import Path

EXECUTABLE = Path(__file__).resolve().parents[2] / "executable"
WORDS = ["the", "The", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "it's", "naïve", "x"]


def run(*args, stdin=b""):
    return subprocess.run([str(EXECUTABLE), *map(str, args)], input=stdin, capture_output=True, timeout=60)


def big_text(path, lines=200_000, seed=7):
    """About 7 MB of text: the program runs for tens of milliseconds on it."""
    rng = random.Random(seed)
    text = "\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12))) for _ in range(lines))
    path.write_bytes((text + "\n").encode())
    return path.read_bytes()


def counts(data):
    return data.count(b"\n"), len(data.split()), len(data)


def top(data, n, ignore_case=False, min_length=0):
    freq = {}
    for word in data.split():
        kept = bytes(b for b in word if chr(b).isascii() and (chr(b).isalnum() or b == 39) or b >= 0x80)
        if ignore_case:
            kept = kept.lower()
        if kept and len(kept) >= min_length:
            freq[kept] = freq.get(kept, 0) + 1
    ranked = sorted(freq.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    return b"".join(b"%d %s\n" % (times, word) for word, times in ranked)
