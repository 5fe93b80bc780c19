"""Reified cardinality constraints over one variable pool: the building block of the CNF encoder.

A *counter* stands for the number ``C`` of true literals in a multiset ``L`` of
literals (a literal may occur several times: it then counts several times). The
encoder needs three things of a counter:

- ``reify(C, [b_1, ..., b_m])``: literals ``o_k`` with ``o_k <-> C >= b_k`` (exact, both
  directions: spikes are functions of counts);
- ``require_geq(C, b, guard)``: ``guard -> C >= b`` (one direction, for the goal);
- ``require_leq(C, b)``: ``C <= b`` (hard, for "prediction = c" and the distance bound).

Encodings (selected by name):

- ``native``: python-sat's native AtMost constraints (``CNFPlus``; Minicard / Gluecard).
  All bounds of one counter share two constraints (the "chain" trick): with ordered
  outputs ``o_1 >= ... >= o_m`` and ``b_0 = 0``::

      sum(~L) + sum_k (b_k - b_{k-1}) o_k          <= |L|   (o_k -> C >= b_k)
      sum(L)  + sum_k (b_{k+1} - b_k) ~o_k         <= |L|   (~o_k -> C < b_k), b_{m+1} = |L| + 1

  (a literal repeated ``w`` times has weight ``w``; Minicard counts repeats).
- ``adder``: a binary adder (column compression of full adders, Tseitin, both
  directions) computing ``C`` in binary, and a comparator per bound (``O(log |L|)``
  clauses). Counters add up with ripple-carry adders, so window sums share work.
- ``totalizer``: python-sat's ``ITotalizer`` over ``L`` (outputs ``C >= k -> r_k``) and a
  second one over ``~L``; the clause ``~r_{b-1} v ~r'_{|L|-b}`` closes the other direction, so
  ``r_{b-1} <-> C >= b``. One pair of totalizers per counter serves every bound.
- ``seqcounter``, ``sortnetwrk``, ``cardnetwrk``, ``mtotalizer``, ``kmtotalizer``: python-sat's
  ``CardEnc`` per bound, reified by clause relaxation: ``o -> C >= b`` is every clause of
  ``atleast(L, b)`` with ``~o`` added, ``~o -> C <= b - 1`` every clause of ``atmost(L, b - 1)``
  with ``o`` added (exact: ``o -> exists aux. F`` is ``exists aux. (~o v F)``).
"""

from __future__ import annotations

import abc
from collections import Counter as Multiset
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from pysat.card import CardEnc, EncType, ITotalizer
from pysat.formula import CNF, CNFPlus, IDPool

__all__ = ["ClauseSink", "Count", "CardinalityEncoding", "make_encoding", "ENCODINGS", "PYSAT_ENCODINGS"]

PYSAT_ENCODINGS = {
    "seqcounter": EncType.seqcounter,
    "sortnetwrk": EncType.sortnetwrk,
    "cardnetwrk": EncType.cardnetwrk,
    "mtotalizer": EncType.mtotalizer,
    "kmtotalizer": EncType.kmtotalizer,
}
ENCODINGS = ("native", "adder", "totalizer", *PYSAT_ENCODINGS)


