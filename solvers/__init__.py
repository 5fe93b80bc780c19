"""Entailment oracles and explanation algorithms (installed as ``xsnn.solvers``)."""
