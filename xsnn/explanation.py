"""The one result type of every explanation: :class:`Explanation`.

Following shap's ``Explanation``, it holds parallel arrays over the features (``mask``,
``values``, ``feature_names``) beside the instance (``data``, ``spikes``) and what justifies the
answer (``status``, ``proof``, ``verification``, ``stats``), plus ``settings``: the model (name
and content hash), where the image came from, every option and the xsnn version, so that a saved
explanation says exactly what it is about.

Kinds:

* ``axp`` — a set of features whose values in the image *entail* the prediction: every input
  that agrees with the image on them is predicted the same (within ``max_distance`` changed
  features when that is set). Status ``complete`` means proven subset-minimal.
* ``min-axp`` — an AXp of minimum size; status ``complete`` means proven minimum.
* ``cxp`` — a set of features that, freed (the rest kept), *can* change the prediction; status
  ``complete`` means proven subset-minimal.
* ``attribution`` — formal feature attribution: ``values[k]`` is the share of AXps that contain
  feature ``k``; status ``complete`` means every AXp was enumerated (the shares are exact and a
  feature with share 0 is irrelevant: it occurs in no AXp).

With ``target`` set, the question is contrastive: "why the prediction and not ``target``?": an
AXp then entails that the predicted class beats ``target`` (other classes may win), a CXp can
make ``target`` beat it.

JSON: :meth:`Explanation.to_dict` / :meth:`Explanation.from_dict` and :meth:`save` /
:meth:`load` round-trip exactly (no pickle). The proof is stored with each witness as the
positions where it differs from the instance.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xsnn.model import BSNN
from xsnn.solvers.certificate import AXpCertificate, CXpCertificate, VerificationReport, certificate_from_dict

__all__ = ["Explanation", "KINDS", "STATUSES", "SCHEMA"]

SCHEMA = "xsnn.explanation/1"
KINDS = ("axp", "min-axp", "cxp", "attribution")
STATUSES = ("complete", "timeout", "interrupted", "undecided", "limit", "error")
_KIND_WORDS = {
    "axp": "abductive explanation (AXp)",
    "min-axp": "minimum abductive explanation (minimum AXp)",
    "cxp": "contrastive explanation (CXp)",
    "attribution": "formal feature attribution",
}


@dataclass(frozen=True, eq=False)
class Explanation:
    """One explanation of one prediction (see the module docstring for the kinds).

    Attributes:
        kind: ``axp``, ``min-axp``, ``cxp`` or ``attribution``.
        data: the explained image (uint8, ``input_shape``), or ``None`` when spikes were given.
        spikes: the instance's input spikes ``(T, n_inputs)``.
        mask: ``(n_features,)`` bool, True for the explanation's features.
        features: sorted indices of the explanation's features.
        feature_names: names of all features.
        feature_pixels: the pixel indices of each feature.
        input_shape: the shape of one image.
        values: ``(n_features,)`` float per-feature values (``attribution``: share of AXps
            containing the feature), ``None`` for the other kinds.
        prediction: the predicted class label (e.g. the digit).
        target: for a contrastive question, the label of the class the prediction is contrasted
            with; ``None`` otherwise.
        status: ``complete``, ``timeout``, ``interrupted``, ``undecided``, ``limit`` or ``error``.
        minimal: every feature's necessity is proven (subset-minimality), for the set kinds.
        stats: questions asked, seconds, and kind-specific figures.
        proof: the certificate (:class:`~xsnn.solvers.certificate.AXpCertificate` or
            :class:`~xsnn.solvers.certificate.CXpCertificate`); ``None`` for ``attribution`` and
            ``error``.
        verification: the independent re-check, when one was asked for.
        settings: ``model``, ``model_hash``, ``data`` (the image's source), ``options``,
            ``xsnn_version``.
        seconds: wall time of the computation.
    """

    kind: str
    data: np.ndarray | None
    spikes: np.ndarray
    mask: np.ndarray
    features: tuple[int, ...]
    feature_names: tuple[str, ...]
    feature_pixels: tuple[tuple[int, ...], ...]
    input_shape: tuple[int, ...]
    values: np.ndarray | None
    prediction: int
    target: int | None
    status: str
    minimal: bool
    stats: dict
    proof: AXpCertificate | CXpCertificate | None
    verification: VerificationReport | None = None
    settings: dict = field(default_factory=dict)
    seconds: float = 0.0

    # ------------------------------------------------------------------ views

    @property
    def size(self) -> int:
        """Number of features in the explanation."""
        return len(self.features)

    @property
    def max_distance(self) -> int | None:
        return self.settings.get("options", {}).get("max_distance")

    @property
    def pixel_mask(self) -> np.ndarray:
        """Bool array of ``input_shape``: pixels that belong to the explanation's features."""
        flat = np.zeros(int(np.prod(self.input_shape)), bool)
        for k in self.features:
            flat[list(self.feature_pixels[k])] = True
        return flat.reshape(self.input_shape)

    def __repr__(self) -> str:
        target = "" if self.target is None else f", target={self.target}"
        return (
            f"Explanation(kind={self.kind!r}, prediction={self.prediction}{target}, "
            f"size={self.size}/{len(self.mask)}, status={self.status!r})"
        )

    def summary(self, verbose: bool = False) -> str:
        """The result in plain words (with ``verbose``: also which solver path answered how often)."""
        n = len(self.mask)
        unit = "pixels" if all(len(p) == 1 for p in self.feature_pixels) else "features"
        k = self.max_distance
        within = "" if k is None else f" that differs from it in at most {k} {unit}"
        versus = f"{self.prediction} over {self.target}" if self.target is not None else str(self.prediction)
        beats = (
            f"class {self.prediction} beats class {self.target}"
            if self.target is not None
            else f"the prediction is {self.prediction}"
        )
        contrast = "" if self.target is None else f" (contrasted with {self.target})"
        lines = [f"Prediction: {self.prediction}{contrast}"]
        if self.status == "error":
            lines.append(f"No explanation: {self.stats.get('error', 'error')}")
            return "\n".join(lines)
        if self.kind in ("axp", "min-axp"):
            if self.size == 0:
                lines.append(
                    f"Robust: {beats} for every input{within or ''}; no {unit[:-1]} needs to be fixed"
                    if k is not None
                    else f"Constant: {beats} whatever the input (empty explanation)"
                )
            else:
                lines.append(
                    f"{_cap(_KIND_WORDS[self.kind])}: {self.size} of {n} {unit}. Keeping these "
                    f"{unit} as they are guarantees {versus if self.target is not None else 'the prediction'} "
                    f"for every input{within}."
                )
            if self.kind == "min-axp":
                proven = self.status == "complete"
                bound = self.stats.get("lower_bound")
                lines.append(
                    "Proven minimum: no smaller set of features does this."
                    if proven
                    else f"Not proven minimum ({self.status}); every explanation has at least {bound} {unit}."
                )
            elif self.size:
                lines.append(
                    self._minimality_words(
                        "removing any one of them lets another class win"
                        if self.target is None
                        else f"removing any one of them lets {self.target} win"
                    )
                )
        elif self.kind == "cxp":
            lines.append(
                f"{_cap(_KIND_WORDS['cxp'])}: {self.size} of {n} {unit}. Changing these {unit} "
                f"(the rest as they are{'' if k is None else f', at most {k} changed'}) can change "
                f"{'the prediction' if self.target is None else f'it to {self.target}'}."
            )
            lines.append(self._minimality_words("keeping any one of them as it is prevents that"))
        else:
            n_axps = self.stats.get("n_axps", 0)
            exact = self.status == "complete"
            lines.append(
                f"{_cap(_KIND_WORDS['attribution'])} over {n_axps} AXps"
                f"{' (all of them: exact)' if exact else f' ({self.status}: not all AXps found)'}: "
                f"{self.size} of {n} {unit} occur in some AXp"
                + (f", {n - self.size} in none (irrelevant)." if exact else ".")
            )
        if self.kind in ("axp", "min-axp") and self.status in ("timeout", "interrupted"):
            lines.append(
                "Faster questions: coarser features (features='patches:4', --features patches:4), the "
                "least influential features first (order='influence', --order influence) or a "
                "distance bound (max_distance=2, --distance 2: often answered in a second)."
                if k is None
                else "Faster questions: coarser features (features='patches:4', "
                "--features patches:4) or a smaller distance bound."
            )
        lines.append(f"Time: {self.seconds:.2f} s, {self.stats.get('questions', 0)} entailment questions.")
        if verbose and self.stats.get("answered_by"):
            lines.append(
                "Answered by: "
                + ", ".join(f"{name} {count}" for name, count in sorted(self.stats["answered_by"].items()))
            )
        if self.verification is not None:
            v = self.verification
            verdict = "confirmed" if v.ok else f"NOT confirmed ({v.status}): " + "; ".join(v.problems[:3])
            checker = ", ".join(v.verifier) or "witness replay"
            lines.append(f"Independent check ({checker}, {v.checks} checks): {verdict}")
        return "\n".join(lines)

    def _minimality_words(self, reason: str) -> str:
        if self.minimal:
            return f"Proven subset-minimal: {reason}."
        unproven = len(self.proof.unproven) if self.proof is not None else self.size
        return (
            f"Not proven subset-minimal ({self.status}): {unproven} of its features were not shown "
            f"necessary, so a smaller set may exist; the set itself is proven."
        )

    def render(self, legend: bool = True) -> str:
        """A text picture of a 2-D image with a legend (other inputs: the feature names)."""
        if len(self.input_shape) != 2:
            return " ".join(self.feature_names[k] for k in self.features)
        on = (self.spikes.sum(axis=0) > 0).reshape(self.input_shape)
        chosen = self.pixel_mask
        glyphs = np.where(chosen, np.where(on, "#", "o"), np.where(on, ".", " "))
        rows = ["+" + "-" * self.input_shape[1] + "+"]
        rows += ["|" + "".join(row) + "|" for row in glyphs]
        rows.append(rows[0])
        if legend:
            word = {
                "axp": "explanation",
                "min-axp": "explanation",
                "cxp": "explanation (freed)",
                "attribution": "in some AXp",
            }[self.kind]
            rows.append(f"'#' {word}, pixel on   'o' {word}, pixel off   '.' other pixel, on   ' ' other pixel, off")
        return "\n".join(rows)

    # ------------------------------------------------------------------ JSON

    def proof_digest(self) -> str | None:
        """SHA-256 of the proof's canonical JSON (``None`` without a proof)."""
        if self.proof is None:
            return None
        text = json.dumps(self.proof.as_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def to_dict(self, proof: bool = True) -> dict:
        """A JSON-serialisable dict (the shared schema of every command); ``proof=False`` leaves the
        certificate out (its digest stays)."""
        out: dict[str, Any] = {
            "schema": SCHEMA,
            "kind": self.kind,
            "prediction": self.prediction,
            "target": self.target,
            "status": self.status,
            "minimal": self.minimal,
            "size": self.size,
            "n_features": len(self.mask),
            "features": list(self.features),
            "values": None if self.values is None else [float(v) for v in self.values],
            "seconds": self.seconds,
            "stats": self.stats,
            "settings": self.settings,
            "instance": {
                "spikes": self.spikes.tolist(),
                "data": None if self.data is None else self.data.tolist(),
                "input_shape": list(self.input_shape),
            },
            "proof_digest": self.proof_digest(),
        }
        if self.feature_pixels != tuple((i,) for i in range(len(self.feature_pixels))):
            out["feature_pixels"] = [list(p) for p in self.feature_pixels]
            out["feature_names"] = list(self.feature_names)
        if proof:
            out["proof"] = None if self.proof is None else self.proof.as_dict()
        v = self.verification
        out["verification"] = (
            None
            if v is None
            else {
                "ok": v.ok,
                "problems": list(v.problems),
                "minimal": v.minimal,
                "verifier": list(v.verifier),
                "independent": v.independent,
                "checks": v.checks,
                "status": v.status,
            }
        )
        return out

    @classmethod
    def from_dict(cls, d: dict, model: BSNN | None = None) -> Explanation:
        """Inverse of :meth:`to_dict`. The proof needs the model it is about: pass it, or leave it
        to be loaded by the name in ``settings`` (a shipped model); its content hash must match."""
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            got = d.get("schema") if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"not an xsnn explanation (schema {got!r}, expected {SCHEMA!r})")
        instance = d["instance"]
        input_shape = tuple(int(s) for s in instance["input_shape"])
        spikes = np.array(instance["spikes"], dtype=np.uint8)
        n_inputs = spikes.shape[1]
        if "feature_pixels" in d:
            pixels = tuple(tuple(int(i) for i in p) for p in d["feature_pixels"])
            names = tuple(str(n) for n in d["feature_names"])
        else:
            from xsnn.features import FeatureSet

            default = FeatureSet.pixels(n_inputs, input_shape)
            pixels, names = default.groups, default.names
        mask = np.zeros(int(d["n_features"]), bool)
        mask[list(d["features"])] = True
        proof = None
        if d.get("proof") is not None:
            base = model if model is not None else _model_named(d["settings"])
            proof = certificate_from_dict(d["proof"], _question_model(base, d))
        elif "proof" not in d and d.get("proof_digest") is not None:
            raise ValueError(
                "this explanation was saved without its proof (to_dict(proof=False)); it cannot be restored exactly"
            )
        v = d.get("verification")
        verification = (
            None
            if v is None
            else VerificationReport(
                bool(v["ok"]),
                tuple(v["problems"]),
                bool(v["minimal"]),
                tuple(v["verifier"]),
                bool(v["independent"]),
                int(v["checks"]),
                str(v["status"]),
            )
        )
        return cls(
            kind=d["kind"],
            data=None if instance["data"] is None else np.array(instance["data"], np.uint8),
            spikes=spikes,
            mask=mask,
            features=tuple(int(k) for k in d["features"]),
            feature_names=names,
            feature_pixels=pixels,
            input_shape=input_shape,
            values=None if d["values"] is None else np.array(d["values"], dtype=np.float64),
            prediction=int(d["prediction"]),
            target=None if d["target"] is None else int(d["target"]),
            status=str(d["status"]),
            minimal=bool(d["minimal"]),
            stats=d["stats"],
            proof=proof,
            verification=verification,
            settings=d["settings"],
            seconds=float(d["seconds"]),
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write the explanation as JSON (with its proof)."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict()))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, model: BSNN | None = None) -> Explanation:
        """Read an explanation written by :meth:`save` (see :meth:`from_dict` for ``model``)."""
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: not a readable explanation file ({exc})") from None
        return cls.from_dict(d, model)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _question_model(model: BSNN, d: dict) -> BSNN:
    """The network the proof is about: ``model``, or its contrastive restriction for a ``target``."""
    if d["target"] is None:
        return model
    from xsnn.model import contrastive_model

    labels = list(model.labels)
    if d["prediction"] not in labels or d["target"] not in labels:
        raise ValueError(
            f"the model's labels {labels} do not include the explanation's classes {d['prediction']} and {d['target']}"
        )
    return contrastive_model(model, labels.index(d["prediction"]), labels.index(d["target"]))


def _model_named(settings: dict) -> BSNN:
    from xsnn.model import load_model, shipped_model_names

    name = settings.get("model")
    if name not in shipped_model_names():
        raise ValueError(f"the explanation is about model {name!r}, which is not shipped: pass model=...")
    return load_model(name)
