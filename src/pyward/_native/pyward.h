/* Shared declarations for the _pyward extension: each engine's C part lives
 * in its own file and registers its functions from module.c. */
#ifndef PYWARD_H
#define PYWARD_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* audit.c: the process-wide audit hook and its event-name filter. */
extern PyMethodDef pw_audit_methods[];
int pw_audit_exec(PyObject *module);

#endif
