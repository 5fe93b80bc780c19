/*
 * xsnn ball-enumeration inner loops (CPython extension, no numpy headers): the C twins of the numpy
 * reference in solvers/ballscan.py, built by setup.py as xsnn.solvers._ballscan and loaded like
 * the forward kernel (optional, unless XSNN_REQUIRE_C_KERNEL=1). They compute the same integers
 * as the reference; the tests compare them.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_held.h"

/* ------------------------------------------------------------------ ball scan (ball enumeration)
 *
 * make_ball_scan(L, R, U, M, move_ptr, move_unit, move_delta, unit_col, unit_at, gains, gain_pos, gain_neg, need)
 *     -> scan (a capsule holding the arrays, checked once)
 * ball_children(scan, parent_cur, parent_scores, parent_idx, moves, scores_out_or_None) -> int
 * ball_leaves(scan, parent_cur, parent_scores, lo, hi, move_ids) -> int
 * ball_bounds(scan, cur, scores, rows, rise, fall, out) -> None
 *
 * The C twin of solvers/ballscan.py's numpy reference (read its docstring for the maths;
 * the tests compare the two). A node of the distance ball is the integer input cur[j] of L
 * neurons (int32) and the rival scores[r] = base[r] + sum_u gains[u, r] [cur[unit_col[u]] >=
 * unit_at[u]] of R rivals over U units (int32). A move m changes cur by move_delta[e] at the
 * units move_unit[e], e in move_ptr[m]..move_ptr[m + 1] (int64 (M + 1), int32, int32).
 *
 * ball_children: child n = parent parent_idx[n] (int64 (N)) changed by move moves[n] (int64 (N));
 *   its scores are the parent's, with gains[u] added (removed) for each touched unit whose
 *   indicator turns on (off). Returns the first child with scores[r] >= need[r] for some r, or
 *   -1. With scores_out (int32 (N, R)) every child's scores are written and all children are
 *   visited; without, it stops at the first such child.
 * ball_leaves: the children of parent n are its changes by moves move_ids[lo[n]], ...,
 *   move_ids[hi[n] - 1] (lo, hi int64 (N), move_ids int64), numbered parent by parent; returns
 *   the number of the first child that reaches, or -1 (scores as in ball_children, not stored).
 * ball_bounds: out[n] (uint8 (N)) = some r has
 *   scores[n, r] + sum_{u: c < a <= c + up} gain_pos[u, r] - sum_{u: c - down < a <= c} gain_neg[u, r]
 *   >= need[r], with c = cur[n, unit_col[u]], a = unit_at[u], up = rise[rows[n], unit_col[u]],
 *   down = fall[rows[n], unit_col[u]] (rise, fall int32 (P, L); rows int64 (N)).
 */
enum { B_MOVE_PTR, B_MOVE_UNIT, B_MOVE_DELTA, B_UNIT_COL, B_UNIT_AT, B_GAINS, B_GAIN_POS, B_GAIN_NEG, B_NEED, B_N };

typedef struct {
    Held h;
    int L, R, U;
    int64_t M;
    int32_t *tmp;
} BallScan;

static void free_ball_scan(BallScan *b) {
    release_held(&b->h);
    free(b->tmp);
    free(b);
}

static void ball_capsule_destructor(PyObject *capsule) {
    BallScan *b = PyCapsule_GetPointer(capsule, "xsnn.ball_scan");
    if (b) free_ball_scan(b);
}