class ClauseSink:
    """Clauses (and native AtMost constraints) over one ``IDPool``, with constant folding.

    Literal ``true`` (variable 1, asserted by a unit clause) and ``-true`` are the
    constants; :meth:`clause` drops false literals and satisfied clauses.
    """

    def __init__(self, native: bool = False) -> None:
        self.pool = IDPool()
        self.native = native
        self.true = self.pool.id("TRUE")
        self.clauses: list[list[int]] = [[self.true]]
        self.atmosts: list[tuple[list[int], int]] = []

    @property
    def false(self) -> int:
        return -self.true

    def const(self, value: bool) -> int:
        return self.true if value else -self.true

    def is_const(self, lit: int) -> bool:
        return abs(lit) == self.true

    def var(self, name: object = None) -> int:
        """A fresh variable (named when ``name`` is given: the same name gives the same variable)."""
        return self.pool.id(name) if name is not None else self.pool.id()

    def clause(self, lits: Sequence[int]) -> None:
        true = self.true
        out = []
        for lit in lits:
            if lit == true:
                return
            if lit != -true:
                out.append(lit)
        self.clauses.append(out if out else [-true])

    def atmost(self, lits: Sequence[int], k: int) -> None:
        """Native ``sum(lits) <= k`` (only for a native sink)."""
        if not self.native:
            raise ValueError("native AtMost constraints need a native (CNFPlus) sink")
        if k < 0:
            self.clauses.append([-self.true])
        elif k < len(lits):
            self.atmosts.append((list(lits), int(k)))

    def and_(self, a: int, b: int) -> int:
        f = -self.true
        if a == f or b == f or a == -b:
            return f
        if a == self.true or a == b:
            return b
        if b == self.true:
            return a
        o = self.var()
        self.clauses.extend(([-o, a], [-o, b], [o, -a, -b]))
        return o

    def or_(self, a: int, b: int) -> int:
        return -self.and_(-a, -b)

    def xor(self, a: int, b: int) -> int:
        t = self.true
        if a == -t:
            return b
        if b == -t:
            return a
        if a == t:
            return -b
        if b == t:
            return -a
        if a == b:
            return -t
        if a == -b:
            return t
        o = self.var()
        self.clauses.extend(([-a, -b, -o], [a, b, -o], [-a, b, o], [a, -b, o]))
        return o

    def formula(self) -> CNF | CNFPlus:
        """The collected constraints as a python-sat formula (``CNFPlus`` for a native sink)."""
        if self.native:
            formula = CNFPlus()
            formula.atmosts = [[lits, k] for lits, k in self.atmosts]
        else:
            formula = CNF()
        formula.clauses = self.clauses
        formula.nv = self.pool.top
        return formula


@dataclass(frozen=True, eq=False)
class Count:
    """The count ``C`` of true literals in the multiset ``lits`` (no constants), as built by an encoding.

    ``bits`` is the binary representation (least significant first) for the adder encoding.
    """

    lits: tuple[int, ...]
    bits: tuple[int, ...] = ()

    @property
    def size(self) -> int:
        """The largest value ``C`` can take."""
        return len(self.lits)


class CardinalityEncoding(abc.ABC):
    """Turns counts and bounds into constraints in a :class:`ClauseSink`."""

    name: str = ""

    def __init__(self, sink: ClauseSink) -> None:
        self.sink = sink

    def count(self, lits: Sequence[int]) -> Count:
        """A counter over ``lits`` (repeats allowed; constants are not)."""
        lits = tuple(int(l) for l in lits)
        if any(self.sink.is_const(l) for l in lits):
            raise ValueError("fold constants into the bound before counting")
        return self._make(lits)

    def _make(self, lits: tuple[int, ...]) -> Count:
        return Count(lits)

    def add(self, a: Count, b: Count) -> Count:
        """The counter of ``a + b``."""
        return Count(a.lits + b.lits)

    def reify(self, count: Count, bounds: Sequence[int]) -> list[int]:
        """Literals ``o_k <-> count >= bounds[k]`` (constants for trivial bounds)."""
        sink = self.sink
        wanted = sorted({int(b) for b in bounds if 1 <= b <= count.size})
        outputs = dict(zip(wanted, self._reify(count, wanted))) if wanted else {}
        result = []
        for b in bounds:
            b = int(b)
            result.append(sink.true if b <= 0 else sink.false if b > count.size else outputs[b])
        return result

    @abc.abstractmethod
    def _reify(self, count: Count, bounds: list[int]) -> list[int]:
        """Outputs for sorted, distinct, non-trivial bounds ``1 <= b <= size``."""

    def require_geq(self, count: Count, bound: int, guard: int | None = None) -> None:
        """``guard -> count >= bound`` (hard when ``guard`` is None)."""
        if bound <= 0:
            return
        if bound > count.size:
            self.sink.clause([] if guard is None else [-guard])
            return
        self._require_geq(count, int(bound), guard)

    def _require_geq(self, count: Count, bound: int, guard: int | None) -> None:
        (o,) = self._reify(count, [bound])
        self.sink.clause([o] if guard is None else [-guard, o])

    def require_leq(self, count: Count, bound: int) -> None:
        """``count <= bound`` (hard)."""
        if bound >= count.size:
            return
        if bound < 0:
            self.sink.clause([])
            return
        self._require_leq(count, int(bound))

    def _require_leq(self, count: Count, bound: int) -> None:
        (o,) = self._reify(count, [bound + 1])
        self.sink.clause([-o])

    def _ordered(self, outputs: list[int]) -> None:
        """``o_{k+1} -> o_k`` for outputs of increasing bounds (implied; helps propagation)."""
        for lo, hi in zip(outputs, outputs[1:]):
            self.sink.clause([-hi, lo])

    def _distinct(self, lits: tuple[int, ...]) -> list[int]:
        """``lits`` with repeated occurrences replaced by fresh equivalent copies."""
        seen: set[int] = set()
        out = []
        for lit in lits:
            if lit in seen or -lit in seen:
                copy = self.sink.var()
                self.sink.clauses.extend(([-copy, lit], [copy, -lit]))
                lit = copy
            seen.add(lit)
            out.append(lit)
        return out


