"""Mutant notations, validation, apply, libraries: on the real nn4dms / ProteinGym wild types."""

from __future__ import annotations

import itertools
import math
import types

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protlc.alphabet import STANDARD
from protlc.dms.mutations import (
    MutationError,
    Substitution,
    apply,
    apply_many,
    combinatorial,
    combinatorial_count,
    detect_notation,
    format_mutant,
    parse_combinatorial_spec,
    parse_mutant,
    saturation,
    substitutions_between,
    suggest_offset,
)
from protlc.errors import ConfigError, InputError, ProtlcError

# Pab1 RRM domain (nn4dms wt_sequences.tsv, wt_offset 126).
PAB1_WT = "GNIFIKNLHPDIDNKALYDTFSVFGDILSSKIATDENGKSKGFGFVHFEEEGAAKEAIDALNGMLLNGQEIYVAP"


@pytest.fixture(scope="module")
def pab1(nn4dms):
    """The nn4dms Pab1 wild type and offset, and the repository's 1,022 real Pab1 variants."""
    wt = pd.read_csv(nn4dms / "wt_sequences.tsv", sep="\t").set_index("dataset")
    table = pd.read_csv(nn4dms / "pab1" / "pab1.tsv", sep="\t")
    assert wt.loc["pab1", "wt_aa"] == PAB1_WT
    return types.SimpleNamespace(wt=PAB1_WT, offset=int(wt.loc["pab1", "wt_offset"]), table=table)


@pytest.fixture(scope="module")
def proteingym_targets(proteingym_reference):
    ref = pd.read_csv(proteingym_reference)
    return ref.set_index("DMS_id")["target_seq"]


# ---- parsing the three notations -------------------------------------------------------------------

def test_parse_each_notation_to_the_same_zero_based_substitutions():
    expected = (Substitution(0, "G", "A"), Substitution(2, "I", "P"))
    assert parse_mutant("G1A:I3P", "proteingym") == expected
    assert parse_mutant("G126A,I128P", "nn4dms", offset=126) == expected
    assert parse_mutant("G0A,I2P", "nn4dms") == expected
    assert parse_mutant("G126A:I128P", "esm", offset=126) == expected
    assert parse_mutant("G1A", "esm") == expected[:1]
    assert parse_mutant("_wt", "nn4dms") == () and parse_mutant("WT", "proteingym") == ()


def test_detect_notation_rule():
    assert detect_notation(["A108D,K110R", "A108G"]) == "nn4dms"
    assert detect_notation(["_wt", "A108G"]) == "nn4dms"
    assert detect_notation(["A1P:D2N", "A1C"]) == "proteingym"
    assert detect_notation(["H24C", float("nan"), "H24D"]) == "esm"
    with pytest.raises(InputError, match="mix"):
        detect_notation(["A1P:D2N", "A1P,D2N"])
    with pytest.raises(InputError, match="no mutant strings"):
        detect_notation([])


def test_detects_real_nn4dms_tables(nn4dms):
    for name in ("avgfp", "bgl3", "pab1"):
        table = pd.read_csv(nn4dms / name / f"{name}.tsv", sep="\t")
        assert detect_notation(table["variant"]) == "nn4dms"


def test_every_real_pab1_variant_applies(pab1):
    sequences, errors = apply_many(pab1.wt, pab1.table["variant"], "nn4dms", pab1.offset)
    assert errors == []
    assert len(sequences) == 1022
    differing = [sum(a != b for a, b in zip(s, pab1.wt)) for s in sequences]
    assert differing == pab1.table["num_mutations"].tolist()


def test_nn4dms_pab1_numbering_equals_proteingym_numbering_of_full_protein(pab1, proteingym_targets):
    """nn4dms G126A (domain + offset 126) is ProteinGym G126A on the full 577-residue PABP_YEAST target."""
    full = proteingym_targets["PABP_YEAST_Melamed_2013"]
    assert full[125:200] == pab1.wt
    variants = pab1.table["variant"].iloc[::97].tolist()
    domain, _ = apply_many(pab1.wt, variants, "nn4dms", pab1.offset)
    whole, errors = apply_many(full, [v.replace(",", ":") for v in variants], "proteingym")
    assert errors == []
    assert [s[125:200] for s in whole] == domain


