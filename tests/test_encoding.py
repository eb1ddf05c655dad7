"""The vectorised mutant encoder and the encoder's fast inference (look-up input convolution, folded
BatchNorm) behind ``protlc score``'s speed: the same sequences, errors and features as the row-by-row
applier and the plain encoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from protlc.alphabet import ALPHABET
from protlc.data.loading import EncodedSequences
from protlc.dms import mutations as mut
from protlc.dms.encoding import distinct_rows, encode_mutants
from protlc.model.protcnn import ProtCNNConfig, ProtCNNEncoder

PAB1_WT = "GNIFIKNLHPDIDNKALYDTFSVFGDILSSKIATDENGKSKGFGFVHFEEEGAAKEAIDALNGMLLNGQEIYVAP"


@pytest.mark.parametrize("notation,offset,mutants", [
    ("proteingym", 1, ["G1A", "G1A:N2K", "N2K:G1A", "WT", "wt", "", None, float("nan"), "G1A:G1C", "A1G",
                       "G1A,N2K", "G999A", "G1B", "G1*", " G1A", "G1A:", "P75A:G1A:N2K:I3V", "X1A", "G0A"]),
    ("nn4dms", 126, ["G126A,N127K", "_wt", "G126A,G126C", "G126A:N127K", "G126A", "A126G", "P200A"]),
])
def test_encode_mutants_agrees_with_the_row_by_row_applier(notation, offset, mutants):
    applier = mut.MutantApplier(PAB1_WT, notation, offset)
    matrix, errors = encode_mutants(applier, mutants)
    sequences, expected_errors = mut.apply_many(PAB1_WT, mutants, notation, offset)
    assert errors == expected_errors and errors  # same rows, tokens and reasons, in row order
    bad = {row for row, _, _ in errors}
    for row, sequence in enumerate(sequences):
        if row not in bad:
            assert matrix[row].tobytes().decode("ascii") == sequence, mutants[row]
    assert encode_mutants(applier, [])[0].shape == (0, len(PAB1_WT))


def test_distinct_rows_in_order_of_first_appearance():
    rows = np.frombuffer(b"ABCABDABCXYZABD", dtype=np.uint8).reshape(5, 3)
    codes, uniques = distinct_rows(rows)
    assert codes.tolist() == [0, 1, 0, 2, 1]
    assert [u.tobytes() for u in uniques] == [b"ABC", b"ABD", b"XYZ"]
    np.testing.assert_array_equal(uniques[codes], rows)


def test_token_matrix_batches_equal_string_batches():
    sequences = ["GNIF", "ANIF", "GNI*"]
    matrix = np.frombuffer("".join(sequences).encode(), dtype=np.uint8).reshape(3, 4)
    a = EncodedSequences(sequences).batch([2, 0])
    b = EncodedSequences.from_token_matrix(ALPHABET.encode_bytes(matrix)).batch([2, 0])
    assert torch.equal(a["tokens"], b["tokens"]) and torch.equal(a["mask"], b["mask"])
    ragged = EncodedSequences(["GN", "GNIFK", "G"]).batch([0, 1, 2], width_multiple=4)
    assert ragged["tokens"].shape == (3, 8) and ragged["mask"].sum(dim=1).tolist() == [2, 5, 1]
    assert ALPHABET.decode(ragged["tokens"][1]) == "GNIFK"


def test_fast_inference_equals_the_plain_encoder_and_ignores_the_batch():
    """Look-up input convolution and BatchNorm folded into the blocks (trained-looking running statistics)."""
    encoder = ProtCNNEncoder(ProtCNNConfig(filters=32, dilations=(1, 2)), torch.Generator().manual_seed(3)).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, value in encoder.named_buffers():
            if name.endswith("running_mean"):
                value.copy_(torch.randn(value.shape, generator=generator) * 0.3)
            elif name.endswith("running_var"):
                value.copy_(torch.rand(value.shape, generator=generator) + 0.5)
        for name, value in encoder.named_parameters():
            if ".bn_" in name:
                value.add_(torch.randn(value.shape, generator=generator) * 0.2)
    tokens = torch.randint(1, ALPHABET.size, (40, 75), generator=torch.Generator().manual_seed(0))  # ambiguity, stop
    mask = torch.ones_like(tokens, dtype=torch.bool)
    with torch.no_grad():
        plain = encoder.embed_positions(tokens, mask)
        encoder.fast_inference = True
        looked_up = encoder.embed_positions(tokens, mask)
        alone = torch.cat([encoder.input_by_lookup(tokens[i:i + 1]) for i in range(3)])
        few = encoder.embed_positions(tokens[:3], mask[:3])
        padded = encoder.embed_positions(torch.nn.functional.pad(tokens, (0, 5)), torch.nn.functional.pad(mask, (0, 5)))
    torch.testing.assert_close(looked_up, plain, rtol=1e-5, atol=1e-5)
    # a sequence's features do not depend on its batch (torch's own convolution differs for a batch of one)
    assert torch.equal(alone, encoder.input_by_lookup(tokens)[:3]) and torch.equal(few, looked_up[:3])
    torch.testing.assert_close(padded[:, :, :75], plain, rtol=1e-5, atol=1e-5)  # padding: the convolution
    encoder.train()
    assert encoder.fast_inference and not torch.equal(encoder.embed_positions(tokens, mask), looked_up)
