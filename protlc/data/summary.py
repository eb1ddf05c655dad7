"""What ``prepare`` did: a summary object, its printed table, and the manifest built from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from protlc import columns as col

MANIFEST_FORMAT = 1
PERCENTILES = (5, 50, 95)
LONG_SEQUENCE = 10_000  # prepare warns when it keeps longer sequences (residues)


def length_stats(lengths: np.ndarray) -> dict[str, int | None]:
    """Min, 5th/50th/95th percentiles (nearest rank, as ints) and max of sequence lengths."""
    lengths = np.asarray(lengths)
    if lengths.size == 0:
        return {"min": None, **{f"p{q}": None for q in PERCENTILES}, "max": None}
    stats = {"min": int(lengths.min())}
    for q in PERCENTILES:
        stats[f"p{q}"] = int(np.percentile(lengths, q, method="nearest"))
    stats["max"] = int(lengths.max())
    return stats


@dataclass
class PrepareSummary:
    """Counts and settings of one ``prepare`` run (the same numbers go to ``manifest.json``)."""

    out_dir: Path
    num_families: int
    counts: dict[str, int]
    duplicates_dropped: int = 0
    too_long: int = 0
    too_long_policy: str = "drop"
    max_length: int | None = None
    # sequences longer than max_length per action and split: {"truncated" (train only), "kept_whole"
    # (dev/test under truncate), "dropped" (None when dropped before a stratified split): {split: n}}
    too_long_splits: dict = field(default_factory=dict)
    min_family_size: int = 1
    families_dropped: int = 0
    sequences_dropped_small: int = 0
    noise: dict = field(default_factory=dict)
    split: dict = field(default_factory=dict)
    lengths: dict[str, dict] = field(default_factory=dict)
    long_kept: int = 0  # sequences (or training crops) longer than LONG_SEQUENCE in the written splits
    novel: dict | None = None  # the manifest's ``novel`` entry (protlc.data.novel), None without novel families

    def long_warning(self) -> str | None:
        """One line when sequences longer than :data:`LONG_SEQUENCE` were kept (each batch holding one is
        padded to its length), else None."""
        if not self.long_kept:
            return None
        longest = max(s["max"] for s in self.lengths.values() if s.get("max") is not None)
        return (f"{self.long_kept:,} sequence(s) longer than {LONG_SEQUENCE:,} residues kept (longest {longest:,}); "
                f"drop or cut them with --max-length {LONG_SEQUENCE} [--too-long truncate]")

    @property
    def noisy_fraction(self) -> float:
        """Realised fraction of training rows whose observed label differs from the clean one."""
        return self.noise["label"]["noisy"] / max(self.counts["train"], 1)

    def manifest(self, sources: list[dict], *, seed: int, version: str, family_counts: dict) -> dict:
        """The manifest dict (JSON-ready, no timestamps)."""
        return {
            "protlc_version": version,
            "manifest_format": MANIFEST_FORMAT,
            "sources": sources,
            "num_classes": self.num_families,
            "counts": self.counts,
            "seed": seed,
            "split": self.split,
            "filters": {
                "duplicates_dropped": self.duplicates_dropped,
                "max_length": self.max_length,
                "too_long_policy": self.too_long_policy,
                "too_long_sequences": self.too_long,
                "too_long": {"policy": self.too_long_policy, "max_length": self.max_length, **self.too_long_splits},
                "min_family_size": self.min_family_size,
                "families_dropped": self.families_dropped,
                "sequences_dropped_with_small_families": self.sequences_dropped_small,
            },
            "noise": self.noise,
            "lengths": self.lengths,
            "family_counts_order": list(col.SPLITS),
            "family_counts": family_counts,
            **({"novel": self.novel} if self.novel else {}),
        }

    def table(self) -> str:
        """A plain-text summary table for the terminal."""
        label, crop = self.noise["label"], self.noise["crop"]
        split = self.split
        split_text = "given by the input" if split["policy"] == "given" else (
            f"{split['policy']} {','.join(f'{f:g}' for f in split['fractions'])}, seed {split['seed']}")
        long_text = "no limit" if self.max_length is None else f"{self.too_long} longer than {self.max_length} ({self.too_long_policy})"
        if self.max_length is not None and self.too_long_policy == "truncate":
            kept = self.too_long_splits["kept_whole"]
            long_text += (f": {self.too_long_splits['truncated']['train']} train sequences truncated, "
                          f"{kept['dev']} dev and {kept['test']} test kept whole")
        lines = [
            f"prepared {self.out_dir}",
            f"  families           {self.num_families}"
            + (f" ({self.families_dropped} dropped with < {self.min_family_size} members, "
               f"{self.sequences_dropped_small} sequences)" if self.families_dropped else ""),
            f"  split              {split_text}",
            *(_cluster_lines(split) if split["policy"] == "clustered" else []),
            *([f"  novel families     {self.novel['num_families']} held out of train/dev/test "
               f"({', '.join(self.novel['families'][:6])}{', ...' if self.novel['num_families'] > 6 else ''}): "
               f"{self.novel['domains']} domains in {col.NOVEL}.parquet, label -1"] if self.novel else []),
            f"  duplicates dropped {self.duplicates_dropped}",
            f"  max length         {long_text}",
            f"  label noise        {label['kind']} r={label['rate']:g}: {label['noisy']} of {self.counts['train']} "
            f"training rows ({100 * self.noisy_fraction:.2f}%), seed {self.noise['seed']}",
            f"  crop noise         p={crop['probability']:g}, fraction {crop['fraction_range'][0]:g}-{crop['fraction_range'][1]:g}: "
            f"{crop['cropped']} rows cropped" + (f", {100 * crop['mean_kept_fraction']:.1f}% kept on average" if crop["cropped"] else ""),
            "",
            f"  {'split':<6}{'sequences':>11}{'noisy':>8}{'len min':>9}" + "".join(f"{'p' + str(q):>7}" for q in PERCENTILES) + f"{'max':>7}",
        ]
        for name in (*col.SPLITS, *([col.NOVEL] if self.novel else [])):
            stats = self.lengths[name]
            noisy = label["noisy"] if name == "train" else 0
            lines.append(
                f"  {name:<6}{self.counts[name]:>11}{noisy:>8}{stats['min']:>9}"
                + "".join(f"{stats['p' + str(q)]:>7}" for q in PERCENTILES) + f"{stats['max']:>7}"
            )
        return "\n".join(lines)


def _cluster_lines(split: dict) -> list[str]:
    """The clustered split's lines of the summary table."""
    clustering, checked = split["clustering"], split["realised_identity"]
    params = clustering["parameters"]
    lines = [
        f"  clusters           {clustering['clusters']} ({clustering['tool']} {clustering['command']}, {clustering['linkage']} "
        f"linkage, identity >= {params['min_seq_id']:g}, coverage {params['coverage']:g}, cov-mode {params['cov_mode']}; "
        f"largest {clustering['largest_cluster']}, {clustering['clusters_spanning_families']} span families)",
        f"  train-only         {split['num_train_only_families']} families (no cluster fits their dev/test quota)",
    ]
    if checked:
        criteria, loose = checked["criteria"], checked["any_alignment"]
        lines.append(
            f"  test vs train      max identity {criteria['max']:g} (coverage >= {criteria['coverage']:g}, E <= {criteria['evalue']:g}), "
            f"{loose['max']:g} (any local alignment); {checked['sample']} sampled test domains, median {criteria['median']:g}")
    return lines


