/*
 * xsnn rival oracle helpers (CPython extension, no numpy headers): the C twins of the numpy
 * references in solvers/rivalstate.py, built by setup.py as xsnn.solvers._rivalstate and
 * loaded like the forward kernel (optional, unless XSNN_REQUIRE_C_KERNEL=1).
 *
 * repair_search: the witness repair of the rival SAT oracle (WitnessRepair.search_reference);
 * rival_gate: its per-question bookkeeping of bounds and kept cores (RivalGate.advance_reference).
 * Both compute the same integers as their references; the tests compare them.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ witness repair (rival SAT oracle)
 *
 * make_repair_search(n0, n, width, R, breaks, deltas, base, gap, need, col_ptr, col_neuron,
 *                    col_sign) -> search (a capsule holding the network's arrays, checked once)
 * repair_search(search, k, x, differs, inputs, kept_fixed, fixed, inputs_out) -> b, or -1
 *
 * The C twin of solvers/rivalstate.py's WitnessRepair.search_reference (read its docstring for
 * the maths; the tests compare the two on random networks, witnesses and fixed sets). For each
 * kept witness b (newest first: x, differs = x != v, uint8 (k, n); inputs = W x, int32 (k, n0);
 * the fixed pixels of its question, kept_fixed uint8 (k, n)) and the fixed pixels `fixed`
 * (uint8 (n)) of the new question, the candidate flips pixel i iff
 *     fixed[i] ? differs[b, i] : kept_fixed[b, i] && !differs[b, i],
 * its inputs are I = inputs[b] + sum over flipped i of (1 - 2 x[b, i]) W[:, i] (W by columns:
 * col_ptr int64 (n + 1), col_neuron int32, col_sign int8), its spike counts
 *     count_j = base_j + sum_m deltas[m, j] [I_j >= breaks[m, j]]
 * (int32 (width, n0); absent breaks are INT32_MAX), and it wins iff some rival r reaches
 * sum_j gap[j, r] count_j >= need[r] (gap int32 (n0, R), need int32 (R)). Returns the first
 * winning b with its inputs in inputs_out (int32 (n0)), or -1.
 */

#include "_held.h"

enum { R_BREAKS, R_DELTAS, R_BASE, R_GAP, R_NEED, R_COL_PTR, R_COL_NEURON, R_COL_SIGN, R_N };

typedef struct {
    Held h;
    int n0, n, width, R;
    int64_t *score;
} RepairSearch;

static void repair_capsule_destructor(PyObject *capsule) {
    RepairSearch *rs = PyCapsule_GetPointer(capsule, "xsnn.repair_search");
    if (!rs) return;
    release_held(&rs->h);
    free(rs->score);
    free(rs);
}

static int64_t repair_search_impl(int k, int n0, int n, int width, int R, const uint8_t *x, const uint8_t *differs,
                                  const int32_t *inputs, const uint8_t *kept_fixed, const uint8_t *fixed,
                                  const int32_t *breaks, const int32_t *deltas, const int32_t *base,
                                  const int32_t *gap, const int32_t *need, const int64_t *col_ptr,
                                  const int32_t *col_neuron, const int8_t *col_sign, int32_t *I, int64_t *score) {
    for (int b = 0; b < k; b++) {
        const uint8_t *xb = x + (int64_t)b * n, *db = differs + (int64_t)b * n, *fb = kept_fixed + (int64_t)b * n;
        memcpy(I, inputs + (int64_t)b * n0, sizeof(int32_t) * (size_t)n0);
        for (int i = 0; i < n; i++) {
            int flips = fixed[i] ? db[i] : (fb[i] && !db[i]);
            if (!flips) continue;
            int32_t s = xb[i] ? -1 : 1;
            for (int64_t e = col_ptr[i]; e < col_ptr[i + 1]; e++) I[col_neuron[e]] += s * col_sign[e];
        }
        for (int r = 0; r < R; r++) score[r] = 0;
        for (int j = 0; j < n0; j++) {
            int32_t c = base[j];
            for (int m = 0; m < width; m++)
                if (I[j] >= breaks[(int64_t)m * n0 + j]) c += deltas[(int64_t)m * n0 + j];
            if (c)
                for (int r = 0; r < R; r++) score[r] += (int64_t)c * gap[(int64_t)j * R + r];
        }
        for (int r = 0; r < R; r++)
            if (score[r] >= need[r]) return b;
    }
    return -1;
}

