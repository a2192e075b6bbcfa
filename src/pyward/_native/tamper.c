/* The tamper engine's native half: CPython's dict and function watchers
 * (3.12+) report a change to a sealed namespace or function at the moment it
 * is made, in the thread that makes it.
 *
 * A watcher callback may not modify the dict it watches and cannot make the
 * statement fail (an exception becomes "unraisable"), so it only reports: the
 * Python side journals the change (with the patcher's frame, which is the
 * caller's stack right now) and restores it later, from a pending call.
 */
#include "pyward.h"

#if PY_VERSION_HEX >= 0x030C0000
#define PW_HAVE_WATCHERS 1
#endif

static PyObject *report_fn;      /* report(kind, container, key, old, new) */
static PyObject *watched_funcs;  /* set of sealed function objects */
static PyObject *pending_fn;     /* called from a pending call: restores */
static _Thread_local int busy;   /* >0 while report_fn runs on this thread */
static int pending_scheduled;
static int schedule_after;       /* tamper_schedule() called during a report: schedule on the way out */
static int run_pending(void *unused);
static setattrofunc module_setattro_orig;  /* ModuleType's setattro before the lock (see below) */
static PyObject *locked_modules;  /* set of module objects */
static PyObject *lock_judge;      /* judge(module, name, value | MISSING) -> bool */
static PyObject *lock_missing;
static PyObject *lock_error;      /* pyward.TamperError */
static PyObject *lock_awaited;    /* names of modules pending seals wait for (a live set) */
static PyObject *modules_dict;    /* sys.modules, when watched */
static PyObject *modules_filter;  /* names whose sys.modules events are reported (NULL: all) */
static PyObject *watched_keys;    /* attribute names sealed in some watched namespace: any other key's
                                   * change (pytest swaps sys.stdout per test) stays in C */
static PyObject *trusted_codes;   /* tuple of the engine's own code objects: the only callers of the
                                   * functions that mute, stop or re-point the watchers (NULL: none yet) */
static PyObject *sealed;          /* dict (id(namespace), key) -> (namespace, key, value): every seal, as
                                   * the engine last accepted it; kept here, out of the program's reach */
static PyObject *class_locked;    /* set of modules whose __class__ may not change unseen (any version) */

/* 1 when the Python code calling this C function is the tamper engine's own
 * (code objects registered by tamper_install, before the program ran);
 * otherwise PermissionError and 0.  A program calling tamper_quiet or
 * tamper_stop directly is refused here. */
static int
caller_trusted(const char *what)
{
    if (trusted_codes == NULL) {
        return 1;  /* no engine installed: nothing to protect yet */
    }
    PyFrameObject *frame = PyEval_GetFrame();  /* borrowed */
    if (frame != NULL) {
        PyCodeObject *code = PyFrame_GetCode(frame);
        int found = 0;
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(trusted_codes); i++) {
            if (PyTuple_GET_ITEM(trusted_codes, i) == (PyObject *)code) {
                found = 1;
                break;
            }
        }
        Py_DECREF(code);
        if (found) {
            return 1;
        }
    }
    PyErr_Format(PyExc_PermissionError, "%s belongs to pyward's tamper engine; the program cannot call it", what);
    return 0;
}

/* Schedule the pending call now: only ever from C code that returns straight to
 * the change being made, so the call cannot run before the change lands (a
 * pending call scheduled from Python code could run at its next call). */
static void
schedule_now(void)
{
    if (!pending_scheduled && Py_AddPendingCall(run_pending, NULL) == 0) {
        pending_scheduled = 1;
    }
}

#ifdef PW_HAVE_WATCHERS
static int dict_watcher = -1;
static int func_watcher = -1;

