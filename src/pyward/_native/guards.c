/* guards.c: the usual case of a heal guard's helper, in C.
 *
 * A healed function calls its guards' helpers (heal/guards.py) every time it
 * runs, and almost every call finds nothing wrong: a key that is there, an
 * object that is not None, a divisor that is not zero.  FastGuard(test, slow)
 * answers that case without a Python frame and hands every other call, as it
 * came, to `slow`, the Python helper, which decides it again from scratch.
 * So the C part only ever says "nothing wrong, the slot unchanged", and only
 * when the answer is certain; it never fires a guard. */
#include "pyward.h"
#include <structmember.h>

enum {
    PRESENT,      /* (container, key): an exact dict holding key; an exact list/tuple and an index in range */
    NOT_NONE,     /* (obj): not None */
    NONZERO,      /* (left, right): right an exact int or float, not zero */
    NOT_STR_LEFT, /* (left, right): left not an exact str */
    TESTS
};

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    int test;
    PyObject *slow;
} FastGuard;

/* 1: the slot goes on unchanged; 0: the Python helper decides. */
static int
fine(int test, PyObject *const *args, Py_ssize_t nargs)
{
    switch (test) {
    case PRESENT:
        if (nargs != 2) {
            return 0;
        }
        if (PyDict_CheckExact(args[0])) {
            int found = PyDict_Contains(args[0], args[1]);
            if (found < 0) {  /* an unhashable key, a failing __eq__: the helper's own business */
                PyErr_Clear();
            }
            return found == 1;
        }
        if ((PyList_CheckExact(args[0]) || PyTuple_CheckExact(args[0])) && PyLong_CheckExact(args[1])) {
            int overflow;
            long index = PyLong_AsLongAndOverflow(args[1], &overflow);
            Py_ssize_t size = Py_SIZE(args[0]);
            return !overflow && !(index == -1 && PyErr_Occurred()) && -size <= index && index < size;
        }
        return 0;
    case NOT_NONE:
        return nargs == 1 && args[0] != Py_None;
    case NONZERO:
        if (nargs != 2) {
            return 0;
        }
        if (PyLong_CheckExact(args[1])) {
            return PyObject_IsTrue(args[1]) == 1;
        }
        return PyFloat_CheckExact(args[1]) && PyFloat_AS_DOUBLE(args[1]) != 0.0;
    case NOT_STR_LEFT:
        return nargs == 2 && !PyUnicode_CheckExact(args[0]);
    }
    return 0;
}

static PyObject *
fast_call(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    FastGuard *self = (FastGuard *)op;
    if (kwnames == NULL && fine(self->test, args, PyVectorcall_NARGS(nargsf))) {
        return Py_NewRef(args[0]);
    }
    return PyObject_Vectorcall(self->slow, args, nargsf, kwnames);
}

static PyObject *
fast_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    int test;
    PyObject *slow;
    static char *names[] = {"test", "slow", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "iO:FastGuard", names, &test, &slow)) {
        return NULL;
    }
    if (test < 0 || test >= TESTS || !PyCallable_Check(slow)) {
        PyErr_Format(PyExc_ValueError, "FastGuard(test, slow): test in 0..%d, slow callable", TESTS - 1);
        return NULL;
    }
    FastGuard *self = (FastGuard *)type->tp_alloc(type, 0);
    if (self != NULL) {
        self->vectorcall = fast_call;
        self->test = test;
        self->slow = Py_NewRef(slow);
    }
    return (PyObject *)self;
}

static int
fast_traverse(FastGuard *self, visitproc visit, void *arg)
{
    Py_VISIT(self->slow);
    return 0;
}

static int
fast_clear(FastGuard *self)
{
    Py_CLEAR(self->slow);
    return 0;
}

static void
fast_dealloc(FastGuard *self)
{
    PyObject_GC_UnTrack(self);
    fast_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
fast_repr(PyObject *op)
{
    return PyUnicode_FromFormat("<pyward guard %R>", ((FastGuard *)op)->slow);
}

static PyMemberDef fast_members[] = {
    {"slow", T_OBJECT, offsetof(FastGuard, slow), READONLY, "the Python helper, which decides every other call"},
    {NULL},
};

static PyTypeObject FastGuardType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pyward._native._pyward.FastGuard",
    .tp_basicsize = sizeof(FastGuard),
    .tp_dealloc = (destructor)fast_dealloc,
    .tp_vectorcall_offset = offsetof(FastGuard, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_repr = fast_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "FastGuard(test, slow): a heal guard's helper whose usual case is answered in C (heal/guards.py).",
    .tp_traverse = (traverseproc)fast_traverse,
    .tp_clear = (inquiry)fast_clear,
    .tp_members = fast_members,
    .tp_new = fast_new,
};

int
pw_guards_exec(PyObject *module)
{
    if (PyType_Ready(&FastGuardType) < 0 || PyModule_AddObjectRef(module, "FastGuard", (PyObject *)&FastGuardType) < 0) {
        return -1;
    }
    static const char *names[] = {"GUARD_PRESENT", "GUARD_NOT_NONE", "GUARD_NONZERO", "GUARD_NOT_STR_LEFT"};
    for (int i = 0; i < TESTS; i++) {
        if (PyModule_AddIntConstant(module, names[i], i) < 0) {
            return -1;
        }
    }
    return 0;
}
