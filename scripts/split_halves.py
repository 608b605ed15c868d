"""How real music from other songs scores on the distribution measure, beside the copy and the model.

Reads a `meloformer-eval --records` file (of a `--seeds` run, the first seed's files) and
splits its decodable files in two halves (even and odd lines). Against the real bars 9-16
of the first half it scores the real bars of the second half (real music of other songs
of the same corpus), the copy of the first half's own prompts, and the model's
continuations of the first half and of the second.
docs/model-history.md ("What real music scores") quotes it.

    python scripts/split_halves.py RECORDS.jsonl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from training.continuation_metrics import FEATURES, distribution_overlap


def pooled(rows: list[dict], variant: str) -> dict[str, list[np.ndarray]]:
    return {name: [np.array(v) for row in rows for v in row["bar_features"][variant][name]] for name in FEATURES}


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[-1].strip())
    lines = Path(sys.argv[1]).read_text().splitlines()
    records = list(map(json.loads, lines))
    seed = records[0].get("seed") if records else None
    rows = [row for row in records if row.get("decodable") and row.get("seed") == seed]
    first, second = rows[::2], rows[1::2]
    reference = pooled(first, "real")
    print(f"{len(first)} and {len(second)} files; against the real bars of the first half:")
    print(" " * 30, " ".join(f"{name[:12]:>12s}" for name in (*FEATURES, "mean")))
    for label, candidate in (("real bars, second half", pooled(second, "real")),
                             ("copy, first half", pooled(first, "copy")),
                             ("model, first half", pooled(first, "model")),
                             ("model, second half", pooled(second, "model"))):  # fmt: skip
        scores = distribution_overlap(reference, candidate)
        print(f"{label:30s}", " ".join(f"{scores[name]:12.4f}" for name in (*FEATURES, "mean")))


if __name__ == "__main__":
    main()