static void
report(const char *kind, PyObject *container, PyObject *key, PyObject *old, PyObject *new_value)
{
    if (report_fn == NULL || busy) {
        return;
    }
    busy++;
    PyObject *exc = PyErr_GetRaisedException();  /* a watcher may fire while an exception is pending */
    pw_shield_enter();
    PyObject *res = PyObject_CallFunction(report_fn, "sOOOO", kind, container, key ? key : Py_None,
                                          old ? old : Py_None, new_value ? new_value : Py_None);
    pw_shield_leave();
    if (res == NULL) {
        PyErr_WriteUnraisable(report_fn);
    }
    Py_XDECREF(res);
    PyErr_SetRaisedException(exc);
    busy--;
    if (schedule_after && !busy) {
        schedule_after = 0;
        schedule_now();
    }
}

static int
on_dict(PyDict_WatchEvent event, PyObject *dict, PyObject *key, PyObject *new_value)
{
    if (dict == modules_dict && modules_filter != NULL && key != NULL) {
        /* three events per import: only the modules a pending seal waits for go to Python */
        int wanted = PySet_Contains(modules_filter, key);
        if (wanted <= 0) {
            if (wanted < 0) {
                PyErr_Clear();
            }
            return 0;
        }
    }
    else if (key != NULL && watched_keys != NULL && dict != modules_dict) {
        int sealed = PySet_Contains(watched_keys, key);
        if (sealed <= 0) {
            if (sealed < 0) {
                PyErr_Clear();
            }
            return 0;
        }
    }
    switch (event) {
    case PyDict_EVENT_ADDED:
        report("added", dict, key, NULL, new_value);
        break;
    case PyDict_EVENT_MODIFIED: {
        PyObject *old = PyDict_GetItemWithError(dict, key);  /* borrowed; still the old value */
        if (old == NULL && PyErr_Occurred()) {
            PyErr_Clear();
        }
        if (old != new_value) {
            report("modified", dict, key, old, new_value);
        }
        break;
    }
    case PyDict_EVENT_DELETED: {
        PyObject *old = PyDict_GetItemWithError(dict, key);
        if (old == NULL && PyErr_Occurred()) {
            PyErr_Clear();
        }
        report("deleted", dict, key, old, NULL);
        break;
    }
    case PyDict_EVENT_CLEARED:
    case PyDict_EVENT_CLONED:
        report("cleared", dict, NULL, NULL, NULL);
        break;
    default:  /* DEALLOCATED: the namespace is going away with its module */
        break;
    }
    return 0;
}

static int
on_func(PyFunction_WatchEvent event, PyFunctionObject *func, PyObject *new_value)
{
    if (event != PyFunction_EVENT_MODIFY_CODE && event != PyFunction_EVENT_MODIFY_DEFAULTS
        && event != PyFunction_EVENT_MODIFY_KWDEFAULTS) {
        return 0;  /* creation and destruction of every function: the cheap path */
    }
    if (watched_funcs == NULL || PySet_GET_SIZE(watched_funcs) == 0) {
        return 0;
    }
    int found = PySet_Contains(watched_funcs, (PyObject *)func);
    if (found <= 0) {
        if (found < 0) {
            PyErr_Clear();
        }
        return 0;
    }
    const char *kind = event == PyFunction_EVENT_MODIFY_CODE ? "__code__"
                       : event == PyFunction_EVENT_MODIFY_DEFAULTS ? "__defaults__" : "__kwdefaults__";
    PyObject *old = event == PyFunction_EVENT_MODIFY_CODE ? func->func_code
                    : event == PyFunction_EVENT_MODIFY_DEFAULTS ? func->func_defaults : func->func_kwdefaults;
    report(kind, (PyObject *)func, NULL, old, new_value);
    return 0;
}
#endif