static PyObject *py_make_repair_search(PyObject *self, PyObject *args) {
    static const char *who = "make_repair_search";
    PyObject *obj[R_N];
    RepairSearch *rs = calloc(1, sizeof(RepairSearch));
    (void)self;
    if (!rs) return PyErr_NoMemory();
    if (!PyArg_ParseTuple(args, "iiiiOOOOOOOO", &rs->n0, &rs->n, &rs->width, &rs->R, &obj[0], &obj[1], &obj[2],
                          &obj[3], &obj[4], &obj[5], &obj[6], &obj[7]))
        goto fail;
    int n0 = rs->n0, n = rs->n, width = rs->width, R = rs->R;
    if (n0 < 0 || n < 0 || width < 0 || R < 0) { PyErr_Format(PyExc_ValueError, "%s: negative dimension", who); goto fail; }
    if (hold(&rs->h, obj[R_BREAKS], 0, (Py_ssize_t)width * n0 * 4, who, "breaks") < 0 ||
        hold(&rs->h, obj[R_DELTAS], 0, (Py_ssize_t)width * n0 * 4, who, "deltas") < 0 ||
        hold(&rs->h, obj[R_BASE], 0, (Py_ssize_t)n0 * 4, who, "base") < 0 ||
        hold(&rs->h, obj[R_GAP], 0, (Py_ssize_t)n0 * R * 4, who, "gap") < 0 ||
        hold(&rs->h, obj[R_NEED], 0, (Py_ssize_t)R * 4, who, "need") < 0 ||
        hold(&rs->h, obj[R_COL_PTR], 0, ((Py_ssize_t)n + 1) * 8, who, "col_ptr") < 0)
        goto fail;
    const int64_t *col_ptr = rs->h.buf[R_COL_PTR].buf;
    int64_t nnz = col_ptr[n];
    if (col_ptr[0] != 0 || nnz < 0) { PyErr_Format(PyExc_ValueError, "%s: col_ptr must start at 0", who); goto fail; }
    if (hold(&rs->h, obj[R_COL_NEURON], 0, (Py_ssize_t)nnz * 4, who, "col_neuron") < 0 ||
        hold(&rs->h, obj[R_COL_SIGN], 0, (Py_ssize_t)nnz, who, "col_sign") < 0)
        goto fail;
    for (int i = 0; i < n; i++)
        if (col_ptr[i + 1] < col_ptr[i]) { PyErr_Format(PyExc_ValueError, "%s: col_ptr decreases", who); goto fail; }
    const int32_t *col_neuron = rs->h.buf[R_COL_NEURON].buf;
    for (int64_t e = 0; e < nnz; e++)
        if (col_neuron[e] < 0 || col_neuron[e] >= n0) {
            PyErr_Format(PyExc_ValueError, "%s: col_neuron out of range", who);
            goto fail;
        }
    rs->score = malloc(sizeof(int64_t) * (size_t)(R + 1));
    if (!rs->score) { PyErr_NoMemory(); goto fail; }
    PyObject *capsule = PyCapsule_New(rs, "xsnn.repair_search", repair_capsule_destructor);
    if (capsule) return capsule;
fail:
    release_held(&rs->h);
    free(rs->score);
    free(rs);
    return NULL;
}

