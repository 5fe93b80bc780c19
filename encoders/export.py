"""Writers: the entailment question as DIMACS CNF or SMT-LIB2 text, for external solvers.

Both files state in comments what the variables mean: the goal (``prediction != c``,
ties to the lowest class index), which literal is the selector of which feature, and
which literal is which input. ``fix="all"`` adds every selector as a unit clause (an
assertion in SMT-LIB2): the instance itself, UNSAT for the predicted class. ``fix="none"``
leaves every feature free: SAT unless the prediction holds for every input.

SAT (sat) means NOT entailed (some input agreeing with the instance on the fixed
features changes the prediction); UNSAT means the fixed features entail it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from xsnn.features import FeatureSet
from xsnn.model import BSNN

from .cnf import DEFAULT_CLAUSAL_ENCODING, CNFEncoding, encode_cnf
from .common import domain_kind
from .smt import SMTEncoding, encode_smt

__all__ = ["write_dimacs", "write_smt2", "export_instance", "FORMATS", "FIX_MODES"]

FORMATS = ("dimacs", "smt2")
FIX_MODES = ("all", "none")


def _check_fix(fix: str) -> None:
    if fix not in FIX_MODES:
        raise ValueError(f"fix must be one of {FIX_MODES}, got {fix!r}")


def _header(encoding: CNFEncoding | SMTEncoding, fix: str) -> list[str]:
    causal = encoding.causal
    model = causal.model
    goal = "!=" if encoding.goal == "differs" else "="
    lines = [
        "xsnn entailment question",
        f"network: {model.describe()}",
        f"network hash: {model.content_hash()}",
        f"goal: prediction {goal} class index {encoding.target} (label {model.labels[encoding.target]}); "
        "ties go to the lowest class index",
        "satisfiable: some input agreeing with the instance on the fixed features satisfies the goal",
        f"fixed features: {fix}",
        f"features: {len(encoding.features)}",
    ]
    if encoding.max_distance is not None:
        lines.append(f"distance bound: at most {encoding.max_distance} features differ from the instance")
    if causal.interventions:
        lines.append(f"interventions: {len(causal.interventions)} variables set by do()")
    return lines


def write_dimacs(
    encoding: CNFEncoding, path: str | os.PathLike, fix: str = "none", comments: Sequence[str] = ()
) -> Path:
    """Write ``encoding`` as DIMACS ``p cnf`` (``fix="all"``: every selector as a unit clause).

    Comment lines: ``c selector <feature> <literal> <name>`` and ``c input <pixel> <step> <literal>``.
    """
    _check_fix(fix)
    if encoding.native:
        raise ValueError(
            "the native encoding has AtMost constraints that plain DIMACS cannot hold; "
            "export with a clausal encoding (e.g. 'adder' or 'seqcounter')"
        )
    path = Path(path)
    units = [[int(s)] for s in encoding.selectors] if fix == "all" else []
    clauses = encoding.formula.clauses
    kind = domain_kind(encoding.causal.coding.free_trains(encoding.causal.n_steps))
    with open(path, "w") as out:
        for line in [*_header(encoding, fix), f"encoding: {encoding.encoding}", *comments]:
            out.write(f"c {line}\n")
        out.write(f"c true {encoding.true_lit}\n")
        for f, (lit, name) in enumerate(zip(encoding.selectors.tolist(), encoding.features.names)):
            out.write(f"c selector {f} {lit} {name}\n")
        steps = [0] if kind == "shared" else range(encoding.inputs.shape[0])
        for t in steps:
            for i, lit in enumerate(encoding.inputs[t].tolist()):
                out.write(f"c input {i} {'*' if kind == 'shared' else t} {lit}\n")
        out.write(f"p cnf {encoding.n_vars} {len(clauses) + len(units)}\n")
        for clause in clauses:
            out.write(" ".join(map(str, clause)) + " 0\n")
        for clause in units:
            out.write(f"{clause[0]} 0\n")
    return path


def write_smt2(encoding: SMTEncoding, path: str | os.PathLike, fix: str = "none", comments: Sequence[str] = ()) -> Path:
    """Write ``encoding`` as SMT-LIB2 (``fix="all"``: every selector asserted), ending in ``(check-sat)``."""
    _check_fix(fix)
    path = Path(path)
    fixed = range(len(encoding.features)) if fix == "all" else ()
    header = [
        *_header(encoding, fix),
        f"variant: {encoding.variant}",
        *comments,
        "selectors: sel_<feature> (Bool); inputs: x_<pixel> (static) or x_<pixel>_<step>",
    ]
    with open(path, "w") as out:
        for line in header:
            out.write(f"; {line}\n")
        for f, name in enumerate(encoding.features.names):
            out.write(f"; selector sel_{f} {name}\n")
        out.write(encoding.to_smt2(fixed))
    return path


def export_instance(
    model: BSNN,
    instance_spikes: np.ndarray,
    target: int,
    fmt: str,
    fix: str,
    path: str | os.PathLike,
    encoding: str | None = None,
    *,
    features: FeatureSet | None = None,
    max_distance: int | None = None,
) -> Path:
    """Write "prediction != target" for ``instance_spikes`` ``(T, n_inputs)`` as ``fmt`` ("dimacs" or "smt2").

    ``encoding``: for DIMACS, a clausal cardinality encoding (default
    :data:`~xsnn.encoders.cnf.DEFAULT_CLAUSAL_ENCODING`); for SMT-LIB2, ``"lia"`` (default) or ``"pb"``.
    Returns the path written.
    """
    _check_fix(fix)
    if fmt == "dimacs":
        cnf = encode_cnf(
            model,
            instance_spikes,
            target,
            features=features,
            max_distance=max_distance,
            encoding=encoding or DEFAULT_CLAUSAL_ENCODING,
        )
        return write_dimacs(cnf, path, fix)
    if fmt == "smt2":
        smt = encode_smt(
            model, instance_spikes, target, features=features, max_distance=max_distance, variant=encoding or "lia"
        )
        return write_smt2(smt, path, fix)
    raise ValueError(f"unknown export format {fmt!r}; choose one of {FORMATS}")
