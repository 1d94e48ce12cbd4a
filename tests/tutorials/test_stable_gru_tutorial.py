"""The StableGRU tutorial runs in quick mode on the real corpus and learns something."""

import os
import sys

import numpy as np
import pytest

from keras_dlu.datasets import characters, lee_background_text

TUTORIALS = os.path.join(os.path.dirname(__file__), "..", "..", "tutorials")


def test_character_windows_are_the_corpus_shifted_by_one():
    text = lee_background_text()
    assert len(text) > 300_000 and text.startswith("Hundreds of people")
    (x, y), (xv, yv), vocab = characters(length=40)
    decode = lambda ids: "".join(vocab[i] for i in ids)  # noqa: E731
    assert decode(x[0]) == text[:40] and decode(y[0]) == text[1:41]
    assert decode(x[3]) == text[120:160]
    assert x.shape[1] == 40 and len(xv) > 0.08 * (len(x) + len(xv))
    np.testing.assert_array_equal(x[1:, 0], y[:-1, -1])  # windows are contiguous


@pytest.mark.slow
def test_stable_gru_tutorial_quick_mode():
    sys.path.insert(0, TUTORIALS)
    try:
        import stable_gru
    finally:
        sys.path.remove(TUTORIALS)
    row = stable_gru.quickstart_part(quick=True)
    assert row["name"] and row["accuracy"] is None and row["seconds"] > 0
    # the bound holds after training at the tutorial's high learning rate
    assert row["stable_gru_spectral_norm"] <= 1.8 * 1.0001
    # real learning: the validation perplexity is far below the uniform guess (81 chars)
    assert row["val_perplexity_stable_gru"] < 40
    assert not row["stable_gru_diverged"]
