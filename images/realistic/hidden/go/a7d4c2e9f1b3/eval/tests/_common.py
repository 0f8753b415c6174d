"""Run ./executable (the program under test) the way every hidden test does."""

import random
import subprocess
from pathlib import Path

EXECUTABLE = Path(__file__).resolve().parents[2] / "executable"

SALES = "region,units,price,note\nnorth,10,2.5,ok\nsouth,4,10,\neast,,7.25,late\nwest,6,1e1,ok\n"


def run(*args, stdin=""):
    return subprocess.run([str(EXECUTABLE), *map(str, args)], input=stdin, capture_output=True, text=True, timeout=60)


def big_csv(path, rows=150_000, seed=3):
    """About 4 MB of CSV: the program runs for tens of milliseconds on it."""
    rng = random.Random(seed)
    lines = ["id,score,city"]
    total = 0
    for i in range(rows):
        score = rng.randint(-500, 500)
        total += score
        lines.append(f"{i},{score},{rng.choice(['Oslo', 'Lima', 'Pune', 'Kyiv'])}")
    path.write_text("\n".join(lines) + "\n")
    return rows, total