static PyObject *py_make_ball_scan(PyObject *self, PyObject *args) {
    static const char *who = "make_ball_scan";
    PyObject *obj[B_N];
    long long M;
    BallScan *b = calloc(1, sizeof(BallScan));
    (void)self;
    if (!b) return PyErr_NoMemory();
    if (!PyArg_ParseTuple(args, "iiiLOOOOOOOOO", &b->L, &b->R, &b->U, &M, &obj[0], &obj[1], &obj[2], &obj[3],
                          &obj[4], &obj[5], &obj[6], &obj[7], &obj[8]))
        goto fail;
    b->M = M;
    int L = b->L, R = b->R, U = b->U;
    if (L < 0 || R < 0 || U < 0 || M < 0) { PyErr_Format(PyExc_ValueError, "%s: negative dimension", who); goto fail; }
    if (hold(&b->h, obj[B_MOVE_PTR], 0, ((Py_ssize_t)M + 1) * 8, who, "move_ptr") < 0) goto fail;
    const int64_t *ptr = b->h.buf[B_MOVE_PTR].buf;
    int64_t nnz = ptr[M];
    if (ptr[0] != 0 || nnz < 0) { PyErr_Format(PyExc_ValueError, "%s: move_ptr must start at 0", who); goto fail; }
    for (int64_t m = 0; m < M; m++)
        if (ptr[m + 1] < ptr[m]) { PyErr_Format(PyExc_ValueError, "%s: move_ptr decreases", who); goto fail; }
    if (hold(&b->h, obj[B_MOVE_UNIT], 0, (Py_ssize_t)nnz * 4, who, "move_unit") < 0 ||
        hold(&b->h, obj[B_MOVE_DELTA], 0, (Py_ssize_t)nnz * 4, who, "move_delta") < 0 ||
        hold(&b->h, obj[B_UNIT_COL], 0, (Py_ssize_t)U * 4, who, "unit_col") < 0 ||
        hold(&b->h, obj[B_UNIT_AT], 0, (Py_ssize_t)U * 4, who, "unit_at") < 0 ||
        hold(&b->h, obj[B_GAINS], 0, (Py_ssize_t)U * R * 4, who, "gains") < 0 ||
        hold(&b->h, obj[B_GAIN_POS], 0, (Py_ssize_t)U * R * 4, who, "gain_pos") < 0 ||
        hold(&b->h, obj[B_GAIN_NEG], 0, (Py_ssize_t)U * R * 4, who, "gain_neg") < 0 ||
        hold(&b->h, obj[B_NEED], 0, (Py_ssize_t)R * 4, who, "need") < 0)
        goto fail;
    const int32_t *unit = b->h.buf[B_MOVE_UNIT].buf, *col = b->h.buf[B_UNIT_COL].buf;
    for (int64_t e = 0; e < nnz; e++)
        if (unit[e] < 0 || unit[e] >= U) { PyErr_Format(PyExc_ValueError, "%s: move_unit out of range", who); goto fail; }
    for (int u = 0; u < U; u++)
        if (col[u] < 0 || col[u] >= L) { PyErr_Format(PyExc_ValueError, "%s: unit_col out of range", who); goto fail; }
    b->tmp = malloc(sizeof(int32_t) * (size_t)(R + 1));
    if (!b->tmp) { PyErr_NoMemory(); goto fail; }
    PyObject *capsule = PyCapsule_New(b, "xsnn.ball_scan", ball_capsule_destructor);
    if (capsule) return capsule;
fail:
    free_ball_scan(b);
    return NULL;
}

static int reaches(const int32_t *s, const int32_t *need, int R) {
    for (int r = 0; r < R; r++)
        if (s[r] >= need[r]) return 1;
    return 0;
}

