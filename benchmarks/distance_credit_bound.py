"""How tight a 'credit' bound would be for distance-restricted questions (a design measurement).

For target ``c`` and rival ``r`` the score difference is ``D = B + sum_t e_t [I_j(t) >= a_t]``
(:func:`xsnn.encoders.rivals.rival_terms`). From the instance ``v``, a term *helps* the rival when
``e > 0`` and ``a > I_j(v)`` (it needs ``gap = a - I_j(v)`` raising changes) or ``e < 0`` and
``a <= I_j(v)`` (``gap = I_j(v) - a + 1`` lowering changes). Crediting ``|e| / gap`` to every
pixel that moves ``I_j`` the helpful way, ``k`` changed pixels raise ``D`` by at most the sum of
the ``k`` largest credits: the rival is ruled out when that sum is below ``need - D(v)``. This
prints, per sample image and rival, ``need - D(v)`` and the ``k``-largest credit sums with every
pixel free (the loosest case) so that the bound can be judged before it is built.

    python benchmarks/distance_credit_bound.py --model mnist10-sparse192 --distances 5 10 --images 3
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnist10-sparse192")
    parser.add_argument("--distances", nargs="+", type=int, default=[5, 10])
    parser.add_argument("--images", type=int, default=3)
    args = parser.parse_args(argv)

    import numpy as np

    import xsnn
    from xsnn import data
    from xsnn.encoders.rivals import neuron_ladders, rival_terms
    from xsnn.model import forward

    images, _ = data.load_sample()
    model = xsnn.load_model(args.model)
    w = model.weights[0].astype(np.int64)
    ladders = neuron_ladders(model, np.minimum(w, 0).sum(axis=1), np.maximum(w, 0).sum(axis=1))
    ruled_out, rivals = {k: 0 for k in args.distances}, 0
    for index in range(args.images):
        x = model.encode(images[index])[0]
        v = x[0].astype(np.int64)
        target = int(forward(model, x).prediction[0])
        drive = w @ v
        move = w * (1 - 2 * v)[None, :]  # change of I_j when pixel i flips
        for rival in range(model.n_classes):
            if rival == target:
                continue
            need = 1 if rival > target else 0
            base, terms = rival_terms(model, ladders, target, rival)
            d_at_v = base + sum(e for j, a, e in terms if drive[j] >= a)
            credit = np.zeros(model.n_inputs)
            for j, a, e in terms:
                if e > 0 and a > drive[j]:
                    credit += (move[j] > 0) * e / (a - drive[j])
                elif e < 0 and a <= drive[j]:
                    credit += (move[j] < 0) * -e / (drive[j] - a + 1)
            largest = np.sort(credit)[::-1]
            sums = {k: float(largest[:k].sum()) for k in args.distances}
            rivals += 1
            for k, total in sums.items():
                ruled_out[k] += total < need - d_at_v
            print(
                f"image {index} target {target} rival {rival}: need - D(v) = {need - d_at_v}, "
                + ", ".join(f"k={k}: {total:.1f}" for k, total in sums.items())
            )
    print(
        "rivals ruled out with every pixel free: " + ", ".join(f"k={k}: {n} of {rivals}" for k, n in ruled_out.items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