static PyObject *py_repair_search(PyObject *self, PyObject *args) {
    static const char *who = "repair_search";
    PyObject *capsule, *obj[6];
    int k;
    Held h = {0};
    PyObject *result = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "OiOOOOOO", &capsule, &k, &obj[0], &obj[1], &obj[2], &obj[3], &obj[4], &obj[5]))
        return NULL;
    RepairSearch *rs = PyCapsule_GetPointer(capsule, "xsnn.repair_search");
    if (!rs) return NULL;
    int n0 = rs->n0, n = rs->n;
    if (k < 0) { PyErr_Format(PyExc_ValueError, "%s: negative k", who); return NULL; }
    if (hold(&h, obj[0], 0, (Py_ssize_t)k * n, who, "x") < 0 || hold(&h, obj[1], 0, (Py_ssize_t)k * n, who, "differs") < 0 ||
        hold(&h, obj[2], 0, (Py_ssize_t)k * n0 * 4, who, "inputs") < 0 ||
        hold(&h, obj[3], 0, (Py_ssize_t)k * n, who, "kept_fixed") < 0 || hold(&h, obj[4], 0, n, who, "fixed") < 0 ||
        hold(&h, obj[5], 1, (Py_ssize_t)n0 * 4, who, "inputs_out") < 0)
        goto done;
    const Py_buffer *b = rs->h.buf;
    int64_t found;
    Py_BEGIN_ALLOW_THREADS
    found = repair_search_impl(k, n0, n, rs->width, rs->R, h.buf[0].buf, h.buf[1].buf, h.buf[2].buf, h.buf[3].buf,
                               h.buf[4].buf, b[R_BREAKS].buf, b[R_DELTAS].buf, b[R_BASE].buf, b[R_GAP].buf,
                               b[R_NEED].buf, b[R_COL_PTR].buf, b[R_COL_NEURON].buf, b[R_COL_SIGN].buf,
                               h.buf[5].buf, rs->score);
    Py_END_ALLOW_THREADS
    result = PyLong_FromLongLong((long long)found);
done:
    release_held(&h);
    return result;
}

/* ------------------------------------------------------------------ rival gate (rival SAT oracle)
 *
 * make_rival_gate(n_features, m, R, S, n_terms, fixed_mask, fixed_pixels, group_ptr, group_pixels,
 *                 columns, bounds, members, missing, term_row, term_a, term_e, term_rival,
 *                 slack_base, pruned_out, covered_out) -> gate (a capsule holding the arrays)
 * rival_gate(gate, changed) -> None
 *
 * The C twin of solvers/rivalstate.py's per-question bookkeeping in numpy (RivalGate.
 * advance_reference with RivalBounds.toggle/slack and RivalCores.toggle/covered; read their
 * docstrings for the maths; the tests compare the two on random networks and random sequences of
 * fixed sets). The gate keeps the arrays (buffers held until it is freed; the caller updates
 * them only in place). rival_gate: for each feature k in `changed` (an iterable of ints: the
 * features whose state flips), now fixed iff it was free (fixed_mask[k] == 0):
 *   fixed_mask[k] (uint8 (n_features)) and the pixels of group k (group_ptr int64
 *   (n_features + 1), group_pixels int64) in fixed_pixels (uint8) are set to the new state;
 *   bounds (float64 (m) = (lo, hi) of every neuron) += or -= columns[k] (float64
 *   (n_features, m)); missing (int64 (R, S): the free features of each kept core) -= or +=
 *   members[k] (uint8 (n_features, R, S)).
 * Then per rival r: slack_r = slack_base[r] + sum over terms t of rival r of term_e[t]
 * [bounds[term_row[t]] >= term_a[t]]; pruned_out[r] = slack_r < 0, covered_out[r] = some
 * missing[r, s] == 0 (uint8 (R) each).
 */
enum { G_FIXED_MASK, G_FIXED_PIXELS, G_GROUP_PTR, G_GROUP_PIXELS, G_COLUMNS, G_BOUNDS, G_MEMBERS, G_MISSING,
       G_TERM_ROW, G_TERM_A, G_TERM_E, G_TERM_RIVAL, G_SLACK_BASE, G_PRUNED, G_COVERED, G_N };

typedef struct {
    Held h;                   /* the arrays, in the order of the enum above */
    int n_features, m, R, S, n_terms;
    int64_t *slack;
} RivalGate;

static void free_gate(RivalGate *g) {
    release_held(&g->h);
    free(g->slack);
    free(g);
}

static void gate_capsule_destructor(PyObject *capsule) {
    RivalGate *g = PyCapsule_GetPointer(capsule, "xsnn.rival_gate");
    if (g) free_gate(g);
}

