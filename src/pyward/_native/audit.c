/* The process-wide audit hook.
 *
 * PySys_AddAuditHook hooks cannot be removed, and CPython calls every hook for
 * every audit event, so the cost that matters is the cost of *ignoring* an
 * event.  Subscribers register the exact event names they care about; the hook
 * hashes the event name once and probes an open-addressing table.  Events no
 * subscriber named never reach Python.
 */
#include "pyward.h"

#include <stdint.h>
#include <string.h>

#define MAX_SUBSCRIBERS 32

typedef struct {
    char *name;         /* owned copy; NULL marks an empty slot */
    uint64_t hash;
    PyObject *pyname;   /* interned str passed to callbacks */
    uint32_t mask;      /* bit i set: subscriber i wants this event */
} Entry;

typedef struct {
    Entry *slots;
    size_t capacity;    /* power of two */
    size_t used;
} Table;

static Table table;
static PyObject *subscribers[MAX_SUBSCRIBERS];
/* The sandbox is one special subscriber (index SANDBOX_BIT): its callback
 * returns a verdict instead of raising, and the denial is raised here, in C,
 * so that no Python frame of pyward appears in the program's traceback.  The
 * program's install_hook() callback owns another bit (PW_HOOK_SUBSCRIBER) for
 * the exact event names it asked for. */
#define SANDBOX_BIT PW_SANDBOX_SUBSCRIBER
#define PW_SUBSCRIBER_BITS ((1u << PW_HOOK_SUBSCRIBER) - 1)
static int n_subscribers;
static int hook_registered;
static unsigned long long dispatched;

/* A one-bit-per-slot prefilter over (length, first two and last byte): most
 * events nobody subscribed to are rejected here, without hashing the name. */
#define PREFILTER_BITS 16
static uint64_t prefilter[(1u << PREFILTER_BITS) / 64];

static inline uint32_t
prefilter_key(const char *s, size_t len)
{
    uint32_t c0 = (unsigned char)s[0], c1 = len > 1 ? (unsigned char)s[1] : 0;
    uint32_t last = len ? (unsigned char)s[len - 1] : 0;
    return ((uint32_t)len * 2654435761u ^ c0 * 40503u ^ c1 * 9973u ^ last * 131u) & ((1u << PREFILTER_BITS) - 1);
}

static inline int
prefilter_may_have(const char *s, size_t len)
{
    uint32_t k = prefilter_key(s, len);
    return (prefilter[k >> 6] >> (k & 63)) & 1;
}

static inline uint64_t
fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    while (*s) {
        h ^= (unsigned char)*s++;
        h *= 1099511628211ULL;
    }
    return h;
}

static Entry *
lookup(const Table *t, const char *name, uint64_t h)
{
    if (t->capacity == 0) {
        return NULL;
    }
    size_t i = (size_t)h & (t->capacity - 1);
    for (;;) {
        Entry *e = &t->slots[i];
        if (e->name == NULL) {
            return NULL;
        }
        if (e->hash == h && strcmp(e->name, name) == 0) {
            return e;
        }
        i = (i + 1) & (t->capacity - 1);
    }
}

/* Insert into a table that is known to have room. */
static Entry *
insert_slot(Table *t, uint64_t h)
{
    size_t i = (size_t)h & (t->capacity - 1);
    while (t->slots[i].name != NULL) {
        i = (i + 1) & (t->capacity - 1);
    }
    return &t->slots[i];
}