static PyObject *
tamper_install(PyObject *module, PyObject *args)
{
    PyObject *fn, *pending, *codes;
    if (!PyArg_ParseTuple(args, "OOO!:tamper_install", &fn, &pending, &PyTuple_Type, &codes)) {
        return NULL;
    }
    if (!caller_trusted("tamper_install")) {
        return NULL;  /* once installed, only the engine's own code installs again (a new session) */
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(codes); i++) {
        if (!PyCode_Check(PyTuple_GET_ITEM(codes, i))) {
            PyErr_SetString(PyExc_TypeError, "tamper_install: codes must be code objects");
            return NULL;
        }
    }
    Py_XSETREF(trusted_codes, Py_NewRef(codes));
    if (sealed == NULL && (sealed = PyDict_New()) == NULL) {
        return NULL;
    }
    if (class_locked == NULL && (class_locked = PySet_New(NULL)) == NULL) {
        return NULL;
    }
    PyDict_Clear(sealed);  /* a new session seals afresh */
    PyObject_GC_UnTrack(sealed);  /* gc.get_objects() does not list it: only C reaches it */
#ifdef PW_HAVE_WATCHERS
    if (dict_watcher < 0 && (dict_watcher = PyDict_AddWatcher(on_dict)) < 0) {
        return NULL;
    }
    if (func_watcher < 0 && (func_watcher = PyFunction_AddWatcher(on_func)) < 0) {
        return NULL;
    }
    if (watched_funcs == NULL && (watched_funcs = PySet_New(NULL)) == NULL) {
        return NULL;
    }
    Py_XSETREF(report_fn, Py_NewRef(fn));
    Py_XSETREF(pending_fn, Py_NewRef(pending));
    Py_RETURN_TRUE;
#else
    Py_RETURN_FALSE;  /* no watchers before 3.12: the Python side checks instead */
#endif
}