static PyObject *py_make_rival_gate(PyObject *self, PyObject *args) {
    static const int writable[G_N] = {1, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1, 1};
    static const char *names[G_N] = {"fixed_mask", "fixed_pixels", "group_ptr", "group_pixels", "columns", "bounds",
                                     "members", "missing", "term_row", "term_a", "term_e", "term_rival",
                                     "slack_base", "pruned_out", "covered_out"};
    PyObject *obj[G_N];
    RivalGate *g = calloc(1, sizeof(RivalGate));
    (void)self;
    if (!g) return PyErr_NoMemory();
    if (!PyArg_ParseTuple(args, "iiiiiOOOOOOOOOOOOOOO", &g->n_features, &g->m, &g->R, &g->S, &g->n_terms, &obj[0],
                          &obj[1], &obj[2], &obj[3], &obj[4], &obj[5], &obj[6], &obj[7], &obj[8], &obj[9], &obj[10],
                          &obj[11], &obj[12], &obj[13], &obj[14]))
        goto fail;
    int nf = g->n_features, m = g->m, R = g->R, S = g->S, nt = g->n_terms;
    if (nf < 0 || m < 0 || R < 0 || S < 0 || nt < 0) { PyErr_SetString(PyExc_ValueError, "make_rival_gate: negative dimension"); goto fail; }
    const Py_ssize_t expected[G_N] = {nf, -1, ((Py_ssize_t)nf + 1) * 8, -1, (Py_ssize_t)nf * m * 8, (Py_ssize_t)m * 8,
                                      (Py_ssize_t)nf * R * S, (Py_ssize_t)R * S * 8, (Py_ssize_t)nt * 8,
                                      (Py_ssize_t)nt * 8, (Py_ssize_t)nt * 8, (Py_ssize_t)nt * 8, (Py_ssize_t)R * 8, R, R};
    for (int i = 0; i < G_N; i++)
        if (hold(&g->h, obj[i], writable[i], expected[i], "make_rival_gate", names[i]) < 0) goto fail;
    const int64_t *group_ptr = g->h.buf[G_GROUP_PTR].buf, *group_pixels = g->h.buf[G_GROUP_PIXELS].buf;
    const int64_t *term_row = g->h.buf[G_TERM_ROW].buf, *term_rival = g->h.buf[G_TERM_RIVAL].buf;
    int64_t n_pixels = g->h.buf[G_FIXED_PIXELS].len, n_group_pixels = g->h.buf[G_GROUP_PIXELS].len / 8;
    const char *bad = NULL;
    if (g->h.buf[G_GROUP_PIXELS].len % 8 || group_ptr[0] != 0 || group_ptr[nf] != n_group_pixels) bad = "group_ptr";
    for (int k = 0; !bad && k < nf; k++)
        if (group_ptr[k + 1] < group_ptr[k]) bad = "group_ptr";
    for (int64_t e = 0; !bad && e < n_group_pixels; e++)
        if (group_pixels[e] < 0 || group_pixels[e] >= n_pixels) bad = "group_pixels";
    for (int t = 0; !bad && t < nt; t++)
        if (term_row[t] < 0 || term_row[t] >= m || term_rival[t] < 0 || term_rival[t] >= R) bad = "term arrays";
    if (bad) { PyErr_Format(PyExc_ValueError, "make_rival_gate: %s out of range", bad); goto fail; }
    g->slack = malloc(sizeof(int64_t) * (size_t)(R + 1));
    if (!g->slack) { PyErr_NoMemory(); goto fail; }
    PyObject *capsule = PyCapsule_New(g, "xsnn.rival_gate", gate_capsule_destructor);
    if (!capsule) goto fail;
    return capsule;
fail:
    free_gate(g);
    return NULL;
}