static int
grow(void)
{
    size_t cap = table.capacity ? table.capacity * 2 : 64;
    Entry *slots = PyMem_RawCalloc(cap, sizeof(Entry));
    if (slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    Table bigger = {slots, cap, table.used};
    for (size_t i = 0; i < table.capacity; i++) {
        if (table.slots[i].name != NULL) {
            *insert_slot(&bigger, table.slots[i].hash) = table.slots[i];
        }
    }
    /* Readers run under the GIL, as does this swap. */
    Entry *old = table.slots;
    table = bigger;
    PyMem_RawFree(old);
    return 0;
}

int
pw_add_name(PyObject *pyname, int subscriber)
{
    const char *name = PyUnicode_AsUTF8(pyname);
    if (name == NULL) {
        return -1;
    }
    uint64_t h = fnv1a(name);
    Entry *e = lookup(&table, name, h);
    if (e != NULL) {
        e->mask |= (1u << subscriber);
        return 0;
    }
    if ((table.used + 1) * 2 > table.capacity && grow() < 0) {
        return -1;
    }
    size_t len = strlen(name);
    char *copy = PyMem_RawMalloc(len + 1);
    if (copy == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(copy, name, len + 1);
    uint32_t k = prefilter_key(name, len);
    prefilter[k >> 6] |= 1ull << (k & 63);
    Py_INCREF(pyname);
    PyUnicode_InternInPlace(&pyname);
    e = insert_slot(&table, h);
    e->name = copy;
    e->hash = h;
    e->pyname = pyname;
    e->mask = 1u << subscriber;
    table.used++;
    return 0;
}

int pw_sandbox_decide_for(PyObject *event, PyObject *args, int hooked);
int pw_sandbox_foreign(const char *event);
int pw_hook_alone(PyObject *event, PyObject *args);
int pw_hook_wants(const char *event, uint32_t mask);
int pw_tamper_gate_skips(PyObject *callback);

/* "object.__setattr__" fires for every class attribute set (dataclasses and enum
 * set dozens per class); Python subscribers only want function code swaps. */
static int
is_setattr_noise(const char *event, PyObject *args)
{
    if (strcmp(event, "object.__setattr__") != 0 || !PyTuple_Check(args) || PyTuple_GET_SIZE(args) < 2) {
        return 0;
    }
    PyObject *name = PyTuple_GET_ITEM(args, 1);
    if (!PyUnicode_Check(name)) {
        return 0;
    }
    return !(PyUnicode_CompareWithASCIIString(name, "__code__") == 0
             || PyUnicode_CompareWithASCIIString(name, "__defaults__") == 0
             || PyUnicode_CompareWithASCIIString(name, "__kwdefaults__") == 0);
}

static int
audit_hook(const char *event, PyObject *args, void *userData)
{
    Entry *e = prefilter_may_have(event, strlen(event)) ? lookup(&table, event, fnv1a(event)) : NULL;
    /* the program's install_hook() callback: one flag test when there is none */
    int hooked = pw_user_hook_active && pw_hook_wants(event, e != NULL ? e->mask : 0);
    if (e == NULL && !hooked) {
        return 0;
    }
    /* Python callbacks belong to the main interpreter; a subinterpreter must
     * not call into them.  The sandbox decides, in C, what happens there. */
    if (PyInterpreterState_Get() != PyInterpreterState_Main()) {
        return (e != NULL && (e->mask & (1u << SANDBOX_BIT))) ? pw_sandbox_foreign(event) : 0;
    }
    if (e == NULL) {
        /* an event nobody subscribed to: only the program's callback sees it */
        PyObject *name = PyUnicode_FromString(event);
        if (name == NULL) {
            return -1;
        }
        int rc = pw_hook_alone(name, args);
        Py_DECREF(name);
        return rc;
    }
    dispatched++;
    uint32_t mask = e->mask;
    if (mask & (1u << SANDBOX_BIT)) {
        if (pw_sandbox_decide_for(e->pyname, args, hooked) < 0) {
            return -1;
        }
    }
    else if (hooked && pw_hook_alone(e->pyname, args) < 0) {
        return -1;
    }
    if (!(mask & PW_SUBSCRIBER_BITS) || is_setattr_noise(event, args)) {
        return 0;
    }
    int at_import = strcmp(event, "import") == 0;
    for (int i = 0; i < n_subscribers; i++) {
        if (!(mask & (1u << i)) || (at_import && pw_tamper_gate_skips(subscribers[i]))) {
            continue;
        }
        pw_shield_enter();
        PyObject *res = PyObject_CallFunctionObjArgs(subscribers[i], e->pyname, args, NULL);
        pw_shield_leave();
        if (res == NULL) {
            return -1;  /* the exception propagates into the audited operation */
        }
        Py_DECREF(res);
    }
    return 0;
}

/* Add every str of the iterable `names` to the table with `subscriber`'s bit;
 * -1 with an exception set when one is not a str (the names before it stay added). */
int
pw_add_names(PyObject *names, int subscriber)
{
    PyObject *seq = PySequence_Fast(names, "names must be an iterable of str");
    if (seq == NULL) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        PyObject *name = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyUnicode_Check(name) || pw_add_name(name, subscriber) < 0) {
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_TypeError, "event names must be str");
            }
            Py_DECREF(seq);
            return -1;
        }
    }
    Py_DECREF(seq);
    return 0;
}

