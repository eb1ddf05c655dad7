"""Training-time crops and residue masking (protlc.training.augment)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from protlc.alphabet import ALPHABET, PAD_INDEX
from protlc.data.loading import EncodedSequences
from protlc.errors import ConfigError
from protlc.training.augment import X_INDEX, augment_batch, is_active, step_generator
from protlc.training.config import check_values, load_config


@pytest.fixture(scope="module")
def domains(exthomfam_tiny32_tsv) -> list[str]:
    """200 real domains of the tiny extHomFam sample."""
    import pandas as pd

    return pd.read_csv(exthomfam_tiny32_tsv, sep="\t")["sequence"].head(200).tolist()


def batch_of(sequences: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    batch = EncodedSequences(sequences).batch(list(range(len(sequences))))
    return batch["tokens"], batch["mask"]


def decode(tokens: torch.Tensor, mask: torch.Tensor) -> list[str]:
    return [ALPHABET.decode(row[m].numpy()) for row, m in zip(tokens, mask)]


def test_a_crop_is_a_left_aligned_window_of_the_sequence(domains):
    originals = domains[:40]
    tokens, mask = batch_of(originals)
    out_tokens, out_mask = augment_batch(tokens, mask, {"crop_probability": 1.0, "crop_min": 0.5},
                                         step_generator(torch.device("cpu"), 0, 7))
    kept = decode(out_tokens, out_mask)
    lengths = out_mask.sum(1)
    for original, window, n in zip(originals, kept, lengths.tolist()):
        assert window in original
        assert math.ceil(0.5 * len(original)) <= len(window) <= len(original)
        assert len(window) == n
    # left-aligned: the mask is a prefix, and padding holds the padding token
    assert torch.equal(out_mask, torch.arange(tokens.shape[1]) < lengths.unsqueeze(1))
    assert (out_tokens[~out_mask] == PAD_INDEX).all()
    assert sum(len(w) < len(o) for w, o in zip(kept, originals)) > 30


def test_masking_hides_residues_only_at_about_the_rate(domains):
    tokens, mask = batch_of(domains[:200])
    out_tokens, out_mask = augment_batch(tokens, mask, {"mask_rate": 0.15}, step_generator(torch.device("cpu"), 3, 0))
    assert torch.equal(out_mask, mask)
    changed = out_tokens != tokens
    assert not changed[~mask].any()
    assert (out_tokens[changed] == X_INDEX).all()
    rate = changed.sum().item() / (mask & (tokens != X_INDEX)).sum().item()
    assert 0.13 < rate < 0.17


def test_draws_depend_on_seed_and_step_only(domains):
    tokens, mask = batch_of(domains[:30])
    options = {"crop_probability": 0.5, "mask_rate": 0.1}

    def run(seed, step):
        return augment_batch(tokens, mask, options, step_generator(torch.device("cpu"), seed, step))

    same = run(1, 5), run(1, 5)
    assert all(torch.equal(a, b) for a, b in zip(*same))
    assert not torch.equal(run(1, 5)[0], run(1, 6)[0])
    assert not torch.equal(run(1, 5)[0], run(2, 5)[0])


def test_switched_off_by_default():
    config = load_config([], [])
    assert not is_active(config["augment"])
    assert is_active({"mask_rate": 0.1}) and is_active({"crop_probability": 0.2})


@pytest.mark.parametrize("key,value", [("augment.crop_min", 0), ("augment.mask_rate", 1.0),
                                       ("augment.crop_probability", 1.5)])
def test_out_of_range_settings_are_refused(key, value):
    with pytest.raises(ConfigError, match=key):
        check_values(load_config([], [f"{key}={value}"]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 50), min_size=1, max_size=8), st.floats(0.01, 1.0), st.integers(0, 2**31))
def test_every_row_keeps_a_residue(lengths, crop_min, seed):
    rng = np.random.default_rng(seed)
    originals = ["".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), n)) for n in lengths]
    tokens, mask = batch_of(originals)
    out_tokens, out_mask = augment_batch(tokens, mask, {"crop_probability": 1.0, "crop_min": crop_min,
                                                         "mask_rate": 0.5}, step_generator(torch.device("cpu"), seed, 0))
    assert (out_mask.sum(1) >= 1).all()
    assert (out_mask.sum(1) <= mask.sum(1)).all()
