/* A request boundary that leaves no frame of pyward's in the program's tracebacks.
 *
 * Under `pyward run --heal` a web server calls pyward's middleware, which calls
 * the application.  An exception the heal engine does not answer for goes on to
 * the server, as it would under python, and the server logs its traceback (and
 * Sentry groups it by its frames).  Python code cannot keep its own frame out of
 * a traceback that passes through it; C can: `Boundary(serve)` is a callable,
 * bound as a method like a function, that calls `serve` and, when an exception
 * escapes, drops the leading traceback entries that are pyward's (a frame whose
 * module is `pyward` or below it).  The server then sees the traceback python
 * would have given it: its own frames, then the application's.  A traceback that
 * is pyward's all through (an error of pyward's own) is kept whole. */
#include "pyward.h"

#include <stddef.h>
#include <string.h>
#include <structmember.h>

typedef struct {
    PyObject_HEAD
    PyObject *serve;
    vectorcallfunc vectorcall;
} Boundary;

static PyObject *module_name;  /* "__name__", interned */

/* Whether the traceback entry `tb` is a frame of a pyward module. */
static int
own_entry(PyObject *tb)
{
    PyFrameObject *frame = ((PyTracebackObject *)tb)->tb_frame;
    if (frame == NULL) {
        return 0;
    }
    PyObject *globals = PyFrame_GetGlobals(frame);
    if (globals == NULL) {
        PyErr_Clear();
        return 0;
    }
    int own = 0;
    PyObject *name = PyDict_Check(globals) ? PyDict_GetItemWithError(globals, module_name) : NULL;
    Py_ssize_t len;
    const char *text = name != NULL && PyUnicode_Check(name) ? PyUnicode_AsUTF8AndSize(name, &len) : NULL;
    if (text != NULL) {
        own = (len == 6 && memcmp(text, "pyward", 6) == 0) || (len > 7 && memcmp(text, "pyward.", 7) == 0);
    }
    PyErr_Clear();
    Py_DECREF(globals);
    return own;
}

/* The exception being raised, its leading pyward entries dropped. */
static void
unwind_own(void)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    PyObject *start = tb;
    while (start != NULL && PyTraceBack_Check(start) && own_entry(start)) {
        start = (PyObject *)((PyTracebackObject *)start)->tb_next;
    }
    if (start != NULL && start != tb) {
        Py_INCREF(start);
        Py_SETREF(tb, start);
        if (value != NULL) {
            PyException_SetTraceback(value, tb);
        }
    }
    PyErr_Restore(type, value, tb);
}

static PyObject *
boundary_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    PyObject *result = PyObject_Vectorcall(((Boundary *)self)->serve, args, nargsf, kwnames);
    if (result == NULL) {
        unwind_own();
    }
    return result;
}

static PyObject *
boundary_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *serve;
    if ((kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0) || !PyArg_UnpackTuple(args, "Boundary", 1, 1, &serve)) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_TypeError, "Boundary(serve): one callable");
        }
        return NULL;
    }
    if (!PyCallable_Check(serve)) {
        PyErr_SetString(PyExc_TypeError, "Boundary(serve): serve must be callable");
        return NULL;
    }
    Boundary *self = (Boundary *)type->tp_alloc(type, 0);
    if (self != NULL) {
        self->serve = Py_NewRef(serve);
        self->vectorcall = boundary_vectorcall;
    }
    return (PyObject *)self;
}

static PyObject *
boundary_get(PyObject *self, PyObject *obj, PyObject *type)
{
    if (obj == NULL || obj == Py_None) {
        return Py_NewRef(self);
    }
    return PyMethod_New(self, obj);
}

static int
boundary_traverse(Boundary *self, visitproc visit, void *arg)
{
    Py_VISIT(self->serve);
    return 0;
}

static int
boundary_clear(Boundary *self)
{
    Py_CLEAR(self->serve);
    return 0;
}

static void
boundary_dealloc(Boundary *self)
{
    PyObject_GC_UnTrack(self);
    boundary_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
boundary_repr(Boundary *self)
{
    return PyUnicode_FromFormat("<pyward boundary of %R>", self->serve);
}

static PyMemberDef boundary_members[] = {
    {"__wrapped__", T_OBJECT, offsetof(Boundary, serve), READONLY, "the callable it calls"},
    {NULL},
};

static PyTypeObject BoundaryType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pyward._native._pyward.Boundary",
    .tp_doc = "Boundary(serve): calls serve; an exception escaping it leaves without pyward's leading frames",
    .tp_basicsize = sizeof(Boundary),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_METHOD_DESCRIPTOR,
    .tp_vectorcall_offset = offsetof(Boundary, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_descr_get = boundary_get,
    .tp_new = boundary_new,
    .tp_traverse = (traverseproc)boundary_traverse,
    .tp_clear = (inquiry)boundary_clear,
    .tp_dealloc = (destructor)boundary_dealloc,
    .tp_repr = (reprfunc)boundary_repr,
    .tp_members = boundary_members,
};

int
pw_boundary_exec(PyObject *module)
{
    if (module_name == NULL && (module_name = PyUnicode_InternFromString("__name__")) == NULL) {
        return -1;
    }
    return PyModule_AddType(module, &BoundaryType);
}