/* Whether `event` is in the table with `subscriber`'s bit. */
int
pw_name_has(const char *event, int subscriber)
{
    if (!prefilter_may_have(event, strlen(event))) {
        return 0;
    }
    Entry *e = lookup(&table, event, fnv1a(event));
    return e != NULL && (e->mask & (1u << subscriber));
}

/* Take `subscriber`'s bit off every name (the program's callback changed its events). */
void
pw_clear_subscriber(int subscriber)
{
    for (size_t i = 0; i < table.capacity; i++) {
        if (table.slots[i].name != NULL) {
            table.slots[i].mask &= ~(1u << subscriber);
        }
    }
}

int
pw_register_hook(void)
{
    if (!hook_registered) {
        if (PySys_AddAuditHook(audit_hook, NULL) < 0) {
            return -1;
        }
        hook_registered = 1;
    }
    return 0;
}

PyDoc_STRVAR(subscribe_doc,
"audit_subscribe(names, callback, /)\n--\n\n"
"Call callback(event, args) for every audit event whose name is in names.\n"
"The process-wide C hook is registered on the first call and stays for the\n"
"life of the process; subscriptions cannot be removed.  An exception raised\n"
"by the callback propagates into the audited operation.  Python callbacks see\n"
"object.__setattr__ only for __code__, __defaults__ and __kwdefaults__.");

static PyObject *
audit_subscribe(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "audit_subscribe(names, callback) takes 2 arguments");
        return NULL;
    }
    PyObject *callback = args[1];
    if (!PyCallable_Check(callback)) {
        PyErr_SetString(PyExc_TypeError, "callback must be callable");
        return NULL;
    }
    if (n_subscribers >= PW_HOOK_SUBSCRIBER) {
        PyErr_SetString(PyExc_RuntimeError, "too many audit subscribers");
        return NULL;
    }
    PyObject *names = PySequence_Fast(args[0], "names must be an iterable of str");
    if (names == NULL) {
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(names);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyUnicode_Check(PySequence_Fast_GET_ITEM(names, i))) {
            Py_DECREF(names);
            PyErr_SetString(PyExc_TypeError, "event names must be str");
            return NULL;
        }
    }
    if (pw_register_hook() < 0) {
        Py_DECREF(names);
        return NULL;
    }
    int index = n_subscribers;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (pw_add_name(PySequence_Fast_GET_ITEM(names, i), index) < 0) {
            Py_DECREF(names);
            return NULL;
        }
    }
    Py_DECREF(names);
    Py_INCREF(callback);
    subscribers[index] = callback;
    n_subscribers++;
    Py_RETURN_NONE;
}

static PyObject *
audit_state(PyObject *module, PyObject *unused)
{
    return Py_BuildValue("{s:O,s:i,s:n,s:K}",
                         "registered", hook_registered ? Py_True : Py_False,
                         "subscribers", n_subscribers,
                         "names", (Py_ssize_t)table.used,
                         "dispatched", dispatched);
}

PyMethodDef pw_audit_methods[] = {
    {"audit_subscribe", (PyCFunction)(void (*)(void))audit_subscribe, METH_FASTCALL, subscribe_doc},
    {"audit_state", audit_state, METH_NOARGS,
     "audit_state() -> dict: whether the hook is registered, subscriber and name counts, events dispatched."},
    {NULL, NULL, 0, NULL},
};

int
pw_audit_exec(PyObject *module)
{
    return 0;
}