def test_esm_offset_is_number_of_first_residue(proteingym_targets):
    """ESM's BLAT example: the mature sequence starts at residue 24, so --offset 24."""
    full = proteingym_targets["BLAT_ECOLX_Stiffler_2015"]
    mature = full[23:]
    mutants = [m for m in saturation(full) if int(m[1:-1]) >= 24][::37]
    on_full, _ = apply_many(full, mutants, "proteingym")
    on_mature, errors = apply_many(mature, mutants, "esm", offset=24)
    assert errors == [] and [s[23:] for s in on_full] == on_mature


# ---- bad input -----------------------------------------------------------------------------------

@pytest.mark.parametrize("mutant, notation, offset, message", [
    ("A1P", "proteingym", None, "wild-type letter 'A' does not match the wild type, which has 'G'"),
    ("G76A", "proteingym", None, "position beyond the 75-residue wild type"),
    ("G201A,N127D", "nn4dms", 126, "position beyond"),
    ("G1B", "proteingym", None, "unknown mutant residue letter 'B'"),
    ("G1a", "proteingym", None, "unknown mutant residue letter 'a'"),
    ("1GA", "proteingym", None, "malformed"),
    ("G1", "proteingym", None, "malformed"),
    ("G1xA", "proteingym", None, "malformed"),
    ("G1A:G1C", "proteingym", None, "same position is substituted twice"),
    ("G1A,N2D", "proteingym", None, "separates substitutions with ':'"),
    ("G0A", "proteingym", None, "before the first residue"),
    ("", "esm", None, "empty mutant"),
    ("G126", "nn4dms", 126, "no mutant residue letter after '126'"),  # not 'unknown mutant residue letter 6'
    ("G126", "esm", None, "no mutant residue letter after '126'"),
])
def test_bad_mutants_are_rejected_naming_the_token(mutant, notation, offset, message):
    with pytest.raises(MutationError, match=message) as info:
        apply(PAB1_WT, parse_mutant(mutant, notation, offset), offset=1 if offset is None else offset)
    assert isinstance(info.value, ProtlcError)
    _, errors = apply_many(PAB1_WT, ["_wt", mutant], notation, offset)
    assert len(errors) == 1 and errors[0][0] == 1 and message in errors[0][2]


def test_mismatch_error_names_the_offending_token():
    sequences, errors = apply_many(PAB1_WT, ["G1A:N2D:K3R", "_wt"], "proteingym")
    assert errors == [(0, "K3R", "wild-type letter 'K' does not match the wild type, which has 'I' there")]
    assert sequences == [None, PAB1_WT]
    with pytest.raises(MutationError, match="'K3R'"):
        apply(PAB1_WT, parse_mutant("G1A:N2D:K3R", "proteingym"))


def test_apply_many_keeps_order_and_can_stop_at_first_error():
    mutants = ["G1A", "Q2A", "N2D", "X9Y", "G1A:N2D"]
    sequences, errors = apply_many(PAB1_WT, mutants, "proteingym")
    assert [e[0] for e in errors] == [1, 3]
    assert sequences[0] == "A" + PAB1_WT[1:] and sequences[2] == "GD" + PAB1_WT[2:]
    assert sequences[4] == "AD" + PAB1_WT[2:]
    _, first = apply_many(PAB1_WT, mutants, "proteingym", stop_at_first_error=True)
    assert [e[0] for e in first] == [1]


def test_stop_substitution_is_kept_and_synonymous_is_a_no_op():
    assert apply(PAB1_WT, parse_mutant("N2*", "esm")) == "G*" + PAB1_WT[2:]
    assert apply(PAB1_WT, parse_mutant("G1G", "esm")) == PAB1_WT


