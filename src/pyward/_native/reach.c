/* What keeps pyward's own objects out of the program's reach.
 *
 * `top(fn, *args)`: `pyward run` calls the program from its own Python frames
 * (the runner's, the session's, the command line's).  Left linked, they are
 * the program's `sys._getframe().f_back`, its tracebacks' `tb_frame.f_back`
 * and `inspect.stack()`: a way from the program to the session, the journal
 * and the engines, and a stack python would not show.  The chain of frames
 * is interpreter state that only the C API sets: `top` unlinks this thread's
 * frames for the call and links them back after it.
 *
 * `sealed(fn)`: a callable the program may call (a notice it may trigger)
 * without reaching what `fn` is bound to: the object has no attributes, and,
 * not tracked by the GC, no referents either. */
#include "pyward.h"

#include <stddef.h>

#if PY_VERSION_HEX >= 0x030D0000
#define PW_CURRENT_FRAME(tstate) ((tstate)->current_frame)
#else
#define PW_CURRENT_FRAME(tstate) ((tstate)->cframe->current_frame)
#endif

static PyObject *
top(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError, "top(fn, *args) needs a callable");
        return NULL;
    }
    PyThreadState *tstate = PyThreadState_Get();
    struct _PyInterpreterFrame *below = PW_CURRENT_FRAME(tstate);
    PW_CURRENT_FRAME(tstate) = NULL;
    PyObject *result = PyObject_Vectorcall(args[0], args + 1, (size_t)(nargs - 1), NULL);
    PW_CURRENT_FRAME(tstate) = below;
    return result;
}

typedef struct {
    PyObject_HEAD
    PyObject *fn;
    vectorcallfunc vectorcall;
} Sealed;

static PyObject *
sealed_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    return PyObject_Vectorcall(((Sealed *)self)->fn, args, nargsf, kwnames);
}

static void
sealed_dealloc(PyObject *self)
{
    Py_XDECREF(((Sealed *)self)->fn);
    Py_TYPE(self)->tp_free(self);
}

static PyObject *
sealed_repr(PyObject *self)
{
    return PyUnicode_FromString("<pyward sealed callable>");
}

static PyTypeObject SealedType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pyward._native._pyward.Sealed",
    .tp_basicsize = sizeof(Sealed),
    .tp_dealloc = sealed_dealloc,
    .tp_repr = sealed_repr,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(Sealed, vectorcall),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,  /* no Py_TPFLAGS_HAVE_GC, no BASETYPE */
    .tp_doc = "A callable whose target the program cannot reach (sealed(fn)).",
};

static PyObject *
sealed(PyObject *self, PyObject *fn)
{
    if (!PyCallable_Check(fn)) {
        PyErr_SetString(PyExc_TypeError, "sealed(fn) needs a callable");
        return NULL;
    }
    Sealed *obj = PyObject_New(Sealed, &SealedType);
    if (obj == NULL) {
        return NULL;
    }
    obj->fn = Py_NewRef(fn);
    obj->vectorcall = sealed_vectorcall;
    return (PyObject *)obj;
}

int
pw_reach_exec(PyObject *module)
{
    return PyType_Ready(&SealedType);
}

PyMethodDef pw_reach_methods[] = {
    {"top", (PyCFunction)(void (*)(void))top, METH_FASTCALL,
     "top(fn, *args): call fn(*args) with no Python frame below it (f_back None at its bottom), as python "
     "runs a program; the caller's frames are linked back when it returns"},
    {"sealed", sealed, METH_O,
     "sealed(fn): a callable that calls fn, with no attribute or referent leading to it"},
    {NULL, NULL, 0, NULL},
};
