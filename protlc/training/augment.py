"""Training-time augmentation: random crops and residue masking (docs/method.md §5, augmentation).

Both act on a padded batch on its own device, without host synchronisation, and only through the mask
and the token ids, so the masked network sees a cropped sequence exactly as it would see a shorter one:

* crop: with probability ``crop_probability`` a sequence keeps one random contiguous window of
  ``ceil(f * length)`` residues, ``f ~ U(crop_min, 1)``, start uniform over the valid starts; the rest
  becomes padding. The cropping noise of ``protlc prepare`` is the same operation done once; here a new
  window is drawn every time the sequence is seen, so the network learns families from fragments.
* mask: each remaining residue becomes ``X`` (uniform over the 20 amino acids) with probability
  ``mask_rate``, so the network cannot lean on any single conserved position.

Randomness comes from a generator seeded by ``(seed, step)``: a resumed run draws what an
uninterrupted one would, and the same seed gives the same run.
"""

from __future__ import annotations

import torch

from protlc.alphabet import ALPHABET, PAD_INDEX

X_INDEX = int(ALPHABET.encode("X")[0])
DEFAULTS = {"crop_probability": 0.0, "crop_min": 0.5, "mask_rate": 0.0}


def is_active(settings: dict) -> bool:
    return settings.get("crop_probability", 0.0) > 0 or settings.get("mask_rate", 0.0) > 0


def step_generator(device: torch.device, seed: int, step: int) -> torch.Generator:
    """A generator on ``device`` whose stream depends only on ``seed`` and the optimizer ``step``."""
    return torch.Generator(device=device).manual_seed((int(seed) * 1_000_003 + int(step)) % (2**63 - 1))


def augment_batch(tokens: torch.Tensor, mask: torch.Tensor, settings: dict,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Cropped and masked copies of a batch.

    Args:
        tokens: ``(B, L)`` token ids, :data:`~protlc.alphabet.PAD_INDEX` at padding.
        mask: ``(B, L)`` bool, True at residues (left-aligned, as the loaders make them).
        settings: ``crop_probability``, ``crop_min`` and ``mask_rate`` (see the module docstring).
        generator: on the batch's device (:func:`step_generator`).

    Returns:
        ``(tokens, mask)`` of the same shapes; every row keeps at least one residue.
    """
    crop_p, crop_min, mask_rate = (float(settings.get(k, DEFAULTS[k])) for k in DEFAULTS)
    batch, width = tokens.shape
    device = tokens.device
    if crop_p > 0:
        lengths = mask.sum(dim=1)
        uniforms = torch.rand((3, batch), generator=generator, device=device)
        fraction = crop_min + (1 - crop_min) * uniforms[0]
        cropped = uniforms[1] < crop_p
        keep = torch.where(cropped, torch.ceil(fraction * lengths).long().clamp(min=1), lengths)
        start = torch.floor(uniforms[2] * (lengths - keep + 1)).long()
        positions = torch.arange(width, device=device).unsqueeze(0)
        inside = (positions >= start.unsqueeze(1)) & (positions < (start + keep).unsqueeze(1)) & mask
        # shift the window to the left edge, as a shorter sequence would be laid out
        source = (positions + start.unsqueeze(1)).clamp(max=width - 1)
        tokens = torch.gather(torch.where(inside, tokens, PAD_INDEX), 1, source)
        mask = positions < keep.unsqueeze(1)
        tokens = torch.where(mask, tokens, PAD_INDEX)
    if mask_rate > 0:
        hidden = (torch.rand(tokens.shape, generator=generator, device=device) < mask_rate) & mask
        tokens = torch.where(hidden, X_INDEX, tokens)
    return tokens, mask
