"""``protlc prepare``: family-labelled protein data -> a prepared dataset directory (Parquet + noise)."""

from __future__ import annotations

from pathlib import Path

import click


from protlc.cli.signals import terminate_cleanly
from protlc.data import clusters, noise, novel, readers, splits
from protlc.data.prepare import SPLIT_METHODS, TOO_LONG_POLICIES, PrepareOptions, prepare_dataset

_EPILOG = """\b
Formats (auto-detected from content):
  stockholm    Pfam-A.seed style, one or many alignments per file (.gz ok);
               family = '#=GF ID' (accession '#=GF AC'); rows de-gapped, upper-cased
  protcnn-csv  directory with train/ dev/ test/ CSV shards; their split is kept;
               aligned_sequence is never read
  fasta        family from the header: Pfam-A.fasta '>NAME ACC PF00069.24;Pkinase;',
               '>NAME ... family=Pkinase', or '>NAME FAMILY' (else --fasta-family-regex)
  tsv          TSV/CSV with family_id, sequence [, sequence_name, family_accession]

\b
Example:
  protlc prepare data/exthomfam_tiny32.tsv --out prepared/tiny \\
      --label-noise 0.4 --crop-noise 0.5 --seed 1
  protlc prepare data/exthomfam_tiny32.tsv --out prepared/tiny_novel \\
      --novel-families 10 --label-noise 0.2 --label-noise-kind confusable
  protlc prepare data/exthomfam_tiny32.tsv --out prepared/tiny_c30 \\
      --split-method clustered --cluster-identity 0.3   # needs: pip install -e '.[cluster]'
"""


@click.command("prepare", epilog=_EPILOG)
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Dataset directory to create.")
@click.option("--format", "fmt", default="auto", show_default=True,
              type=click.Choice(("auto",) + readers.FORMATS), help="Input format (auto: detect from content).")
@click.option("--label-noise", default=0.0, show_default=True, type=float,
              help="Rate r in [0, 1): exactly round(r*N) training labels are replaced.")
@click.option("--label-noise-kind", default="symmetric", show_default=True, type=click.Choice(noise.LABEL_NOISE_KINDS),
              help="symmetric: uniform over the other classes; pair: a fixed random other class per class; "
                   "confusable: each family's most similar other family (3-mer profiles of its training domains).")
@click.option("--crop-noise", default=0.0, show_default=True, type=float,
              help="Fraction in [0, 1] of training sequences cropped to a random contiguous window.")
@click.option("--crop-fraction", default="0.5,0.9", show_default=True, metavar="MIN,MAX",
              help="Part of the sequence a crop keeps, drawn uniformly from MIN..MAX.")
@click.option("--split", "split_text", default=None, metavar="TRAIN,DEV,TEST",
              help="Per-family split fractions [default: 0.8,0.1,0.1; not allowed with protcnn-csv, which keeps its split].")
@click.option("--split-method", default="random", show_default=True, type=click.Choice(SPLIT_METHODS),
              help="random: members drawn per family; clustered: whole MMseqs2 clusters per family go to train, dev or "
                   "test, so held-out domains are far from the training domains (needs the 'cluster' extra).")
@click.option("--cluster-identity", default=clusters.DEFAULT_IDENTITY, show_default=True, type=float,
              help="Clustered split: sequences aligned at >= this identity (and --cluster-coverage) share a cluster.")
@click.option("--cluster-coverage", default=clusters.DEFAULT_COVERAGE, show_default=True, type=float,
              help="Clustered split: fraction of both sequences the alignment must cover (MMseqs2 -c, --cov-mode 0).")
@click.option("--cluster-linkage", default=clusters.DEFAULT_LINKAGE, show_default=True, type=click.Choice(tuple(clusters.LINKAGES)),
              help="Clustered split: single: connected components of every matching pair; set-cover: MMseqs2's default "
                   "(faster; each member matches only its representative, so held-out domains can be closer).")
@click.option("--cluster-threads", default=None, type=int, help="Clustered split: MMseqs2 threads [default: all cores].")
@click.option("--identity-sample", default=clusters.DEFAULT_IDENTITY_SAMPLE, show_default=True, type=int,
              help="Clustered split: test domains searched against train to record the realised identity (0: skip).")
@click.option("--novel-families", default=None, metavar="K|ID,ID,...",
              help="Keep families out of train/dev/test and write all their domains to novel.parquet (label -1): "
                   "K families drawn with the split seed, or a comma-separated list of family ids.")
@click.option("--min-family-size", default=1, show_default=True, type=int, help="Drop families with fewer members.")
@click.option("--max-length", default=None, type=int, help="Longest sequence kept (see --too-long) [default: no limit].")
@click.option("--too-long", default="drop", show_default=True, type=click.Choice(TOO_LONG_POLICIES),
              help="Sequences longer than --max-length: drop them, or cut the training split's to their first "
                   "--max-length residues (dev/test keep them whole).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seeds the split and the noise.")
@click.option("--split-seed", default=None, type=int, help="Seed of the split only [default: --seed].")
@click.option("--noise-seed", default=None, type=int, help="Seed of the noise only [default: --seed].")
@click.option("--fasta-family-regex", default=None, metavar="RE",
              help="Header regex with a (?P<family>...) group, optionally (?P<name>...) and (?P<accession>...).")
@click.option("--overwrite", is_flag=True, help="Replace an existing dataset directory.")
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr [default: when a terminal].")
def prepare_command(inputs, out_dir, fmt, label_noise, label_noise_kind, crop_noise, crop_fraction, split_text, split_method,
            cluster_identity, cluster_coverage, cluster_linkage, cluster_threads, identity_sample, novel_families,
            min_family_size, max_length, too_long, seed, split_seed, noise_seed, fasta_family_regex, overwrite, progress):
    """Read family-labelled protein data and write a prepared dataset directory.

    INPUT... are Stockholm, FASTA or TSV/CSV files (gzipped or not) or ProtCNN shard directories.
    The output holds train/dev/test.parquet (and novel.parquet with --novel-families), labels.json and
    manifest.json; noise is applied to the training split only.
    """
    options = PrepareOptions(
        format=fmt, label_noise=label_noise, label_noise_kind=label_noise_kind, crop_noise=crop_noise,
        crop_fraction=noise.parse_crop_fraction(crop_fraction),
        split=None if split_text is None else splits.parse_fractions(split_text),
        min_family_size=min_family_size, max_length=max_length, too_long=too_long, seed=seed,
        split_seed=split_seed, noise_seed=noise_seed, fasta_family_regex=fasta_family_regex,
        split_method=split_method, cluster_identity=cluster_identity, cluster_coverage=cluster_coverage,
        cluster_linkage=cluster_linkage, cluster_threads=cluster_threads, identity_sample=identity_sample,
        novel_families=novel.parse_novel_families(novel_families),
    )
    with terminate_cleanly():
        summary = prepare_dataset(inputs, out_dir, options, overwrite=overwrite, progress=progress)
    click.echo(summary.table())
    if summary.long_warning():
        click.echo(f"protlc: warning: {summary.long_warning()}", err=True)
