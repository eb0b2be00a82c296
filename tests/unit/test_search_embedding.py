"""The hashing embedder: shape, unit rows, determinism across processes, similarity."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from memoryd.storage.search.embedding import Embedder, HashingEmbedder, HashingSettings


def test_rows_are_unit_or_zero() -> None:
    e = HashingEmbedder(HashingSettings(dim=64))
    v = e.embed(["a red car", "", "the", "Привет мир"])
    assert v.shape == (4, 64) and v.dtype == np.float32
    norms = np.linalg.norm(v, axis=1)
    assert np.allclose(norms[[0, 3]], 1, atol=1e-5)
    assert norms[1] == 0 and norms[2] == 0  # nothing but stop words
    assert isinstance(e, Embedder)


def test_batch_equals_single() -> None:
    e = HashingEmbedder()
    texts = ["painting a sunrise", "camping in June", "adoption agencies"]
    batch = e.embed(texts)
    for i, t in enumerate(texts):
        assert np.allclose(batch[i], e.embed([t])[0], atol=1e-6)


def test_related_texts_are_closer() -> None:
    e = HashingEmbedder()
    a, b, c = e.embed(["she painted a sunrise", "painting sunrises", "tax forms due"])
    assert a @ b > a @ c + 0.2


def test_deterministic_across_processes() -> None:
    code = (
        "from memoryd.storage.search import HashingEmbedder;"
        "print(HashingEmbedder().embed(['stable hashing check'])[0][:8].tolist())"
    )
    runs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    }
    assert len(runs) == 1