static int64_t ball_children_impl(const BallScan *b, int64_t N, const int32_t *pcur, const int32_t *pscore,
                                  const int64_t *pidx, const int64_t *moves, int32_t *out) {
    const int L = b->L, R = b->R;
    const int64_t *ptr = b->h.buf[B_MOVE_PTR].buf;
    const int32_t *unit = b->h.buf[B_MOVE_UNIT].buf, *delta = b->h.buf[B_MOVE_DELTA].buf;
    const int32_t *col = b->h.buf[B_UNIT_COL].buf, *at = b->h.buf[B_UNIT_AT].buf;
    const int32_t *gains = b->h.buf[B_GAINS].buf, *need = b->h.buf[B_NEED].buf;
    int64_t first = -1;
    for (int64_t n = 0; n < N; n++) {
        const int32_t *cur = pcur + pidx[n] * L;
        int32_t *s = out ? out + n * R : b->tmp;
        memcpy(s, pscore + pidx[n] * R, sizeof(int32_t) * (size_t)R);
        const int64_t m = moves[n];
        for (int64_t e = ptr[m]; e < ptr[m + 1]; e++) {
            const int u = unit[e];
            const int32_t c = cur[col[u]];
            const int was = c >= at[u], now = c + delta[e] >= at[u];
            if (was == now) continue;
            const int32_t *g = gains + (int64_t)u * R;
            if (now) for (int r = 0; r < R; r++) s[r] += g[r];
            else     for (int r = 0; r < R; r++) s[r] -= g[r];
        }
        if (first < 0 && reaches(s, need, R)) {
            first = n;
            if (!out) return first;
        }
    }
    return first;
}

static PyObject *py_ball_children(PyObject *self, PyObject *args) {
    static const char *who = "ball_children";
    PyObject *capsule, *obj[5];
    Held h = {0};
    PyObject *result = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOOO", &capsule, &obj[0], &obj[1], &obj[2], &obj[3], &obj[4])) return NULL;
    BallScan *b = PyCapsule_GetPointer(capsule, "xsnn.ball_scan");
    if (!b) return NULL;
    if (hold(&h, obj[0], 0, -1, who, "parent_cur") < 0) goto done;
    Py_ssize_t row_bytes = (Py_ssize_t)b->L * 4;
    Py_ssize_t n_parents = row_bytes ? h.buf[0].len / row_bytes : 0;
    if (row_bytes && h.buf[0].len % row_bytes) { PyErr_Format(PyExc_ValueError, "%s: parent_cur is not (N, L)", who); goto done; }
    if (hold(&h, obj[1], 0, n_parents * b->R * 4, who, "parent_scores") < 0 || hold(&h, obj[2], 0, -1, who, "parent_idx") < 0)
        goto done;
    Py_ssize_t N = h.buf[2].len / 8;
    if (h.buf[2].len % 8 || hold(&h, obj[3], 0, N * 8, who, "moves") < 0) {
        if (!PyErr_Occurred()) PyErr_Format(PyExc_ValueError, "%s: parent_idx is not int64", who);
        goto done;
    }
    int32_t *out = NULL;
    if (obj[4] != Py_None) {
        if (hold(&h, obj[4], 1, N * b->R * 4, who, "scores_out") < 0) goto done;
        out = h.buf[4].buf;
    }
    const int64_t *pidx = h.buf[2].buf, *moves = h.buf[3].buf;
    for (Py_ssize_t n = 0; n < N; n++)
        if (pidx[n] < 0 || pidx[n] >= n_parents || moves[n] < 0 || moves[n] >= b->M) {
            PyErr_Format(PyExc_ValueError, "%s: parent_idx or moves out of range", who);
            goto done;
        }
    int64_t found;
    Py_BEGIN_ALLOW_THREADS
    found = ball_children_impl(b, N, h.buf[0].buf, h.buf[1].buf, pidx, moves, out);
    Py_END_ALLOW_THREADS
    result = PyLong_FromLongLong((long long)found);
done:
    release_held(&h);
    return result;
}