def describe_noise(options, noise_seed: int, lengths, starts, ends, clean, observed, pair_targets) -> dict:
    """The manifest's ``noise`` entry (training split only)."""
    n = max(len(clean), 1)
    cropped = (starts > 0) | (ends < lengths)
    noisy = int((observed != clean).sum())
    kept = (ends - starts)[cropped] / np.maximum(lengths[cropped], 1)
    return {
        "applies_to": "train", "seed": noise_seed,
        "label": {"kind": options.label_noise_kind, "rate": options.label_noise, "noisy": noisy,
                  "realised_rate": round(noisy / n, 6),
                  "pair_map": pair_targets.tolist() if pair_targets is not None else None},
        "crop": {"probability": options.crop_noise, "fraction_range": list(options.crop_fraction),
                 "cropped": int(cropped.sum()), "realised_rate": round(float(cropped.mean()) if len(clean) else 0.0, 6),
                 "mean_kept_fraction": round(float(kept.mean()), 6) if kept.size else None},
    }


def family_counts(codes, labels, vocabulary) -> dict[str, list[int]]:
    """Members per family in train, dev, test (clean labels), ``{family_id: [train, dev, test]}``."""
    per_split = np.stack([np.bincount(labels[codes == c], minlength=len(vocabulary)) for c in range(len(col.SPLITS))], axis=1)
    return {f: per_split[i].tolist() for i, f in enumerate(vocabulary)}
