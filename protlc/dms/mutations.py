"""Substitution notations: parse, validate, apply to a wild type; saturation and combinatorial libraries.

Three notations are read (docs/method.md §6). They differ in how substitutions are separated and in how residues
are numbered; the numbering is fixed by ``offset``, **the number that the wild type's first residue
carries in the mutant strings**, so that ``position0 = number - offset`` (0-based index into the wild
type) in every notation:

============  ===============  =========  ==============  =============================================
notation      example          separator  default offset  source of the offset
============  ===============  =========  ==============  =============================================
proteingym    ``A1P:D2N``      ``:``      1               ProteinGym numbers the target_seq from 1
nn4dms        ``A108D,K110R``  ``,``      0               ``wt_offset`` of nn4dms' wt_sequences.tsv
                                                          (Pab1: 126, so ``G126A`` is the first residue)
esm           ``H24C``         ``:``      1               ESM's ``--offset-idx`` (same meaning: BLAT 24)
============  ===============  =========  ==============  =============================================

``offset=None`` means the notation's default; an explicit offset overrides it whatever the notation.
The wild type itself is written ``_wt`` (nn4dms) or ``WT`` (any case, any notation).

:func:`detect_notation` (``--notation auto``) applies this rule to the mutant strings of a table:

1. any string contains ``,`` or is ``_wt`` -> ``nn4dms`` (0-based + offset);
2. else any string contains ``:`` -> ``proteingym``;
3. else (single substitutions only) -> ``esm`` (1-based unless ``--offset``).

A singles-only nn4dms table without a ``_wt`` row is therefore read 1-based: its wild-type letters
then fail to match, and :func:`suggest_offset` names the offset at which they all match.

Mutant letters: the 20 standard amino acids and ``*`` (stop; real DMS data hold nonsense variants,
e.g. 2,310 rows of avGFP). Ambiguity letters (X B Z J U O) are refused as *mutant* letters because an
assay measures a definite residue; they may occur in the wild type. A substitution to the wild-type
letter (``A5A``) is accepted and changes nothing. A ``*`` stays in the mutated sequence; what a model
makes of it is the encoder's decision (ridge one-hot has a column for it, like nn4dms).
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Iterable, Iterator, NamedTuple, Sequence

from protlc.alphabet import ALPHABET, STANDARD
from protlc.errors import ConfigError, InputError

STOP = "*"
MUTANT_LETTERS = frozenset(STANDARD + STOP)
WILD_TYPE_LETTERS = frozenset(ALPHABET.letters)
WILD_TYPE_MARKERS = frozenset({"_wt", "wt"})  # compared lower-cased
NN4DMS_WILD_TYPE = "_wt"
LIBRARY_WILD_TYPE = "WT"
SEPARATORS = {"proteingym": ":", "nn4dms": ",", "esm": ":"}
DEFAULT_OFFSETS = {"proteingym": 1, "nn4dms": 0, "esm": 1}
NOTATIONS = tuple(SEPARATORS)
_CACHE_LIMIT = 1_000_000  # tokens remembered per wild type; bounded against floods of junk tokens


class Substitution(NamedTuple):
    """One substitution: ``position0`` is the 0-based index into the wild-type sequence."""

    position0: int
    wt: str
    mut: str

    def label(self, offset: int = 1) -> str:
        """Token in a notation whose first residue is numbered ``offset`` (``A1P`` for offset 1)."""
        return f"{self.wt}{self.position0 + offset}{self.mut}"


class MutationError(InputError):
    """A mutant string or token is invalid. ``token`` and ``reason`` let callers add file and row."""

    def __init__(self, token: str, reason: str):
        self.token = token
        self.reason = reason
        super().__init__(f"mutant {token!r}: {reason}")


def resolve_notation(notation: str, offset: int | None) -> tuple[str, int]:
    """Return ``(notation, offset)`` with the notation's default offset filled in.

    Raises:
        ConfigError: unknown notation (``auto`` must be resolved with :func:`detect_notation` first).
    """
    if notation not in SEPARATORS:
        raise ConfigError(f"unknown mutant notation {notation!r}; choose one of {', '.join(NOTATIONS)} or auto")
    return notation, DEFAULT_OFFSETS[notation] if offset is None else int(offset)


def is_wild_type(mutant: str) -> bool:
    return mutant.strip().lower() in WILD_TYPE_MARKERS


def detect_notation(samples: Iterable[str]) -> str:
    """Pick ``nn4dms``, ``proteingym`` or ``esm`` from mutant strings by the rule in the module docstring.

    Raises:
        InputError: no strings, or both ``,`` and ``:`` used as separators.
    """
    seen_any = has_comma = has_colon = has_nn4dms_wt = False
    for s in samples:
        if not isinstance(s, str):
            continue
        seen_any = True
        has_comma = has_comma or "," in s
        has_colon = has_colon or ":" in s
        has_nn4dms_wt = has_nn4dms_wt or s.strip() == NN4DMS_WILD_TYPE
    if not seen_any:
        raise InputError("cannot detect the mutant notation: no mutant strings")
    if has_comma and has_colon:
        raise InputError("mutant strings mix ',' (nn4dms) and ':' (ProteinGym/ESM) separators; "
                         "pass --notation explicitly")
    if has_comma or has_nn4dms_wt:
        return "nn4dms"
    return "proteingym" if has_colon else "esm"


@functools.lru_cache(maxsize=65536)
def _parse_token(token: str, offset: int) -> Substitution:
    """Syntax and letters of one token such as ``A108D``; no wild-type check."""
    tok = token.strip()
    if len(tok) < 3:
        raise MutationError(token, "malformed substitution (expected wild-type letter, number, mutant letter, e.g. A24C)")
    wt_letter, digits, mut = tok[0], tok[1:-1], tok[-1]
    if mut.isascii() and mut.isdigit() and (tok[1:].isascii() and tok[1:].isdigit()):  # G126: no new residue
        raise MutationError(token, f"malformed substitution: no mutant residue letter after {tok[1:]!r} "
                                   f"(expected e.g. {tok}A)")
    if not (digits.isascii() and digits.isdigit()):
        raise MutationError(token, f"malformed substitution: {digits!r} is not a residue number (expected e.g. A24C)")
    if wt_letter not in WILD_TYPE_LETTERS:
        raise MutationError(token, f"unknown wild-type residue letter {wt_letter!r}")
    if mut not in MUTANT_LETTERS:
        raise MutationError(token, f"unknown mutant residue letter {mut!r} (allowed: {STANDARD} and * for stop)")
    position0 = int(digits) - offset
    if position0 < 0:
        raise MutationError(token, f"residue number {digits} is before the first residue, which is numbered {offset} "
                                   "(check --offset)")
    return Substitution(position0, wt_letter, mut)


def _split(mutant: str, notation: str) -> list[str]:
    sep = SEPARATORS[notation]
    other = "," if sep == ":" else ":"
    if other in mutant:
        raise MutationError(mutant, f"{notation} separates substitutions with {sep!r}, not {other!r} "
                                    "(check --notation)")
    return mutant.split(sep)


def parse_mutant(mutant: str, notation: str, offset: int | None = None) -> tuple[Substitution, ...]:
    """Parse a mutant string into substitutions (in the order written; ``()`` for the wild type).

    Checks syntax, letters and duplicate positions; the wild-type letters are checked by :func:`apply`.

    Raises:
        MutationError: malformed token, unknown residue letter, position before the first residue,
            the same position twice.
        ConfigError: unknown notation.
    """
    notation, offset = resolve_notation(notation, offset)
    if not isinstance(mutant, str) or not mutant.strip():
        raise MutationError(str(mutant), "empty mutant string (write the wild type as _wt or WT)")
    if is_wild_type(mutant):
        return ()
    subs = tuple(_parse_token(t, offset) for t in _split(mutant, notation))
    _check_distinct(mutant, subs)
    return subs


def _check_distinct(mutant: str, subs: Sequence[Substitution]) -> None:
    if len(subs) > 1 and len({s.position0 for s in subs}) != len(subs):
        raise MutationError(mutant, "the same position is substituted twice")


def _problem(wt: str, sub: Substitution) -> str | None:
    if sub.position0 >= len(wt):
        return f"position beyond the {len(wt)}-residue wild type (check --offset and the wild-type sequence)"
    found = wt[sub.position0]
    if found != sub.wt:
        return f"wild-type letter {sub.wt!r} does not match the wild type, which has {found!r} there"
    return None


def apply(wt: str, subs: Sequence[Substitution], offset: int = 1) -> str:
    """Return the wild type with ``subs`` applied (``offset`` only numbers tokens in error messages).

    Raises:
        MutationError: position beyond the sequence, wild-type letter mismatch, duplicate position.
    """
    chars = list(wt)
    for sub in subs:
        problem = _problem(wt, sub)
        if problem:
            raise MutationError(sub.label(offset), problem)
        chars[sub.position0] = sub.mut
    _check_distinct(":".join(s.label(offset) for s in subs), subs)
    return "".join(chars)


class MutantApplier:
    """Applies mutant strings of one notation to one wild type, remembering every token it has checked.

    ``apply_many`` is the hot path of scoring (millions of rows in chunks): per row it splits the string
    once and looks each token up in a dict of already-validated ``(position0, mutant letter)``.
    """

    def __init__(self, wt: str, notation: str, offset: int | None = None):
        self.notation, self.offset = resolve_notation(notation, offset)
        self.wt = wt
        self._wt_bytes = wt.encode("ascii")
        self.separator = SEPARATORS[self.notation]
        self._cache: dict[str, tuple[int, int] | str] = {}

    def lookup(self, token: str) -> tuple[int, int] | str:
        """``(position0, mutant byte)`` of a valid token, else the reason it is invalid."""
        hit = self._cache.get(token)
        if hit is None:
            try:
                sub = _parse_token(token, self.offset)
                hit = _problem(self.wt, sub) or (sub.position0, ord(sub.mut))
            except MutationError as err:
                hit = err.reason
            if len(self._cache) < _CACHE_LIMIT:
                self._cache[token] = hit
        return hit

    def apply_one(self, mutant: str) -> str:
        """Mutated sequence of one mutant string.

        Raises:
            MutationError: naming the offending token (the caller adds file and row).
        """
        sequence, error = self.check(mutant)
        if error is not None:
            raise MutationError(*error)
        return sequence

    def check(self, mutant) -> tuple[str | None, tuple[str, str] | None]:
        """``(mutated sequence, None)``, or ``(None, (offending token, reason))`` for a bad mutant string."""
        if not isinstance(mutant, str) or not mutant:
            return None, (str(mutant), "empty mutant string (write the wild type as _wt or WT)")
        tokens = mutant.split(self.separator)
        if len(tokens) == 1:
            hit = self.lookup(mutant)
            if isinstance(hit, str):
                if is_wild_type(mutant):
                    return self.wt, None
                other = "," if self.separator == ":" else ":"
                if other in mutant:
                    hit = f"{self.notation} separates substitutions with {self.separator!r}, not {other!r} (check --notation)"
                return None, (mutant, hit)
            position0, letter = hit
            return self.wt[:position0] + chr(letter) + self.wt[position0 + 1:], None
        buffer = bytearray(self._wt_bytes)
        positions = set()
        for token in tokens:
            hit = self.lookup(token)
            if isinstance(hit, str):
                return None, (token, hit)
            position0, letter = hit
            if position0 in positions:
                return None, (mutant, "the same position is substituted twice")
            positions.add(position0)
            buffer[position0] = letter
        return buffer.decode("ascii"), None

    def apply_many(self, mutants: Iterable[str], stop_at_first_error: bool = False
                   ) -> tuple[list[str | None], list[tuple[int, str, str]]]:
        """Apply every mutant string; see :func:`apply_many`."""
        sequences: list[str | None] = []
        errors: list[tuple[int, str, str]] = []
        for row, mutant in enumerate(mutants):
            sequence, error = self.check(mutant)
            sequences.append(sequence)
            if error is not None:
                errors.append((row, error[0], error[1]))
                if stop_at_first_error:
                    break
        return sequences, errors


@functools.lru_cache(maxsize=8)
def applier(wt: str, notation: str, offset: int | None = None) -> MutantApplier:
    """A shared :class:`MutantApplier`, so chunk after chunk reuses one token cache."""
    return MutantApplier(wt, notation, offset)


def apply_many(wt: str, mutants: Iterable[str], notation: str, offset: int | None = None,
               stop_at_first_error: bool = False) -> tuple[list[str | None], list[tuple[int, str, str]]]:
    """Apply many mutant strings to ``wt``; never raises for a bad row.

    Returns:
        ``(sequences, errors)``: ``sequences[i]`` is the mutated sequence of row ``i`` or None when the
        row is invalid (input order kept); ``errors`` lists ``(row_index, token, message)`` for each
        invalid row. With ``stop_at_first_error`` the scan ends at the first invalid row.

    Raises:
        ConfigError: unknown notation.
    """
    return applier(wt, notation, offset).apply_many(mutants, stop_at_first_error)


def substitutions_between(wt: str, sequence: str) -> tuple[Substitution, ...]:
    """Substitutions turning ``wt`` into ``sequence`` (same length), by increasing position.

    Raises:
        InputError: lengths differ (an indel cannot be written as substitutions).
    """
    if len(sequence) != len(wt):
        raise InputError(f"mutated sequence has length {len(sequence)} but the wild type has {len(wt)}; "
                         "only substitutions are supported")
    return tuple(Substitution(i, a, b) for i, (a, b) in enumerate(zip(wt, sequence)) if a != b)


def format_mutant(subs: Sequence[Substitution], notation: str = "proteingym", offset: int | None = None) -> str:
    """Write substitutions as a mutant string (``WT``/``_wt`` for none)."""
    notation, offset = resolve_notation(notation, offset)
    if not subs:
        return NN4DMS_WILD_TYPE if notation == "nn4dms" else LIBRARY_WILD_TYPE
    return SEPARATORS[notation].join(s.label(offset) for s in subs)


def suggest_offset(wt: str, mutants: Iterable[str], notation: str, max_tokens: int = 2000) -> int | None:
    """The offset at which the wild-type letters of (a sample of) ``mutants`` all match ``wt``, if unique.

    Used to turn a mismatch into a hint such as ``--offset 126``. Unparseable tokens are skipped.
    """
    numbered: list[tuple[int, str]] = []
    for mutant in itertools.islice((m for m in mutants if isinstance(m, str) and not is_wild_type(m)), max_tokens):
        for token in mutant.replace(",", ":").split(":"):
            token = token.strip()
            if len(token) >= 3 and token[1:-1].isascii() and token[1:-1].isdigit():
                numbered.append((int(token[1:-1]), token[0]))
    if not numbered:
        return None
    low = min(n for n, _ in numbered)
    high = max(n for n, _ in numbered)
    fits = [o for o in range(high - len(wt) + 1, low + 1)
            if all(wt[n - o] == letter for n, letter in numbered)]
    return fits[0] if len(fits) == 1 else None


def saturation(wt: str, offset: int = 1, include_stop: bool = False) -> list[str]:
    """Every single substitution of ``wt``: position by position, mutant letters in ``ACDEFGHIKLMNPQRSTVWY``
    order (then ``*`` with ``include_stop``), written ``A1C`` (ProteinGym/ESM, first residue = ``offset``).

    19 per position (20 at a non-standard wild-type letter such as ``X``), so 19 x L for a standard wild type.
    """
    letters = STANDARD + (STOP if include_stop else "")
    return [f"{w}{i + offset}{m}" for i, w in enumerate(wt) for m in letters if m != w]


def parse_combinatorial_spec(wt: str, spec: str, offset: int = 1) -> list[tuple[int, str]]:
    """Parse ``"10:AGV,25:DE"`` into ``[(position0, residues), ...]``.

    Spec format: comma-separated sites ``[WT]NUMBER:RESIDUES``; ``NUMBER`` counts from ``offset`` (default 1,
    ProteinGym numbering), and an optional wild-type letter before it (``V39:AGV``) is checked against the
    wild type; ``RESIDUES`` are standard letters (``*`` for stop) allowed at that site, the
    wild-type letter included when the site may stay unchanged.

    Raises:
        ConfigError: malformed site, position outside the wild type, unknown or repeated letter,
            repeated position.
    """
    sites: list[tuple[int, str]] = []
    for item in spec.split(","):
        number, sep, residues = item.strip().partition(":")
        number, residues = number.strip(), residues.strip()
        letter = number[0] if number[:1].isalpha() else None
        number = number[1:] if letter else number
        if not sep or not (number.isascii() and number.isdigit()) or not residues:
            raise ConfigError(f"combinatorial spec {spec!r}: site {item.strip()!r} is not [WT]NUMBER:RESIDUES "
                              "(e.g. 10:AGV,E25:DE)")
        position0 = int(number) - offset
        if not 0 <= position0 < len(wt):
            raise ConfigError(f"combinatorial spec {spec!r}: position {number} is outside the {len(wt)}-residue "
                              f"wild type numbered from {offset}")
        if letter is not None and letter.upper() != wt[position0]:
            raise ConfigError(f"combinatorial spec {spec!r}: site {item.strip()!r} names wild-type letter "
                              f"{letter!r}, but residue {number} (numbered from {offset}) is {wt[position0]!r}")
        bad = sorted(set(residues) - MUTANT_LETTERS)
        if bad or len(set(residues)) != len(residues):
            why = f"unknown residue letters {''.join(bad)!r}" if bad else "a residue letter is repeated"
            raise ConfigError(f"combinatorial spec {spec!r}: site {item.strip()!r}: {why}")
        if any(p == position0 for p, _ in sites):
            raise ConfigError(f"combinatorial spec {spec!r}: position {number} appears twice")
        sites.append((position0, residues))
    return sites


def combinatorial_count(wt: str, spec: str, offset: int = 1) -> int:
    """Number of variants :func:`combinatorial` yields: the product of the allowed-residue counts."""
    return math.prod(len(r) for _, r in parse_combinatorial_spec(wt, spec, offset))


def combinatorial(wt: str, spec: str, offset: int = 1) -> Iterator[str]:
    """Lazily yield every combination of the spec's allowed residues (see :func:`parse_combinatorial_spec`).

    Mutant strings are ProteinGym-style (``V10A:E25D``, numbered from ``offset``), sites in spec order;
    a site left at its wild-type letter is omitted, and the all-wild-type combination is ``WT``.
    The first site varies slowest (``itertools.product`` order).
    """
    sites = parse_combinatorial_spec(wt, spec, offset)
    options = [[None if r == wt[p] else f"{wt[p]}{p + offset}{r}" for r in residues] for p, residues in sites]
    for combo in itertools.product(*options):
        tokens = [t for t in combo if t is not None]
        yield ":".join(tokens) if tokens else LIBRARY_WILD_TYPE
