/* Shared declarations for the _pyward extension: each engine's C part lives
 * in its own file and registers its functions from module.c. */
#ifndef PYWARD_H
#define PYWARD_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* 3.13's name for what 3.11 and 3.12 call _PyObject_LookupAttr (same contract). */
#if PY_VERSION_HEX < 0x030D0000
#define PyObject_GetOptionalAttr _PyObject_LookupAttr
#endif

/* audit.c: the process-wide audit hook and its event-name filter. */
extern PyMethodDef pw_audit_methods[];
int pw_audit_exec(PyObject *module);
int pw_register_hook(void);
int pw_add_name(PyObject *pyname, int subscriber);
int pw_add_names(PyObject *names, int subscriber);
int pw_name_has(const char *event, int subscriber);
void pw_clear_subscriber(int subscriber);
#define PW_SANDBOX_SUBSCRIBER 31
#define PW_HOOK_SUBSCRIBER 30

/* sandbox.c: the sandbox's decision slot, user hook slot and native helpers. */
extern PyMethodDef pw_sandbox_methods[];
extern int pw_user_hook_active;  /* an install_hook() callback is set */

/* tamper.c: dict and function watchers (3.12+). */
extern PyMethodDef pw_tamper_methods[];

/* monitor.c: the heal engine's sys.monitoring callbacks (3.12+; empty before). */
extern PyMethodDef pw_monitor_methods[];
extern PyMethodDef pw_net_methods[];  /* net.c: getaddrinfo without an audit event */
extern PyMethodDef pw_landlock_methods[];  /* landlock.c: the kernel wall */
/* reach.c: the program runs with no frame of pyward's below it; sealed callables. */
extern PyMethodDef pw_reach_methods[];
extern PyMethodDef pw_script_methods[];
int pw_reach_exec(PyObject *module);

/* shield.c: while pyward's Python runs, no collection and the program's signal handlers deferred. */
extern PyMethodDef pw_shield_methods[];
int pw_shield_exec(PyObject *module);
void pw_shield_enter(void);
void pw_shield_leave(void);

/* boundary.c: a request boundary whose escaping exceptions carry no pyward frame (the type `Boundary`). */
int pw_boundary_exec(PyObject *module);

/* guards.c: the usual case of a heal guard's helper (the type `FastGuard`). */
int pw_guards_exec(PyObject *module);

#endif