static PyObject *py_rival_gate(PyObject *self, PyObject *args) {
    PyObject *capsule, *changed, *iter, *item;
    (void)self;
    if (!PyArg_ParseTuple(args, "OO", &capsule, &changed)) return NULL;
    RivalGate *g = PyCapsule_GetPointer(capsule, "xsnn.rival_gate");
    if (!g) return NULL;
    int nf = g->n_features, m = g->m, R = g->R, S = g->S, nt = g->n_terms;
    uint8_t *fixed_mask = g->h.buf[G_FIXED_MASK].buf, *fixed_pixels = g->h.buf[G_FIXED_PIXELS].buf;
    const int64_t *group_ptr = g->h.buf[G_GROUP_PTR].buf, *group_pixels = g->h.buf[G_GROUP_PIXELS].buf;
    const double *columns = g->h.buf[G_COLUMNS].buf, *term_a = g->h.buf[G_TERM_A].buf;
    double *bounds = g->h.buf[G_BOUNDS].buf;
    const uint8_t *members = g->h.buf[G_MEMBERS].buf;
    int64_t *missing = g->h.buf[G_MISSING].buf, *slack = g->slack;
    const int64_t *term_row = g->h.buf[G_TERM_ROW].buf, *term_e = g->h.buf[G_TERM_E].buf,
                  *term_rival = g->h.buf[G_TERM_RIVAL].buf, *slack_base = g->h.buf[G_SLACK_BASE].buf;
    uint8_t *pruned = g->h.buf[G_PRUNED].buf, *covered = g->h.buf[G_COVERED].buf;
    iter = PyObject_GetIter(changed);
    if (!iter) return NULL;
    while ((item = PyIter_Next(iter))) {
        long long k = PyLong_AsLongLong(item);
        Py_DECREF(item);
        if (k == -1 && PyErr_Occurred()) { Py_DECREF(iter); return NULL; }
        if (k < 0 || k >= nf) {
            Py_DECREF(iter);
            PyErr_SetString(PyExc_ValueError, "rival_gate: changed feature out of range");
            return NULL;
        }
        int fix = !fixed_mask[k];
        fixed_mask[k] = (uint8_t)fix;
        for (int64_t e = group_ptr[k]; e < group_ptr[k + 1]; e++) fixed_pixels[group_pixels[e]] = (uint8_t)fix;
        const double *col = columns + k * (int64_t)m;
        if (fix) for (int i = 0; i < m; i++) bounds[i] += col[i];
        else     for (int i = 0; i < m; i++) bounds[i] -= col[i];
        const uint8_t *mem = members + k * (int64_t)R * S;
        if (fix) for (int i = 0; i < R * S; i++) missing[i] -= mem[i];
        else     for (int i = 0; i < R * S; i++) missing[i] += mem[i];
    }
    Py_DECREF(iter);
    if (PyErr_Occurred()) return NULL;
    for (int r = 0; r < R; r++) slack[r] = slack_base[r];
    for (int t = 0; t < nt; t++)
        if (bounds[term_row[t]] >= term_a[t]) slack[term_rival[t]] += term_e[t];
    for (int r = 0; r < R; r++) {
        pruned[r] = slack[r] < 0;
        covered[r] = 0;
        for (int j = 0; j < S; j++) if (missing[(int64_t)r * S + j] == 0) covered[r] = 1;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"make_repair_search", py_make_repair_search, METH_VARARGS,
     "make_repair_search(n0, n, width, R, breaks, deltas, base, gap, need, col_ptr, col_neuron, col_sign) -> search "
     "(see the comment above repair_search)."},
    {"repair_search", py_repair_search, METH_VARARGS,
     "repair_search(search, k, x, differs, inputs, kept_fixed, fixed, inputs_out) -> the first kept witness whose "
     "repair wins, or -1 (see the comment above it)."},
    {"make_rival_gate", py_make_rival_gate, METH_VARARGS,
     "make_rival_gate(n_features, m, R, S, n_terms, fixed_mask, fixed_pixels, group_ptr, group_pixels, columns, "
     "bounds, members, missing, term_row, term_a, term_e, term_rival, slack_base, pruned_out, covered_out) -> gate "
     "(see the comment above rival_gate)."},
    {"rival_gate", py_rival_gate, METH_VARARGS,
     "rival_gate(gate, changed): per-question bookkeeping of the rival SAT oracle (see the comment above it)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_rivalstate", "xsnn rival SAT oracle helpers.", -1,
                                    methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__rivalstate(void) { return PyModule_Create(&module); }
