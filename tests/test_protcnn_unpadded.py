"""A batch without padding skips the masking on the CPU (protcnn._padding_mask) with identical results."""

from __future__ import annotations

import pytest
import torch

from protlc.model import protcnn
from test_protcnn import batch, model, trained_like


@pytest.mark.parametrize("training", [False, True])
def test_unpadded_batch_matches_the_masked_path(sequences, monkeypatch, training):
    tokens, mask = batch([s[:25] for s in sequences])  # every domain has >= 25 residues: no padding
    assert mask.all()
    fast, slow = (trained_like(model().double()).train(training) for _ in range(2))
    out_fast = fast(tokens, mask)
    with monkeypatch.context() as patch:
        patch.setattr(protcnn, "_padding_mask", lambda m: m.unsqueeze(1).to(torch.float32))
        out_slow = slow(tokens, mask)
    torch.testing.assert_close(out_fast, out_slow, rtol=0, atol=1e-12)
    for (name, a), b in zip(fast.named_buffers(), slow.buffers()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12, msg=name)
