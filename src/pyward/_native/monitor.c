/* The heal engine's sys.monitoring callbacks (3.12+): which exception escaped
 * the program's own code.
 *
 * PY_UNWIND fires for every Python frame an exception leaves, and
 * EXCEPTION_HANDLED for every handler that catches one, anywhere in the
 * process: these callbacks are in C so that frames of library code cost a
 * lookup.  Each code object is classified once (program or library, by
 * `classify(filename)`) and the answer is kept in the code object's extra
 * slot.  A program frame unwinding into a caller that is not program code
 * (a library, a framework, C with no Python caller) is an escape:
 * `on_escape(exc)` is called.  While escapes are outstanding (`monitor_arm`),
 * a program frame catching an exception calls `on_caught(exc)`. */
#include "pyward.h"

#if PY_VERSION_HEX >= 0x030C0000

#define PW_LIBRARY ((void *)1)
#define PW_PROGRAM ((void *)2)

static Py_ssize_t extra_index = -1;
static PyObject *classify;   /* classify(filename) -> bool: the program's own code */
static PyObject *on_escape;  /* on_escape(exc) */
static PyObject *on_caught;  /* on_caught(exc) */
static Py_ssize_t armed;     /* escapes not settled yet: only then is on_caught called */

/* 1: the program's own code, 0: not (or no classifier, or an error, cleared). */
static int
program_code(PyObject *code)
{
    void *tag = NULL;
    if (classify == NULL || !PyCode_Check(code) || PyUnstable_Code_GetExtra(code, extra_index, &tag) < 0) {
        PyErr_Clear();
        return 0;
    }
    if (tag != NULL) {
        return tag == PW_PROGRAM;
    }
    PyObject *answer = PyObject_CallOneArg(classify, ((PyCodeObject *)code)->co_filename);
    int program = answer != NULL ? PyObject_IsTrue(answer) : 0;
    Py_XDECREF(answer);
    if (program < 0 || PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    if (PyUnstable_Code_SetExtra(code, extra_index, program ? PW_PROGRAM : PW_LIBRARY) < 0) {
        PyErr_Clear();
    }
    return program;
}

/* Call `callback(exc)`; a failure of pyward's callback never reaches the program. */
static void
notify(PyObject *callback, PyObject *exc)
{
    PyObject *raised = PyErr_GetRaisedException();
    PyObject *result = PyObject_CallOneArg(callback, exc);
    if (result == NULL) {
        PyErr_WriteUnraisable(callback);
    }
    Py_XDECREF(result);
    PyErr_SetRaisedException(raised);
}

/* PY_UNWIND(code, instruction_offset, exception) */
static PyObject *
monitor_unwind(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || on_escape == NULL || !program_code(args[0])) {
        Py_RETURN_NONE;
    }
    /* the unwinding frame is still the current one: its caller decides */
    PyFrameObject *frame = PyEval_GetFrame();
    if (frame != NULL) {
        PyCodeObject *code = PyFrame_GetCode(frame);
        int same = (PyObject *)code == args[0];
        Py_DECREF(code);
        if (!same) {
            Py_RETURN_NONE;
        }
        PyFrameObject *back = PyFrame_GetBack(frame);
        if (back != NULL) {
            PyCodeObject *caller = PyFrame_GetCode(back);
            int inside = program_code((PyObject *)caller);
            Py_DECREF(caller);
            Py_DECREF(back);
            if (inside) {
                Py_RETURN_NONE;
            }
        }
    }
    notify(on_escape, args[2]);
    Py_RETURN_NONE;
}

/* EXCEPTION_HANDLED(code, instruction_offset, exception) */
static PyObject *
monitor_handled(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (armed > 0 && nargs == 3 && on_caught != NULL && program_code(args[0])) {
        notify(on_caught, args[2]);
    }
    Py_RETURN_NONE;
}

static PyObject *
monitor_setup(PyObject *module, PyObject *args)
{
    PyObject *classifier, *escape, *caught;
    if (!PyArg_ParseTuple(args, "OOO:monitor_setup", &classifier, &escape, &caught)) {
        return NULL;
    }
    if (extra_index < 0) {
        extra_index = PyUnstable_Eval_RequestCodeExtraIndex(NULL);
        if (extra_index < 0) {
            PyErr_SetString(PyExc_RuntimeError, "no code object extra slot left");
            return NULL;
        }
    }
    if (classifier == Py_None) {  /* stop: the callbacks do nothing from now on */
        Py_CLEAR(classify);
        Py_CLEAR(on_escape);
        Py_CLEAR(on_caught);
        armed = 0;
        Py_RETURN_NONE;
    }
    Py_XSETREF(classify, Py_NewRef(classifier));
    Py_XSETREF(on_escape, Py_NewRef(escape));
    Py_XSETREF(on_caught, Py_NewRef(caught));
    Py_RETURN_NONE;
}

static PyObject *
monitor_arm(PyObject *module, PyObject *arg)
{
    Py_ssize_t delta = PyLong_AsSsize_t(arg);
    if (delta == -1 && PyErr_Occurred()) {
        return NULL;
    }
    armed += delta;
    if (armed < 0) {
        armed = 0;
    }
    return PyLong_FromSsize_t(armed);
}

PyMethodDef pw_monitor_methods[] = {
    {"monitor_unwind", (PyCFunction)(void (*)(void))monitor_unwind, METH_FASTCALL,
     "sys.monitoring PY_UNWIND callback: on_escape(exc) when a program frame unwinds into a caller\n"
     "that is not program code."},
    {"monitor_handled", (PyCFunction)(void (*)(void))monitor_handled, METH_FASTCALL,
     "sys.monitoring EXCEPTION_HANDLED callback: on_caught(exc) when a program frame catches an\n"
     "exception while escapes are outstanding."},
    {"monitor_setup", monitor_setup, METH_VARARGS,
     "monitor_setup(classify, on_escape, on_caught): classify(filename) -> bool tells the program's\n"
     "own code (asked once per code object).  monitor_setup(None, None, None): callbacks do nothing."},
    {"monitor_arm", monitor_arm, METH_O,
     "monitor_arm(delta) -> int: add delta to the outstanding escapes (on_caught is called only while\n"
     "there are some); returns the new count."},
    {NULL, NULL, 0, NULL},
};

#else

PyMethodDef pw_monitor_methods[] = {
    {NULL, NULL, 0, NULL},
};

#endif
