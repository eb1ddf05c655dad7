"""Token-budget batches on the model side: padding to the width classes never changes a prediction, and
the tokens_per_batch settings are checked (the sampler itself: test_loading.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from protlc.alphabet import ALPHABET
from protlc.data.loading import EncodedSequences
from protlc.inference import model_outputs
from test_protcnn import model, trained_like


@pytest.fixture(scope="module")
def dataset(shared_or_embedded_tsv) -> EncodedSequences:
    """300 real extHomFam domains (lengths spread over several 64-wide classes) and one 1,500-residue
    concatenation of real domains."""
    seqs = pd.read_csv(shared_or_embedded_tsv, sep="\t")["sequence"].iloc[::11].head(300).tolist()
    return EncodedSequences(seqs + ["".join(seqs[:12])[:1500]])


def test_padding_to_the_width_classes_never_changes_a_prediction(dataset):
    clf = trained_like(model(num_classes=7)).eval()
    exact = model_outputs(clf, dataset, batch_size=16)  # each batch padded to its own longest sequence
    assert exact.shape == (len(dataset), 7)
    for tokens, multiple in ((2048, None), (4096, 64), (1024, 128)):
        padded = model_outputs(clf, dataset, batch_size=16, tokens_per_batch=tokens, width_multiple=multiple)
        np.testing.assert_allclose(padded, exact, rtol=1e-5, atol=1e-5)
        assert (padded.argmax(1) == exact.argmax(1)).all()
    for i in (3, 150, len(dataset) - 1):  # input order: row i is sequence i, computed on its own
        alone = model_outputs(clf, EncodedSequences([ALPHABET.decode(dataset[[i]]["tokens"][0])]), batch_size=1)
        np.testing.assert_allclose(alone[0], exact[i], rtol=1e-5, atol=1e-5)


def test_train_mode_statistics_do_not_see_the_extra_padding(dataset):
    """Training-mode BatchNorm statistics over a width-class batch equal those of the unpadded batch."""
    rows = list(range(0, 40))
    exact, padded = dataset.batch(rows), dataset.batch(rows, width_multiple=64)
    assert padded["tokens"].shape[1] % 64 == 0 and padded["tokens"].shape[1] > exact["tokens"].shape[1]
    a, b = (trained_like(model()).double().train() for _ in range(2))
    out_a, out_b = a(exact["tokens"], exact["mask"]), b(padded["tokens"], padded["mask"])
    torch.testing.assert_close(out_a, out_b, rtol=1e-9, atol=1e-9)
    for (name, x), y in zip(a.named_buffers(), b.buffers()):
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-9, msg=name)