static int64_t ball_leaves_impl(const BallScan *b, int64_t N, const int32_t *pcur, const int32_t *pscore,
                                const int64_t *lo, const int64_t *hi, const int64_t *move_ids) {
    const int L = b->L, R = b->R;
    const int64_t *ptr = b->h.buf[B_MOVE_PTR].buf;
    const int32_t *unit = b->h.buf[B_MOVE_UNIT].buf, *delta = b->h.buf[B_MOVE_DELTA].buf;
    const int32_t *col = b->h.buf[B_UNIT_COL].buf, *at = b->h.buf[B_UNIT_AT].buf;
    const int32_t *gains = b->h.buf[B_GAINS].buf, *need = b->h.buf[B_NEED].buf;
    int32_t *s = b->tmp;
    int64_t child = 0;
    for (int64_t n = 0; n < N; n++) {
        const int32_t *cur = pcur + n * L, *ps = pscore + n * R;
        for (int64_t i = lo[n]; i < hi[n]; i++, child++) {
            const int64_t m = move_ids[i];
            int changed = 0;
            for (int64_t e = ptr[m]; e < ptr[m + 1]; e++) {
                const int u = unit[e];
                const int32_t c = cur[col[u]];
                const int was = c >= at[u], now = c + delta[e] >= at[u];
                if (was == now) continue;
                if (!changed) { memcpy(s, ps, sizeof(int32_t) * (size_t)R); changed = 1; }
                const int32_t *g = gains + (int64_t)u * R;
                if (now) for (int r = 0; r < R; r++) s[r] += g[r];
                else     for (int r = 0; r < R; r++) s[r] -= g[r];
            }
            if (reaches(changed ? s : ps, need, R)) return child;
        }
    }
    return -1;
}

static PyObject *py_ball_leaves(PyObject *self, PyObject *args) {
    static const char *who = "ball_leaves";
    PyObject *capsule, *obj[5];
    Held h = {0};
    PyObject *result = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOOO", &capsule, &obj[0], &obj[1], &obj[2], &obj[3], &obj[4])) return NULL;
    BallScan *b = PyCapsule_GetPointer(capsule, "xsnn.ball_scan");
    if (!b) return NULL;
    if (hold(&h, obj[2], 0, -1, who, "lo") < 0) goto done;
    Py_ssize_t N = h.buf[0].len / 8;
    if (h.buf[0].len % 8) { PyErr_Format(PyExc_ValueError, "%s: lo is not int64", who); goto done; }
    if (hold(&h, obj[3], 0, N * 8, who, "hi") < 0 || hold(&h, obj[0], 0, N * b->L * 4, who, "parent_cur") < 0 ||
        hold(&h, obj[1], 0, N * b->R * 4, who, "parent_scores") < 0 || hold(&h, obj[4], 0, -1, who, "move_ids") < 0)
        goto done;
    Py_ssize_t n_ids = h.buf[4].len / 8;
    const int64_t *lo = h.buf[0].buf, *hi = h.buf[1].buf, *ids = h.buf[4].buf;
    if (h.buf[4].len % 8) { PyErr_Format(PyExc_ValueError, "%s: move_ids is not int64", who); goto done; }
    for (Py_ssize_t i = 0; i < n_ids; i++)
        if (ids[i] < 0 || ids[i] >= b->M) { PyErr_Format(PyExc_ValueError, "%s: move_ids out of range", who); goto done; }
    for (Py_ssize_t n = 0; n < N; n++)
        if (lo[n] < 0 || hi[n] < 0 || hi[n] > n_ids) {
            PyErr_Format(PyExc_ValueError, "%s: lo/hi out of range", who);
            goto done;
        }
    int64_t found;
    Py_BEGIN_ALLOW_THREADS
    found = ball_leaves_impl(b, N, h.buf[2].buf, h.buf[3].buf, lo, hi, ids);
    Py_END_ALLOW_THREADS
    result = PyLong_FromLongLong((long long)found);
done:
    release_held(&h);
    return result;
}