def test_unknown_notation_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown mutant notation"):
        parse_mutant("G1A", "hgvs")


def test_suggest_offset_finds_the_nn4dms_offset(pab1):
    assert suggest_offset(pab1.wt, pab1.table["variant"].head(300), "nn4dms") == 126
    assert suggest_offset(pab1.wt, ["G1A", "N2D", "I3P"], "proteingym") == 1


# ---- round trip ----------------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(PAB1_WT) - 1), st.sampled_from(STANDARD + "*")),
                min_size=1, max_size=8, unique_by=lambda t: t[0]),
       st.sampled_from([("proteingym", None), ("nn4dms", 126), ("esm", 24), ("nn4dms", 0)]))
def test_apply_then_rederive_round_trips(edits, notation_offset):
    notation, offset = notation_offset
    subs = tuple(Substitution(p, PAB1_WT[p], m) for p, m in edits if m != PAB1_WT[p])
    mutant = format_mutant(subs, notation, offset)
    assert parse_mutant(mutant, notation, offset) == subs
    sequence = apply(PAB1_WT, subs)
    assert apply_many(PAB1_WT, [mutant], notation, offset)[0] == [sequence]
    assert substitutions_between(PAB1_WT, sequence) == tuple(sorted(subs))


# ---- libraries -----------------------------------------------------------------------------------

def test_saturation_gives_19_per_position_each_differing_at_one_position(pab1):
    mutants = saturation(pab1.wt)
    assert len(mutants) == 19 * 75 == 1425
    assert mutants[:3] == ["G1A", "G1C", "G1D"] and mutants[-1] == "P75Y"
    sequences, errors = apply_many(pab1.wt, mutants, "proteingym")
    assert errors == [] and len(set(sequences)) == 1425
    for mutant, sequence in zip(mutants, sequences):
        (sub,) = substitutions_between(pab1.wt, sequence)
        assert sub.label() == mutant
    assert len(saturation(pab1.wt, include_stop=True)) == 20 * 75


def test_combinatorial_count_is_the_product_and_generation_is_lazy():
    spec = "1:AGV,3:IDE,10:PW*"
    assert combinatorial_count(PAB1_WT, spec) == 3 * 3 * 3
    library = combinatorial(PAB1_WT, spec)
    assert not isinstance(library, list)
    mutants = list(library)
    assert len(mutants) == 27 == len(set(mutants))
    assert mutants[:2] == ["G1A", "G1A:P10W"]  # sites left at the wild-type letter are omitted
    assert "WT" in mutants
    sequences, errors = apply_many(PAB1_WT, mutants, "proteingym")
    assert errors == [] and len(set(sequences)) == 27
    big = "5:" + STANDARD + ",6:" + STANDARD + ",7:" + STANDARD + ",8:" + STANDARD + ",9:" + STANDARD
    assert combinatorial_count(PAB1_WT, big) == 20 ** 5
    assert len(list(itertools.islice(combinatorial(PAB1_WT, big), 1000))) == 1000


@pytest.mark.parametrize("spec, message", [
    ("10AGV", "NUMBER:RESIDUES"), ("x:AG", "NUMBER:RESIDUES"), ("10:", "NUMBER:RESIDUES"),
    ("76:A", "outside the 75-residue"), ("10:AB", "unknown residue letters 'B'"),
    ("10:AA", "repeated"), ("10:A,10:G", "appears twice"),
])
def test_bad_combinatorial_specs(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_combinatorial_spec(PAB1_WT, spec)


def test_combinatorial_offset_numbering():
    assert parse_combinatorial_spec(PAB1_WT, "126:A,200:G", offset=126) == [(0, "A"), (74, "G")]
    assert math.prod(len(r) for _, r in parse_combinatorial_spec(PAB1_WT, "126:AC,127:DEF", offset=126)) == 6
