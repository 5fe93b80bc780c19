"""Causal model -> CNF (python-sat) and SMT (z3) encoders (installed as ``xsnn.encoders``)."""
