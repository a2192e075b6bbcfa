/* Nothing of the program runs while pyward's own Python does.
 *
 * The C parts call Python of pyward's (the sandbox's decision and its
 * journaling, a guard's path conversion, the tamper engine's reports) from
 * inside the program's operations.  The interpreter may run program code in
 * there: a finalizer of cyclic garbage when an allocation starts the
 * collector, a signal handler at a bytecode boundary.  That code would be
 * handed pyward's frames (a handler's `frame` argument, any `f_back`), and
 * through them the decision's private namespace.  So while pyward's Python
 * runs (the *shield*): the collector is off, and the program's signal
 * handlers, which pyward installs behind a `Deferred` wrapper (`_signal`'s
 * `signal` and `getsignal` are replaced: the program sets and reads its own
 * handlers as ever), only note the signal; it is raised again when the
 * shield drops and the handler runs at the program's next bytecode, in the
 * program's frame, as python would run it.
 *
 * The program's tracers, profilers and debuggers (sys.settrace, sys.setprofile,
 * sys.monitoring: pdb, cProfile, trace, coverage) see none of it either: the
 * thread is marked as tracing while it runs, as CPython marks it around the
 * program's own audit hooks, so no trace, profile or monitoring event fires in
 * pyward's frames: pdb's `step` does not stop in the decision, a profile lists
 * only the program's functions. */
#include "pyward.h"

#include <signal.h>
#include <stddef.h>

static _Thread_local int shield_depth;  /* >0 while pyward's Python runs on this thread */
static int shielded_threads;            /* threads inside the shield (under the GIL) */
static int collector_was_enabled;
static int deferred[NSIG];              /* signals noted inside the shield */
static int any_deferred;

void
pw_shield_enter(void)
{
    if (shield_depth++ != 0) {
        return;
    }
    PyThreadState_EnterTracing(PyThreadState_Get());
    if (shielded_threads++ == 0) {
        collector_was_enabled = PyGC_Disable();
    }
}

void
pw_shield_leave(void)
{
    if (--shield_depth != 0) {
        return;
    }
    PyThreadState_LeaveTracing(PyThreadState_Get());
    if (--shielded_threads == 0 && collector_was_enabled) {
        PyGC_Enable();
    }
    if (any_deferred) {
        any_deferred = 0;
        for (int signum = 1; signum < NSIG; signum++) {
            if (deferred[signum]) {
                deferred[signum] = 0;
                PyErr_SetInterruptEx(signum);  /* tripped again: handled at the next bytecode */
            }
        }
    }
}

/* --- the program's signal handlers, behind a wrapper that defers them inside the shield --- */

typedef struct {
    PyObject_HEAD
    PyObject *handler;
    vectorcallfunc vectorcall;
} Deferred;

static PyObject *
deferred_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (shield_depth > 0 && nargs >= 1 && PyLong_Check(args[0])) {
        long signum = PyLong_AsLong(args[0]);
        if (signum > 0 && signum < NSIG) {
            deferred[signum] = 1;
            any_deferred = 1;
            Py_RETURN_NONE;
        }
        PyErr_Clear();
    }
    return PyObject_Vectorcall(((Deferred *)self)->handler, args, nargsf, kwnames);
}

static void
deferred_dealloc(PyObject *self)
{
    Py_XDECREF(((Deferred *)self)->handler);
    Py_TYPE(self)->tp_free(self);
}

static PyTypeObject DeferredType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pyward._native._pyward.Deferred",
    .tp_basicsize = sizeof(Deferred),
    .tp_dealloc = deferred_dealloc,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(Deferred, vectorcall),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,  /* not tracked: no way back to the handler */
};

static PyObject *original_signal;     /* _signal.signal and getsignal as the interpreter made them */
static PyObject *original_getsignal;

static PyObject *
unwrap(PyObject *handler)
{
    if (handler != NULL && Py_IS_TYPE(handler, &DeferredType)) {
        PyObject *inner = Py_NewRef(((Deferred *)handler)->handler);
        Py_DECREF(handler);
        return inner;
    }
    return handler;
}

static PyObject *
shield_signal(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {  /* python's own error */
        return PyObject_Vectorcall(original_signal, args, (size_t)nargs, NULL);
    }
    PyObject *handler = args[1];
    PyObject *wrapped = NULL;
    if (PyCallable_Check(handler) && !Py_IS_TYPE(handler, &DeferredType)) {
        Deferred *d = PyObject_New(Deferred, &DeferredType);
        if (d == NULL) {
            return NULL;
        }
        d->handler = Py_NewRef(handler);
        d->vectorcall = deferred_vectorcall;
        wrapped = (PyObject *)d;
    }
    PyObject *call[2] = {args[0], wrapped != NULL ? wrapped : handler};
    PyObject *previous = PyObject_Vectorcall(original_signal, call, 2, NULL);
    Py_XDECREF(wrapped);
    return unwrap(previous);
}

static PyObject *
shield_getsignal(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    return unwrap(PyObject_Vectorcall(original_getsignal, args, (size_t)nargs, NULL));
}

static PyMethodDef signal_def = {"signal", (PyCFunction)(void (*)(void))shield_signal, METH_FASTCALL, NULL};
static PyMethodDef getsignal_def = {"getsignal", (PyCFunction)(void (*)(void))shield_getsignal, METH_FASTCALL, NULL};

/* shield_signals(module): `module` (a `_signal`) sets and reads handlers through the wrapper from now on. */
static PyObject *
shield_signals(PyObject *self, PyObject *module)
{
    PyObject *set = PyObject_GetAttrString(module, "signal");
    PyObject *get = set != NULL ? PyObject_GetAttrString(module, "getsignal") : NULL;
    if (get == NULL) {
        Py_XDECREF(set);
        return NULL;
    }
    if (PyCFunction_Check(set) && PyCFunction_GET_FUNCTION(set) == (PyCFunction)(void (*)(void))shield_signal) {
        Py_DECREF(set);
        Py_DECREF(get);
        Py_RETURN_FALSE;  /* already */
    }
    if (original_signal == NULL) {
        original_signal = set;  /* kept for good: C holds them, nothing in Python leads to them */
        original_getsignal = get;
        PyObject_GC_UnTrack(set);
        PyObject_GC_UnTrack(get);
    }
    else {
        Py_DECREF(set);  /* a second copy of the module: the first originals work for it */
        Py_DECREF(get);
    }
    PyObject *name = PyModule_GetNameObject(module);
    PyObject *new_set = name != NULL ? PyCFunction_NewEx(&signal_def, module, name) : NULL;
    PyObject *new_get = new_set != NULL ? PyCFunction_NewEx(&getsignal_def, module, name) : NULL;
    Py_XDECREF(name);
    int rc = new_get != NULL ? PyObject_SetAttrString(module, "signal", new_set) : -1;
    if (rc == 0) {
        rc = PyObject_SetAttrString(module, "getsignal", new_get);
    }
    Py_XDECREF(new_set);
    Py_XDECREF(new_get);
    if (rc < 0) {
        return NULL;
    }
    Py_RETURN_TRUE;
}

int
pw_shield_exec(PyObject *module)
{
    return PyType_Ready(&DeferredType);
}

PyMethodDef pw_shield_methods[] = {
    {"shield_signals", shield_signals, METH_O,
     "shield_signals(_signal): the program's signal handlers are set behind a wrapper that defers them while "
     "pyward's Python runs (signal and getsignal replaced; the program sees its own handlers)"},
    {NULL, NULL, 0, NULL},
};
