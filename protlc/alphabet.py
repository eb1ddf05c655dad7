"""The residue vocabulary: letters, ambiguity policy, padding, validation and encoding.

Everything that touches residues goes through :data:`ALPHABET`.

Token indices: 0 is padding; 1..20 are the standard amino acids ``ACDEFGHIKLMNPQRSTVWY``;
21..26 are the extra IUPAC letters ``X B Z J U O``; 27 is the stop ``*``, which only variant
(DMS) sequences may hold mid-sequence (nonsense mutants), via ``problem(seq, allow_stop=True)``. The model never sees token ids directly: it sees
:meth:`Alphabet.soft_one_hot` rows, where

* a standard letter is its one-hot vector,
* ``X`` (unknown) is uniform over the 20 standard letters,
* ``B`` (D or N), ``Z`` (E or Q), ``J`` (I or L) split their mass between the two candidates,
* ``U`` (selenocysteine) counts as ``C`` and ``O`` (pyrrolysine) as ``K``, their closest standard residues,
* a stop ``*`` is an all-zero vector at a real (unmasked) position: "no residue here", which the
  convolutions see as different from its neighbours,
* padding is all zero (and is masked as well).

Anything else (digits, ``*`` inside a sequence, ``-``/``.`` gaps, lowercase letters) is rejected with the
position and character, because it usually means the wrong file type (alignment, nucleotides, a
soft-masked or translated sequence) rather than a protein.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

STANDARD = "ACDEFGHIKLMNPQRSTVWY"
EXTRA = "XBZJUO"
STOP = "*"
PAD_INDEX = 0

_AMBIGUITY = {
    "X": {a: 1.0 / len(STANDARD) for a in STANDARD},
    "B": {"D": 0.5, "N": 0.5},
    "Z": {"E": 0.5, "Q": 0.5},
    "J": {"I": 0.5, "L": 0.5},
    "U": {"C": 1.0},
    "O": {"K": 1.0},
}
_NUCLEOTIDES = set("ACGTUN")


@dataclass(frozen=True)
class Alphabet:
    standard: str = STANDARD
    extra: str = EXTRA
    stop: str = STOP
    letters: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "letters", self.standard + self.extra)

    @property
    def size(self) -> int:
        """Number of token ids including padding and stop."""
        return 2 + len(self.letters)

    @property
    def num_channels(self) -> int:
        """Width of the model's input (one channel per standard amino acid)."""
        return len(self.standard)

    def invalid_character(self, sequence: str, allow_stop: bool = False) -> tuple[int, str] | None:
        """Return ``(0-based position, char)`` of the first character outside the alphabet, else None."""
        bad = sequence.translate(_DELETE_VALID_STOP if allow_stop else _DELETE_VALID)
        if not bad:
            return None
        pos = sequence.index(bad[0])
        return pos, bad[0]

    def problem(self, sequence: str, allow_stop: bool = False) -> str | None:
        """Describe why ``sequence`` is not a valid protein sequence, or None if it is.

        ``allow_stop`` accepts ``*`` anywhere (variant sequences with nonsense mutations).
        """
        if not sequence:
            return "empty sequence"
        hit = self.invalid_character(sequence, allow_stop)
        if hit is not None:
            pos, char = hit
            if char.islower():
                hint = "lowercase letters usually mean nucleotides or soft-masking; protlc expects upper-case protein sequences"
            elif char in "-.":
                hint = "gap characters: give unaligned sequences (Stockholm rows are de-gapped automatically)"
            elif char == "*":
                hint = "'*' (stop) is only allowed as the last character"
            else:
                hint = f"allowed letters are {self.letters}"
            return f"invalid residue {char!r} at position {pos + 1} ({hint})"
        if len(sequence) >= 30 and set(sequence) <= _NUCLEOTIDES:
            return "looks like a nucleotide sequence (only A/C/G/T/U/N); give protein sequences"
        return None

    def clean(self, sequence: str) -> str:
        """Strip whitespace and one trailing stop ``*``; does not validate."""
        sequence = sequence.strip()
        if sequence.endswith("*"):
            sequence = sequence[:-1]
        return sequence

    def encode(self, sequence: str) -> np.ndarray:
        """Token ids (uint8, shape ``(len,)``) of a validated sequence."""
        return _LOOKUP[np.frombuffer(sequence.encode("ascii"), dtype=np.uint8)]

    def encode_bytes(self, ascii_bytes: np.ndarray) -> np.ndarray:
        """Token ids (uint8, same shape) of validated sequences given as ASCII bytes, e.g. an ``(n, L)`` matrix."""
        return _LOOKUP[ascii_bytes]

    def decode(self, tokens) -> str:
        symbols = self.letters + self.stop
        return "".join(symbols[t - 1] for t in np.asarray(tokens).tolist() if t != PAD_INDEX)

    def soft_one_hot(self) -> np.ndarray:
        """Float32 matrix of shape ``(size, num_channels)``: input vector for each token id."""
        m = np.zeros((self.size, self.num_channels), dtype=np.float32)
        for i, a in enumerate(self.standard, start=1):
            m[i, i - 1] = 1.0
        for j, a in enumerate(self.extra, start=1 + len(self.standard)):
            for b, w in _AMBIGUITY[a].items():
                m[j, self.standard.index(b)] = w
        return m


ALPHABET = Alphabet()

STOP_INDEX = ALPHABET.size - 1
_DELETE_VALID = str.maketrans("", "", ALPHABET.letters)
_DELETE_VALID_STOP = str.maketrans("", "", ALPHABET.letters + STOP)
_LOOKUP = np.zeros(256, dtype=np.uint8)
for _i, _a in enumerate(ALPHABET.letters, start=1):
    _LOOKUP[ord(_a)] = _i
_LOOKUP[ord(STOP)] = STOP_INDEX