class NativeEncoding(CardinalityEncoding):
    """python-sat native AtMost constraints (see the module docstring for the chain trick)."""

    name = "native"

    def _reify(self, count: Count, bounds: list[int]) -> list[int]:
        sink = self.sink
        n = count.size
        outputs = [sink.var() for _ in bounds]
        self._ordered(outputs)
        neg = [-l for l in count.lits]
        upper, lower = list(neg), list(count.lits)
        previous = 0
        for o, b in zip(outputs, bounds):
            upper.extend([o] * (b - previous))
            previous = b
        nxt = bounds[1:] + [n + 1]
        for o, b, b_next in zip(outputs, bounds, nxt):
            lower.extend([-o] * (b_next - b))
        sink.atmost(upper, n)
        sink.atmost(lower, n)
        return outputs

    def _require_geq(self, count: Count, bound: int, guard: int | None) -> None:
        neg = [-l for l in count.lits]
        if guard is None:
            self.sink.atmost(neg, count.size - bound)
        else:
            self.sink.atmost(neg + [guard] * bound, count.size)

    def _require_leq(self, count: Count, bound: int) -> None:
        self.sink.atmost(list(count.lits), bound)


class AdderEncoding(CardinalityEncoding):
    """Binary adders (Tseitin full/half adders, both directions) and comparators with constants."""

    name = "adder"

    def _make(self, lits: tuple[int, ...]) -> Count:
        sink = self.sink
        columns: dict[int, deque] = {}
        for lit, mult in Multiset(lits).items():
            i = 0
            while mult:
                if mult & 1:
                    columns.setdefault(i, deque()).append(lit)
                mult >>= 1
                i += 1
        bits = []
        i = 0
        while i in columns or i < max(columns, default=-1):
            column = columns.get(i, deque())
            while len(column) >= 2:
                a, b = column.popleft(), column.popleft()
                c = column.popleft() if column else sink.false
                s, carry = self._full_adder(a, b, c)
                column.append(s)
                columns.setdefault(i + 1, deque()).append(carry)
            bits.append(column[0] if column else sink.false)
            i += 1
        return Count(lits, tuple(bits))

    def _full_adder(self, a: int, b: int, c: int) -> tuple[int, int]:
        sink = self.sink
        consts = [x for x in (a, b, c) if sink.is_const(x)]
        if consts or len({abs(a), abs(b), abs(c)}) < 3:
            s = sink.xor(sink.xor(a, b), c)
            carry = sink.or_(sink.and_(a, b), sink.and_(c, sink.or_(a, b)))
            return s, carry
        s, carry = sink.var(), sink.var()
        sink.clauses.extend(
            (
                [-a, -b, -c, s],
                [-a, -b, c, -s],
                [-a, b, -c, -s],
                [-a, b, c, s],
                [a, -b, -c, -s],
                [a, -b, c, s],
                [a, b, -c, s],
                [a, b, c, -s],
                [-a, -b, carry],
                [-a, -c, carry],
                [-b, -c, carry],
                [a, b, -carry],
                [a, c, -carry],
                [b, c, -carry],
            )
        )
        return s, carry

    def add(self, a: Count, b: Count) -> Count:
        sink = self.sink
        width = (a.size + b.size).bit_length()
        bits, carry = [], sink.false
        for i in range(width):
            x = a.bits[i] if i < len(a.bits) else sink.false
            y = b.bits[i] if i < len(b.bits) else sink.false
            s, carry = self._full_adder(x, y, carry)
            bits.append(s)
        return Count(a.lits + b.lits, tuple(bits))

    def _reify(self, count: Count, bounds: list[int]) -> list[int]:
        sink = self.sink
        outputs = []
        for b in bounds:
            ge = sink.true  # X[i..0] >= B[i..0], from the least significant bit up
            for i, x in enumerate(count.bits):
                ge = sink.and_(x, ge) if (b >> i) & 1 else sink.or_(x, ge)
            outputs.append(ge)
        return outputs