static void ball_bounds_impl(const BallScan *b, int64_t N, const int32_t *cur, const int32_t *scores,
                             const int64_t *rows, const int32_t *rise, const int32_t *fall, uint8_t *out) {
    const int L = b->L, R = b->R, U = b->U;
    const int32_t *col = b->h.buf[B_UNIT_COL].buf, *at = b->h.buf[B_UNIT_AT].buf;
    const int32_t *gp = b->h.buf[B_GAIN_POS].buf, *gn = b->h.buf[B_GAIN_NEG].buf, *need = b->h.buf[B_NEED].buf;
    int32_t *s = b->tmp;
    for (int64_t n = 0; n < N; n++) {
        const int32_t *c = cur + n * L, *up = rise + rows[n] * L, *down = fall + rows[n] * L;
        memcpy(s, scores + n * R, sizeof(int32_t) * (size_t)R);
        for (int u = 0; u < U; u++) {
            const int j = col[u];
            const int32_t v = c[j], a = at[u];
            if (v < a) {
                if (v + up[j] >= a) for (int r = 0; r < R; r++) s[r] += gp[(int64_t)u * R + r];
            } else if (v - down[j] < a) {
                for (int r = 0; r < R; r++) s[r] -= gn[(int64_t)u * R + r];
            }
        }
        out[n] = (uint8_t)reaches(s, need, R);
    }
}

static PyObject *py_ball_bounds(PyObject *self, PyObject *args) {
    static const char *who = "ball_bounds";
    PyObject *capsule, *obj[6];
    Held h = {0};
    PyObject *result = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOOOO", &capsule, &obj[0], &obj[1], &obj[2], &obj[3], &obj[4], &obj[5])) return NULL;
    BallScan *b = PyCapsule_GetPointer(capsule, "xsnn.ball_scan");
    if (!b) return NULL;
    if (hold(&h, obj[2], 0, -1, who, "rows") < 0) goto done;
    Py_ssize_t N = h.buf[0].len / 8;
    if (h.buf[0].len % 8) { PyErr_Format(PyExc_ValueError, "%s: rows is not int64", who); goto done; }
    if (hold(&h, obj[0], 0, N * b->L * 4, who, "cur") < 0 || hold(&h, obj[1], 0, N * b->R * 4, who, "scores") < 0 ||
        hold(&h, obj[3], 0, -1, who, "rise") < 0)
        goto done;
    Py_ssize_t row_bytes = (Py_ssize_t)b->L * 4;
    Py_ssize_t P = row_bytes ? h.buf[3].len / row_bytes : 0;
    if ((row_bytes && h.buf[3].len % row_bytes) || hold(&h, obj[4], 0, h.buf[3].len, who, "fall") < 0 ||
        hold(&h, obj[5], 1, N, who, "out") < 0) {
        if (!PyErr_Occurred()) PyErr_Format(PyExc_ValueError, "%s: rise is not (P, L)", who);
        goto done;
    }
    const int64_t *rows = h.buf[0].buf;
    for (Py_ssize_t n = 0; n < N; n++)
        if (rows[n] < 0 || rows[n] >= P) { PyErr_Format(PyExc_ValueError, "%s: rows out of range", who); goto done; }
    Py_BEGIN_ALLOW_THREADS
    ball_bounds_impl(b, N, h.buf[1].buf, h.buf[2].buf, rows, h.buf[3].buf, h.buf[4].buf, h.buf[5].buf);
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    release_held(&h);
    return result;
}


static PyMethodDef methods[] = {
    {"make_ball_scan", py_make_ball_scan, METH_VARARGS,
     "make_ball_scan(L, R, U, M, move_ptr, move_unit, move_delta, unit_col, unit_at, gains, gain_pos, gain_neg, "
     "need) -> scan (see the comment above ball_children)."},
    {"ball_children", py_ball_children, METH_VARARGS,
     "ball_children(scan, parent_cur, parent_scores, parent_idx, moves, scores_out_or_None) -> first child that "
     "reaches need, or -1."},
    {"ball_leaves", py_ball_leaves, METH_VARARGS,
     "ball_leaves(scan, parent_cur, parent_scores, lo, hi, move_ids) -> number of the first child that reaches, "
     "or -1."},
    {"ball_bounds", py_ball_bounds, METH_VARARGS,
     "ball_bounds(scan, cur, scores, rows, rise, fall, out): per node, whether its interval bound may reach need."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_ballscan", "xsnn ball-enumeration inner loops.", -1,
                                    methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__ballscan(void) { return PyModule_Create(&module); }
