/*
 * Buffer bookkeeping shared by the solvers' C extensions (_rivalstate.c, _ballscan.c): the
 * Python buffers a call or a capsule holds, acquired with a size check and released together.
 * Included by each extension's single source file (static functions: one copy per extension).
 */
#ifndef XSNN_HELD_H
#define XSNN_HELD_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* Buffers a capsule holds until it is freed. */
typedef struct {
    Py_buffer buf[16];
    int held;
} Held;

static void release_held(Held *h) {
    for (int i = 0; i < h->held; i++) PyBuffer_Release(&h->buf[i]);
    h->held = 0;
}

/* Acquire obj's buffer as the next held one (writable if asked) and check its size in bytes. */
static int hold(Held *h, PyObject *obj, int writable, Py_ssize_t bytes, const char *who, const char *name) {
    if (h->held >= (int)(sizeof h->buf / sizeof h->buf[0])) {
        PyErr_Format(PyExc_RuntimeError, "%s: too many buffers", who);
        return -1;
    }
    if (PyObject_GetBuffer(obj, &h->buf[h->held], writable ? PyBUF_WRITABLE : PyBUF_SIMPLE) < 0) return -1;
    h->held++;
    if (bytes >= 0 && h->buf[h->held - 1].len != bytes) {
        PyErr_Format(PyExc_ValueError, "%s: %s has %lld bytes, expected %lld", who, name,
                     (long long)h->buf[h->held - 1].len, (long long)bytes);
        return -1;
    }
    return 0;
}

#endif /* XSNN_HELD_H */