class TotalizerEncoding(CardinalityEncoding):
    """python-sat's ``ITotalizer`` over ``L`` and over ``~L`` (both directions, all bounds shared)."""

    name = "totalizer"

    def _totalizer(self, lits: list[int], ubound: int) -> list[int]:
        pool = self.sink.pool
        tot = ITotalizer(lits=lits, ubound=ubound, top_id=pool.top)
        try:
            self.sink.clauses.extend(tot.cnf.clauses)
            pool.top = max(pool.top, tot.top_id)
            return list(tot.rhs)
        finally:
            tot.delete()

    def _reify(self, count: Count, bounds: list[int]) -> list[int]:
        n = count.size
        lits = self._distinct(count.lits)
        up = self._totalizer(lits, bounds[-1])  # C >= k  ->  up[k-1]
        down = self._totalizer([-l for l in lits], n - bounds[0] + 1)  # n - C >= k  ->  down[k-1]
        outputs = [up[b - 1] for b in bounds]
        for o, b in zip(outputs, bounds):
            self.sink.clause([-o, -down[n - b]])  # o -> n - C <= n - b
        self._ordered(outputs)
        return outputs

    def _require_leq(self, count: Count, bound: int) -> None:
        up = self._totalizer(self._distinct(count.lits), bound + 1)
        self.sink.clause([-up[bound]])


class PysatCardEncoding(CardinalityEncoding):
    """python-sat ``CardEnc`` encodings, one per bound and direction, reified by clause relaxation."""

    def __init__(self, sink: ClauseSink, name: str) -> None:
        super().__init__(sink)
        self.name = name
        self.enc = PYSAT_ENCODINGS[name]

    def _atleast(self, lits: list[int], bound: int, relax: int | None) -> None:
        cnf = CardEnc.atleast(lits, bound=bound, vpool=self.sink.pool, encoding=self.enc)
        self._emit(cnf.clauses, relax)

    def _atmost(self, lits: list[int], bound: int, relax: int | None) -> None:
        cnf = CardEnc.atmost(lits, bound=bound, vpool=self.sink.pool, encoding=self.enc)
        self._emit(cnf.clauses, relax)

    def _emit(self, clauses: list[list[int]], relax: int | None) -> None:
        if relax is None:
            self.sink.clauses.extend(clauses)
        else:
            self.sink.clauses.extend(c + [relax] for c in clauses)

    def _reify(self, count: Count, bounds: list[int]) -> list[int]:
        lits = self._distinct(count.lits)
        outputs = []
        for b in bounds:
            o = self.sink.var()
            self._atleast(lits, b, relax=-o)  # o -> C >= b
            self._atmost(lits, b - 1, relax=o)  # ~o -> C <= b - 1
            outputs.append(o)
        self._ordered(outputs)
        return outputs

    def _require_geq(self, count: Count, bound: int, guard: int | None) -> None:
        self._atleast(self._distinct(count.lits), bound, relax=None if guard is None else -guard)

    def _require_leq(self, count: Count, bound: int) -> None:
        self._atmost(self._distinct(count.lits), bound, relax=None)


def make_encoding(name: str, sink: ClauseSink) -> CardinalityEncoding:
    """The encoding called ``name`` (one of :data:`ENCODINGS`) writing into ``sink``."""
    if name == "native":
        if not sink.native:
            raise ValueError("the native encoding needs a native (CNFPlus) sink")
        return NativeEncoding(sink)
    if name == "adder":
        return AdderEncoding(sink)
    if name == "totalizer":
        return TotalizerEncoding(sink)
    if name in PYSAT_ENCODINGS:
        return PysatCardEncoding(sink, name)
    raise ValueError(f"unknown cardinality encoding {name!r}; choose one of {', '.join(ENCODINGS)}")