static PyObject *
tamper_stop(PyObject *module, PyObject *unused)
{
    /* the run is over: module dicts are torn down at shutdown, nobody listens */
    if (!caller_trusted("tamper_stop")) {
        return NULL;
    }
    Py_CLEAR(report_fn);
    Py_CLEAR(pending_fn);
    Py_CLEAR(lock_judge);  /* locked modules accept every change from now on */
    if (watched_funcs != NULL && PySet_Clear(watched_funcs) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
tamper_watch(PyObject *module, PyObject *obj)
{
#ifdef PW_HAVE_WATCHERS
    if (PyDict_Check(obj)) {
        if (PyDict_Watch(dict_watcher, obj) < 0) {
            return NULL;
        }
        Py_RETURN_TRUE;
    }
    if (PyFunction_Check(obj) && watched_funcs != NULL) {
        if (PySet_Add(watched_funcs, obj) < 0) {
            return NULL;
        }
        Py_RETURN_TRUE;
    }
#endif
    Py_RETURN_FALSE;
}

static PyObject *
tamper_watch_key(PyObject *module, PyObject *key)
{
    /* a sealed attribute's name: only these keys of watched namespaces reach Python */
    if (watched_keys == NULL && (watched_keys = PySet_New(NULL)) == NULL) {
        return NULL;
    }
    if (PySet_Add(watched_keys, key) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
tamper_watch_modules(PyObject *module, PyObject *args)
{
    /* tamper_watch_modules(sys.modules, names | None): report sys.modules events
     * for these names only (None: every name) */
    PyObject *dict, *names;
    if (!PyArg_ParseTuple(args, "O!O:tamper_watch_modules", &PyDict_Type, &dict, &names)) {
        return NULL;
    }
    if (!caller_trusted("tamper_watch_modules")) {
        return NULL;
    }
    if (names != Py_None && !PySet_Check(names)) {
        PyErr_SetString(PyExc_TypeError, "tamper_watch_modules: names must be a set or None");
        return NULL;
    }
#ifdef PW_HAVE_WATCHERS
    if (PyDict_Watch(dict_watcher, dict) < 0) {
        return NULL;
    }
    Py_XSETREF(modules_dict, Py_NewRef(dict));
    Py_XSETREF(modules_filter, names == Py_None ? NULL : Py_NewRef(names));
    Py_RETURN_TRUE;
#else
    Py_RETURN_FALSE;
#endif
}

static PyObject *
tamper_unwatch(PyObject *module, PyObject *obj)
{
    if (!caller_trusted("tamper_unwatch")) {
        return NULL;
    }
#ifdef PW_HAVE_WATCHERS
    if (PyDict_Check(obj)) {
        if (PyDict_Unwatch(dict_watcher, obj) < 0) {
            return NULL;
        }
    }
    else if (PyFunction_Check(obj) && watched_funcs != NULL) {
        if (PySet_Discard(watched_funcs, obj) < 0) {
            return NULL;
        }
    }
#endif
    Py_RETURN_NONE;
}

static int
run_pending(void *unused)
{
    pending_scheduled = 0;
    if (pending_fn == NULL) {
        return 0;
    }
    busy++;
    pw_shield_enter();
    PyObject *res = PyObject_CallNoArgs(pending_fn);
    pw_shield_leave();
    busy--;
    schedule_after = 0;  /* a retry asked for from inside waits for the next report or check */
    if (res == NULL) {
        return -1;  /* e.g. TamperError under --fail-closed: raised in the main thread */
    }
    Py_DECREF(res);
    return 0;
}

static PyObject *
tamper_schedule(PyObject *module, PyObject *unused)
{
    if (busy) {
        schedule_after = 1;  /* inside a report: once it returns (see report()) */
    }
    else {
        schedule_now();
    }
    Py_RETURN_NONE;
}

static PyObject *
tamper_quiet(PyObject *module, PyObject *args)
{
    /* tamper_quiet(fn, *args): call fn with the watchers' reports muted on this
     * thread (pyward's own restores). */
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    if (!caller_trusted("tamper_quiet")) {
        return NULL;
    }
    if (n < 1) {
        PyErr_SetString(PyExc_TypeError, "tamper_quiet(fn, *args)");
        return NULL;
    }
    PyObject *rest = PyTuple_GetSlice(args, 1, n);
    if (rest == NULL) {
        return NULL;
    }
    busy++;
    PyObject *res = PyObject_Call(PyTuple_GET_ITEM(args, 0), rest, NULL);
    busy--;
    Py_DECREF(rest);
    return res;
}

/* Locked modules: `module.attr = x` and `del module.attr` on a sealed module ask
 * judge(module, name, value-or-MISSING) first.  Used where there are no watchers
 * (3.11) and under --fail-closed, where the statement itself must fail.
 *
 * The hook is ModuleType's own setattro slot, swapped once, so sealed modules stay
 * exact ModuleType instances: attribute *loads* keep the specialised
 * LOAD_ATTR_MODULE path (a module subclass would lose it on 3.11, a cost paid on
 * every `os.path` or `random.random`).  Stores to modules are never specialised,
 * so every `setattr` reaches the slot.  ModuleType's `__setattr__`/`__delattr__`
 * wrappers are pointed at the new slot too (added, on 3.13), so
 * `super().__setattr__` in module subclasses keeps working; `object.__setattr__(module, ...)`, which would jump
 * over the slot, is refused by CPython itself ("can't apply this __setattr__"). */

static int
locked_module_setattro(PyObject *self, PyObject *name, PyObject *value)
{
    if (lock_judge != NULL && !busy) {
        int found = locked_modules != NULL && PySet_GET_SIZE(locked_modules) > 0 ? PySet_Contains(locked_modules, self)
                                                                                  : 0;
        if (found < 0) {
            return -1;
        }
        if (!found && class_locked != NULL && PySet_GET_SIZE(class_locked) > 0 && PyUnicode_Check(name)
            && PyUnicode_CompareWithASCIIString(name, "__class__") == 0) {
            /* a sealed module's class swapped: its attribute lookups would no longer be its namespace's */
            found = PySet_Contains(class_locked, self);
            if (found < 0) {
                return -1;
            }
        }
        if (!found && locked_modules != NULL && lock_awaited != NULL && PySet_GET_SIZE(lock_awaited) > 0) {
            /* a module a pending seal waits for, changed before any check could seal it
             * (imported, then patched at once): the judge seals it first */
            PyObject *modname = PyModule_GetNameObject(self);
            if (modname == NULL) {
                PyErr_Clear();
            }
            else {
                found = PySet_Contains(lock_awaited, modname);
                Py_DECREF(modname);
                if (found < 0) {
                    return -1;
                }
            }
        }
        if (found) {
            pw_shield_enter();
            PyObject *res = PyObject_CallFunctionObjArgs(lock_judge, self, name, value ? value : lock_missing, NULL);
            pw_shield_leave();
            if (res == NULL) {
                return -1;
            }
            if (PyUnicode_Check(res)) {
                /* --fail-closed: raised here, in C, so the patching statement's
                 * traceback holds no frame of pyward */
                PyErr_SetObject(lock_error, res);
                Py_DECREF(res);
                return -1;
            }
            int ok = PyObject_IsTrue(res);
            Py_DECREF(res);
            if (ok <= 0) {
                return ok;  /* 0: refused (--restore), the module keeps its sealed value */
            }
        }
    }
    return module_setattro_orig(self, name, value);
}

/* Point ModuleType.<name> (the __setattr__ / __delattr__ slot wrapper) at the new
 * slot.  3.11 and 3.12 have module's own wrapper; on 3.13 ModuleType inherits
 * object's, so a wrapper of its own is added to the type's dict (PyType_GetDict is
 * the API for that, 3.12+). */
static int
repoint_wrapper(const char *name)
{
    /* through the mappingproxy: on 3.12+ a static type's tp_dict lives in the interpreter */
    PyObject *proxy = PyObject_GetAttrString((PyObject *)&PyModule_Type, "__dict__");
    if (proxy == NULL) {
        return -1;
    }
    PyObject *descr = PyMapping_GetItemString(proxy, name);
    Py_DECREF(proxy);
    if (descr != NULL && PyObject_TypeCheck(descr, &PyWrapperDescr_Type)) {
        PyWrapperDescrObject *wrapper = (PyWrapperDescrObject *)descr;
        if (wrapper->d_wrapped == (void *)module_setattro_orig) {
            wrapper->d_wrapped = (void *)locked_module_setattro;
        }
        Py_DECREF(descr);  /* the type's dict keeps it alive */
        return 0;
    }
    Py_XDECREF(descr);
    PyErr_Clear();
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *inherited = PyObject_GetAttrString((PyObject *)&PyBaseObject_Type, name);
    if (inherited == NULL) {
        return -1;
    }
    if (!PyObject_TypeCheck(inherited, &PyWrapperDescr_Type)
        || ((PyWrapperDescrObject *)inherited)->d_wrapped != (void *)module_setattro_orig) {
        Py_DECREF(inherited);
        PyErr_Format(PyExc_RuntimeError, "ModuleType.%s is not object's slot wrapper", name);
        return -1;
    }
    PyObject *own = PyDescr_NewWrapper(&PyModule_Type, ((PyWrapperDescrObject *)inherited)->d_base,
                                       (void *)locked_module_setattro);
    Py_DECREF(inherited);
    if (own == NULL) {
        return -1;
    }
    PyObject *dict = PyType_GetDict(&PyModule_Type);
    int rc = dict == NULL ? -1 : PyDict_SetItemString(dict, name, own);
    Py_XDECREF(dict);
    Py_DECREF(own);
    PyType_Modified(&PyModule_Type);
    return rc;
#else
    PyErr_Format(PyExc_RuntimeError, "ModuleType.%s is not a slot wrapper", name);
    return -1;
#endif
}

static PyObject *
tamper_lock_install(PyObject *module, PyObject *args)
{
    PyObject *judge, *missing, *error, *awaited;
    if (!PyArg_ParseTuple(args, "OOOO!:tamper_lock_install", &judge, &missing, &error, &PySet_Type, &awaited)) {
        return NULL;
    }
    if (!caller_trusted("tamper_lock_install")) {
        return NULL;
    }
    if (locked_modules == NULL && (locked_modules = PySet_New(NULL)) == NULL) {
        return NULL;
    }
    if (module_setattro_orig == NULL) {
        module_setattro_orig = PyModule_Type.tp_setattro;
        if (repoint_wrapper("__setattr__") < 0 || repoint_wrapper("__delattr__") < 0) {
            module_setattro_orig = NULL;
            return NULL;
        }
        PyModule_Type.tp_setattro = locked_module_setattro;
    }
    Py_XSETREF(lock_judge, Py_NewRef(judge));
    Py_XSETREF(lock_missing, Py_NewRef(missing));
    Py_XSETREF(lock_error, Py_NewRef(error));
    Py_XSETREF(lock_awaited, Py_NewRef(awaited));
    Py_RETURN_NONE;
}

static PyObject *
tamper_lock(PyObject *module, PyObject *args)
{
    PyObject *obj;
    int class_only = 0;
    if (!PyArg_ParseTuple(args, "O|p:tamper_lock", &obj, &class_only)) {
        return NULL;
    }
    if (!PyModule_CheckExact(obj)) {
        PyErr_SetString(PyExc_TypeError, "tamper_lock(module): an exact module object");
        return NULL;
    }
    if (locked_modules == NULL || class_locked == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "tamper_install() and tamper_lock_install() first");
        return NULL;
    }
    if (PySet_Add(class_only ? class_locked : locked_modules, obj) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* The seal table the engine relies on, kept in C: the program can clear or
 * rewrite the engine's Python dicts, not this; the engine compares the two at
 * every check and at exit. */
static PyObject *
tamper_seal(PyObject *module, PyObject *args)
{
    PyObject *dict, *key, *value;
    if (!PyArg_ParseTuple(args, "O!OO:tamper_seal", &PyDict_Type, &dict, &key, &value)) {
        return NULL;
    }
    if (!caller_trusted("tamper_seal")) {
        return NULL;
    }
    if (sealed == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "tamper_install() first");
        return NULL;
    }
    PyObject *id = PyLong_FromVoidPtr(dict);
    PyObject *k = id != NULL ? PyTuple_Pack(2, id, key) : NULL;
    int rc = k != NULL ? PyDict_SetItem(sealed, k, value) : -1;
    Py_XDECREF(id);
    Py_XDECREF(k);
    if (rc < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
tamper_sealed(PyObject *module, PyObject *unused)
{
    if (sealed == NULL) {
        return PyList_New(0);
    }
    return PyDict_Values(sealed);  /* a new list of the entries */
}

/* The import gate.  The tamper engine checks its seals' identities, the
 * composition of sys.meta_path and sys.path_hooks, the modules pending seals
 * wait for and the sys.monitoring tools at every "import" audit event: one
 * Python call per module imported.  The gate holds what that check compares
 * and does it here; the Python callback runs only when something differs
 * (or no gate is armed).  The engine re-arms it after each check. */
static PyObject *gate_callback;   /* the subscriber the gate answers for; NULL: no gate */
static PyObject *gate_seals;      /* tuple of (dict, key, value) */
static PyObject *gate_lists;      /* tuple of (sys attribute name, snapshot list) */
static PyObject *gate_absent;     /* tuple of module names not in sys.modules when armed */
static PyObject *gate_modules;    /* sys.modules */
static PyObject *gate_get_tool;   /* sys.monitoring.get_tool, or None */
static PyObject *gate_tools;      /* tuple: get_tool(i) for each tool id, when armed */
static PyObject *gate_running;    /* tuple of modules whose code was running when armed (3.11) */

/* Whether python is still running the module's code: its spec's `_initializing`, read from the
 * module's and the spec's own dicts (no attribute lookup that could run code); 0 when unsure. */
static int
gate_still_running(PyObject *module)
{
    if (!PyModule_Check(module)) {
        return 0;
    }
    PyObject *namespace = PyModule_GetDict(module);  /* borrowed */
    PyObject *spec = namespace != NULL ? PyDict_GetItemString(namespace, "__spec__") : NULL;
    if (spec == NULL || Py_TYPE(spec)->tp_getattro != PyObject_GenericGetAttr) {
        return 0;
    }
    PyObject *own = PyObject_GenericGetDict(spec, NULL);
    if (own == NULL) {
        PyErr_Clear();
        return 0;
    }
    PyObject *flag = PyDict_Check(own) ? PyDict_GetItemString(own, "_initializing") : NULL;  /* borrowed */
    int running = flag == Py_True;
    Py_DECREF(own);
    return running;
}

static int
gate_same_list(PyObject *name, PyObject *snapshot)
{
    PyObject *live = PySys_GetObject(PyUnicode_AsUTF8(name));  /* borrowed */
    if (live == NULL || !PyList_Check(live) || !PyList_Check(snapshot)) {
        return 0;
    }
    Py_ssize_t n = PyList_GET_SIZE(live);
    if (n != PyList_GET_SIZE(snapshot)) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (PyList_GET_ITEM(live, i) != PyList_GET_ITEM(snapshot, i)) {
            return 0;
        }
    }
    return 1;
}

/* 1: the Python subscriber `callback` has nothing to see at this import. */
int
pw_tamper_gate_skips(PyObject *callback)
{
    if (gate_callback == NULL || callback != gate_callback) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(gate_seals); i++) {
        PyObject *seal = PyTuple_GET_ITEM(gate_seals, i);
        PyObject *now = PyDict_GetItemWithError(PyTuple_GET_ITEM(seal, 0), PyTuple_GET_ITEM(seal, 1));
        if (now == NULL && !PyErr_Occurred() && lock_missing != NULL) {
            now = lock_missing;  /* sealed as absent, and still absent */
        }
        if (now != PyTuple_GET_ITEM(seal, 2)) {
            PyErr_Clear();
            return 0;
        }
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(gate_lists); i++) {
        PyObject *pair = PyTuple_GET_ITEM(gate_lists, i);
        if (!gate_same_list(PyTuple_GET_ITEM(pair, 0), PyTuple_GET_ITEM(pair, 1))) {
            return 0;
        }
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(gate_absent); i++) {
        int present = PyDict_Contains(gate_modules, PyTuple_GET_ITEM(gate_absent, i));
        if (present != 0) {
            PyErr_Clear();
            return 0;
        }
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(gate_running); i++) {
        if (!gate_still_running(PyTuple_GET_ITEM(gate_running, i))) {
            return 0;  /* finished: its pending seals can be placed now */
        }
    }
    if (gate_get_tool != Py_None) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(gate_tools); i++) {
            PyObject *id = PyLong_FromSsize_t(i);
            PyObject *tool = id != NULL ? PyObject_CallOneArg(gate_get_tool, id) : NULL;
            Py_XDECREF(id);
            int same = tool != NULL ? PyObject_RichCompareBool(tool, PyTuple_GET_ITEM(gate_tools, i), Py_EQ) : -1;
            Py_XDECREF(tool);
            if (same != 1) {
                PyErr_Clear();
                return 0;
            }
        }
    }
    return 1;
}

static PyObject *
tamper_import_gate(PyObject *module, PyObject *args)
{
    PyObject *callback, *seals = NULL, *lists = NULL, *absent = NULL, *modules = NULL, *get_tool = NULL,
             *tools = NULL, *running = NULL;
    if (!PyArg_ParseTuple(args, "O|O!O!O!O!OO!O!:tamper_import_gate", &callback, &PyTuple_Type, &seals,
                          &PyTuple_Type, &lists, &PyTuple_Type, &absent, &PyDict_Type, &modules, &get_tool,
                          &PyTuple_Type, &tools, &PyTuple_Type, &running)) {
        return NULL;
    }
    if (!caller_trusted("tamper_import_gate")) {
        return NULL;
    }
    if (callback == Py_None) {
        Py_CLEAR(gate_callback);
        Py_RETURN_NONE;
    }
    if (tools == NULL) {
        PyErr_SetString(PyExc_TypeError, "tamper_import_gate(callback, seals, lists, absent, modules, get_tool, "
                                         "tools) or tamper_import_gate(None)");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(seals); i++) {
        PyObject *seal = PyTuple_GET_ITEM(seals, i);
        if (!PyTuple_Check(seal) || PyTuple_GET_SIZE(seal) != 3 || !PyDict_Check(PyTuple_GET_ITEM(seal, 0))) {
            PyErr_SetString(PyExc_TypeError, "tamper_import_gate: seals are (dict, key, value)");
            return NULL;
        }
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(lists); i++) {
        PyObject *pair = PyTuple_GET_ITEM(lists, i);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2 || !PyUnicode_Check(PyTuple_GET_ITEM(pair, 0))) {
            PyErr_SetString(PyExc_TypeError, "tamper_import_gate: lists are (sys attribute name, list)");
            return NULL;
        }
    }
    PyObject *now_running = running != NULL ? Py_NewRef(running) : PyTuple_New(0);
    if (now_running == NULL) {
        return NULL;
    }
    Py_XSETREF(gate_seals, Py_NewRef(seals));
    Py_XSETREF(gate_lists, Py_NewRef(lists));
    Py_XSETREF(gate_absent, Py_NewRef(absent));
    Py_XSETREF(gate_modules, Py_NewRef(modules));
    Py_XSETREF(gate_get_tool, Py_NewRef(get_tool));
    Py_XSETREF(gate_tools, Py_NewRef(tools));
    Py_XSETREF(gate_running, now_running);
    Py_XSETREF(gate_callback, Py_NewRef(callback));
    Py_RETURN_NONE;
}

PyMethodDef pw_tamper_methods[] = {
    {"tamper_import_gate", tamper_import_gate, METH_VARARGS,
     "tamper_import_gate(callback, seals, lists, absent, modules, get_tool, tools, running=()): at an import,\n"
     "skip the audit subscriber `callback` when every (dict, key, value) seal still holds value, every\n"
     "(name, snapshot) list sys.<name> holds the snapshot's items, no name of absent is in modules,\n"
     "get_tool(i) (unless None) still returns tools[i], and every module of running is still running its\n"
     "code (its spec's _initializing).  tamper_import_gate(None): no gate."},
    {"tamper_install", tamper_install, METH_VARARGS,
     "tamper_install(report, pending, codes) -> bool: register the dict and function watchers (False before\n"
     "3.12); from now on only code in `codes` may mute, stop, re-point or install them again."},
    {"tamper_seal", tamper_seal, METH_VARARGS,
     "tamper_seal(namespace, key, entry): record the seal, keyed by (id(namespace), key), in C (the engine's\n"
     "own code only)."},
    {"tamper_sealed", tamper_sealed, METH_NOARGS, "tamper_sealed() -> list of the entries recorded."},
    {"tamper_stop", tamper_stop, METH_NOARGS, "tamper_stop(): no more reports (the run is over)."},
    {"tamper_watch", tamper_watch, METH_O, "tamper_watch(dict | function) -> bool: report changes to it."},
    {"tamper_watch_key", tamper_watch_key, METH_O,
     "tamper_watch_key(name): changes to this key of a watched namespace are reported (no call: every key)."},
    {"tamper_watch_modules", tamper_watch_modules, METH_VARARGS,
     "tamper_watch_modules(sys.modules, names | None): report changes to these names only (a live set)."},
    {"tamper_unwatch", tamper_unwatch, METH_O, "tamper_unwatch(dict | function): stop reporting changes to it."},
    {"tamper_schedule", tamper_schedule, METH_NOARGS,
     "tamper_schedule(): call `pending` soon, from the main thread (Py_AddPendingCall)."},
    {"tamper_lock_install", tamper_lock_install, METH_VARARGS,
     "tamper_lock_install(judge, missing, error, awaited): sealed modules (and modules named in the live\n"
     "set awaited) ask judge(module, name, value) before a change: True lets it happen, False drops it,\n"
     "a string raises error(string)."},
    {"tamper_lock", tamper_lock, METH_VARARGS,
     "tamper_lock(module, class_only=False): changes to its attributes (or only to its __class__) ask the\n"
     "judge first."},
    {"tamper_quiet", tamper_quiet, METH_VARARGS, "tamper_quiet(fn, *args): fn(*args) without reports."},
    {NULL, NULL, 0, NULL},
};
