/* asgi.c: the ASGI middleware's exchange (integrations/asgi.py), what every
 * request served under it makes: it stands between the application and the
 * server, holds the response until its first body message, keeps the request
 * body's messages for a replay.  Its Python twin, asgi.py's _Exchange, is the
 * fallback without the extension (tests/test_serving_native.py checks both).
 *
 * The application awaits what send() and receive() return.  In Python those
 * are coroutines, three of them a request; here send() returns the server's
 * own awaitable when the response is already out.  When the first body
 * message releases the held start (the usual response), the start's send runs
 * at the call and the body's awaitable is the server's own.  Otherwise (the
 * start's send suspends, a 5xx was held, receive) it is a Relay: an awaitable
 * that calls the server's send for each held message in turn and awaits what
 * it returns (or, for receive, calls the server's receive and keeps the
 * message it gives).  A Relay delegates as `await` does: what the inner
 * awaitable yields goes to the event loop, send/throw/close go to it. */
#include "pyward.h"
#include <structmember.h>

static PyObject *s_type, *s_status, *s_headers, *s_more_body, *s_body, *s_throw, *s_close, *s_value,
    *s_gi_code, *s_co_flags, *s_start, *s_response_body, *s_request, *s_header_name;

typedef struct Exchange Exchange;
static int exchange_keep(Exchange *self, PyObject *message);

/* Relay ------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    PyObject *call;      /* the server's send or receive; NULL: `value` is the result, at once */
    PyObject *messages;  /* a tuple: call(message) for each, in turn; NULL: call() once (receive) */
    Py_ssize_t next;     /* the next message to send (receive: 1 once called) */
    PyObject *current;   /* the iterator of the awaitable being awaited, or NULL */
    PyObject *value;     /* the result when `call` is NULL */
    Exchange *keeper;    /* receive: the exchange that keeps the message, or NULL */
    PyObject *pending;   /* what `current` yielded before the relay was awaited, yielded first; or NULL */
} Relay;

static PyTypeObject RelayType;
static PyObject *ready_none;  /* a Relay done at once with None: stateless, shared */

static PyObject *
relay_new(PyObject *call, PyObject *messages, PyObject *value, Exchange *keeper)
{
    Relay *self = PyObject_GC_New(Relay, &RelayType);
    if (self == NULL) {
        return NULL;
    }
    self->call = Py_XNewRef(call);
    self->messages = Py_XNewRef(messages);
    self->next = 0;
    self->current = NULL;
    self->value = Py_XNewRef(value);
    self->keeper = (Exchange *)Py_XNewRef((PyObject *)keeper);
    self->pending = NULL;
    PyObject_GC_Track(self);
    return (PyObject *)self;
}

static int
relay_traverse(Relay *self, visitproc visit, void *arg)
{
    Py_VISIT(self->call);
    Py_VISIT(self->messages);
    Py_VISIT(self->current);
    Py_VISIT(self->value);
    Py_VISIT((PyObject *)self->keeper);
    Py_VISIT(self->pending);
    return 0;
}

static int
relay_clear(Relay *self)
{
    Py_CLEAR(self->call);
    Py_CLEAR(self->messages);
    Py_CLEAR(self->current);
    Py_CLEAR(self->value);
    Py_CLEAR(self->keeper);
    Py_CLEAR(self->pending);
    return 0;
}

static void
relay_dealloc(Relay *self)
{
    PyObject_GC_UnTrack(self);
    relay_clear(self);
    PyObject_GC_Del(self);
}

/* What `await awaitable` iterates, as the interpreter finds it. */
static PyObject *
awaited(PyObject *awaitable)
{
    if (PyCoro_CheckExact(awaitable)) {
        return Py_NewRef(awaitable);
    }
    PyAsyncMethods *slots = Py_TYPE(awaitable)->tp_as_async;
    if (slots != NULL && slots->am_await != NULL) {
        PyObject *it = slots->am_await(awaitable);
        if (it != NULL && (PyCoro_CheckExact(it) || !PyIter_Check(it))) {
            PyErr_Format(PyExc_TypeError, "__await__() returned %s", PyCoro_CheckExact(it) ? "a coroutine"
                         : "non-iterator");
            Py_CLEAR(it);
        }
        return it;
    }
    if (PyGen_CheckExact(awaitable)) {  /* a generator-based coroutine (types.coroutine)? */
        PyObject *code = PyObject_GetAttr(awaitable, s_gi_code);
        PyObject *flags = code != NULL ? PyObject_GetAttr(code, s_co_flags) : NULL;
        Py_XDECREF(code);
        long bits = flags != NULL ? PyLong_AsLong(flags) : -1;
        Py_XDECREF(flags);
        if (bits == -1 && PyErr_Occurred()) {
            return NULL;
        }
        if (bits & CO_ITERABLE_COROUTINE) {
            return Py_NewRef(awaitable);
        }
    }
    PyErr_Format(PyExc_TypeError, "object %.100s can't be used in 'await' expression", Py_TYPE(awaitable)->tp_name);
    return NULL;
}

static PySendResult relay_step(Relay *self, PyObject *arg, PyObject **result);

/* The awaitable being awaited returned `value` (a new reference): start the
 * next one, or return the relay's own result. */
static PySendResult
relay_advance(Relay *self, PyObject *value, PyObject **result)
{
    Py_CLEAR(self->current);
    if (self->messages == NULL) {  /* receive: the message */
        if (self->keeper != NULL && exchange_keep(self->keeper, value) < 0) {
            Py_DECREF(value);
            return PYGEN_ERROR;
        }
        *result = value;
        return PYGEN_RETURN;
    }
    Py_DECREF(value);
    return relay_step(self, Py_None, result);
}

static PySendResult
relay_step(Relay *self, PyObject *arg, PyObject **result)
{
    if (self->pending != NULL) {  /* the first step: what `current` yielded already */
        *result = self->pending;
        self->pending = NULL;
        return PYGEN_NEXT;
    }
    if (self->call == NULL) {  /* done at once */
        *result = Py_NewRef(self->value != NULL ? self->value : Py_None);
        return PYGEN_RETURN;
    }
    if (self->current == NULL) {
        PyObject *awaitable;
        if (self->messages == NULL) {
            if (self->next > 0) {
                *result = Py_NewRef(Py_None);
                return PYGEN_RETURN;
            }
            self->next = 1;
            awaitable = PyObject_CallNoArgs(self->call);
        }
        else {
            if (self->next >= PyTuple_GET_SIZE(self->messages)) {
                *result = Py_NewRef(Py_None);
                return PYGEN_RETURN;
            }
            awaitable = PyObject_CallOneArg(self->call, PyTuple_GET_ITEM(self->messages, self->next++));
        }
        if (awaitable == NULL) {
            return PYGEN_ERROR;
        }
        self->current = awaited(awaitable);
        Py_DECREF(awaitable);
        if (self->current == NULL) {
            return PYGEN_ERROR;
        }
        arg = Py_None;  /* what starts an awaitable */
    }
    PyObject *value;
    PySendResult status = PyIter_Send(self->current, arg, &value);
    if (status == PYGEN_NEXT) {
        *result = value;
        return PYGEN_NEXT;
    }
    if (status == PYGEN_ERROR) {
        Py_CLEAR(self->current);
        self->next = PY_SSIZE_T_MAX;  /* the rest is not sent */
        return PYGEN_ERROR;
    }
    return relay_advance(self, value, result);
}

static PySendResult
relay_am_send(PyObject *op, PyObject *arg, PyObject **result)
{
    return relay_step((Relay *)op, arg, result);
}

/* A step's outcome as a method returns it: the value yielded, or NULL with StopIteration(result). */
static PyObject *
as_method(PySendResult status, PyObject *result)
{
    if (status == PYGEN_NEXT) {
        return result;
    }
    if (status == PYGEN_RETURN) {
        if (result == Py_None) {
            Py_DECREF(result);
            PyErr_SetNone(PyExc_StopIteration);
            return NULL;
        }
        PyObject *stop = PyObject_CallOneArg(PyExc_StopIteration, result);
        Py_DECREF(result);
        if (stop != NULL) {
            PyErr_SetObject(PyExc_StopIteration, stop);
            Py_DECREF(stop);
        }
    }
    return NULL;
}

static PyObject *
relay_iternext(PyObject *op)
{
    PyObject *result = NULL;
    PySendResult status = relay_step((Relay *)op, Py_None, &result);
    if (status == PYGEN_RETURN && result == Py_None) {  /* the usual end: no StopIteration object */
        Py_DECREF(result);
        return NULL;
    }
    return as_method(status, result);
}

static PyObject *
relay_send(PyObject *op, PyObject *arg)
{
    PyObject *result = NULL;
    PySendResult status = relay_step((Relay *)op, arg, &result);
    return as_method(status, result);
}

/* Raise what throw() was given: throw(exception), throw(type[, value[, traceback]]). */
static PyObject *
raise_thrown(PyObject *args)
{
    PyObject *kind = PyTuple_GET_ITEM(args, 0);
    PyObject *value = PyTuple_GET_SIZE(args) > 1 ? PyTuple_GET_ITEM(args, 1) : Py_None;
    PyObject *tb = PyTuple_GET_SIZE(args) > 2 ? PyTuple_GET_ITEM(args, 2) : Py_None;
    PyObject *exc;
    if (PyExceptionInstance_Check(kind)) {
        exc = Py_NewRef(kind);
    }
    else if (PyExceptionClass_Check(kind)) {
        exc = PyObject_TypeCheck(value, (PyTypeObject *)kind) ? Py_NewRef(value)
              : value == Py_None ? PyObject_CallNoArgs(kind) : PyObject_CallOneArg(kind, value);
        if (exc == NULL) {
            return NULL;
        }
    }
    else {
        PyErr_Format(PyExc_TypeError, "exceptions must be classes or instances deriving from BaseException, not %s",
                     Py_TYPE(kind)->tp_name);
        return NULL;
    }
    if (tb != Py_None && PyException_SetTraceback(exc, tb) < 0) {
        Py_DECREF(exc);
        return NULL;
    }
    PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    Py_DECREF(exc);
    return NULL;
}

/* The StopIteration being raised, taken: its value (a new reference), or NULL with another error. */
static PyObject *
take_stop_value(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *exc = PyErr_GetRaisedException();
#else
    PyObject *kind, *exc, *tb;
    PyErr_Fetch(&kind, &exc, &tb);
    PyErr_NormalizeException(&kind, &exc, &tb);
    Py_XDECREF(kind);
    Py_XDECREF(tb);
#endif
    if (exc == NULL) {
        return NULL;
    }
    PyObject *value = PyObject_GetAttr(exc, s_value);
    Py_DECREF(exc);
    return value;
}

static PyObject *
relay_throw(PyObject *op, PyObject *args)
{
    Relay *self = (Relay *)op;
    if (PyTuple_GET_SIZE(args) < 1 || PyTuple_GET_SIZE(args) > 3) {
        PyErr_SetString(PyExc_TypeError, "throw expected 1 to 3 arguments");
        return NULL;
    }
    Py_CLEAR(self->pending);  /* never taken: `current` is where it suspended */
    if (self->current != NULL) {
        PyObject *throw;
        if (PyObject_GetOptionalAttr(self->current, s_throw, &throw) < 0) {
            return NULL;
        }
        if (throw != NULL) {  /* the awaitable being awaited handles it */
            PyObject *yielded = PyObject_Call(throw, args, NULL);
            Py_DECREF(throw);
            if (yielded != NULL) {
                return yielded;
            }
            if (!PyErr_ExceptionMatches(PyExc_StopIteration)) {  /* it raised: so does the relay */
                Py_CLEAR(self->current);
                self->next = PY_SSIZE_T_MAX;
                return NULL;
            }
            PyObject *value = take_stop_value();  /* it returned */
            if (value == NULL) {
                return NULL;
            }
            PyObject *result = NULL;
            PySendResult status = relay_advance(self, value, &result);
            return as_method(status, result);
        }
    }
    Py_CLEAR(self->current);  /* nothing to hand it to: raised here */
    self->next = PY_SSIZE_T_MAX;
    return raise_thrown(args);
}

static PyObject *
relay_close(PyObject *op, PyObject *unused)
{
    Relay *self = (Relay *)op;
    self->next = PY_SSIZE_T_MAX;
    Py_CLEAR(self->pending);
    PyObject *current = self->current;
    if (current == NULL) {
        Py_RETURN_NONE;
    }
    self->current = NULL;
    PyObject *close;
    int found = PyObject_GetOptionalAttr(current, s_close, &close);
    Py_DECREF(current);
    if (found <= 0) {
        return found < 0 ? NULL : Py_NewRef(Py_None);
    }
    PyObject *result = PyObject_CallNoArgs(close);
    Py_DECREF(close);
    return result;
}

static PyObject *
relay_await(PyObject *op)
{
    return Py_NewRef(op);
}

static PyMethodDef relay_methods[] = {
    {"send", relay_send, METH_O, "send(value): as a coroutine's."},
    {"throw", relay_throw, METH_VARARGS, "throw(exception): as a coroutine's."},
    {"close", relay_close, METH_NOARGS, "close(): as a coroutine's."},
    {NULL},
};

static PyAsyncMethods relay_async = {
    .am_await = relay_await,
    .am_send = relay_am_send,
};

static PyTypeObject RelayType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pyward._native._pyward.Relay",
    .tp_basicsize = sizeof(Relay),
    .tp_dealloc = (destructor)relay_dealloc,
    .tp_as_async = &relay_async,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "What the ASGI exchange's send and receive return: an awaitable that awaits the server's.",
    .tp_traverse = (traverseproc)relay_traverse,
    .tp_clear = (inquiry)relay_clear,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = relay_iternext,
    .tp_methods = relay_methods,
};

/* Exchange --------------------------------------------------------------- */

struct Exchange {
    PyObject_HEAD
    vectorcallfunc call;  /* exchange(message): its send, without a bound method a request */
    PyObject *server_send;
    PyObject *server_receive;
    Py_ssize_t limit;   /* request body bytes kept for a replay; -1: none */
    PyObject *start;    /* the response's start message, held; or NULL */
    long status;        /* its status (0 before) */
    char sent;          /* the response went out */
    PyObject *held;     /* the body messages of a 5xx, held: a list, or NULL */
    PyObject *heals;    /* this request's heals, in its replays: a list, or () */
    PyObject *header;   /* X-Pyward-Healed's value (bytes) when heals is not empty, or NULL */
    PyObject *kept;     /* the request body's messages, kept: a list, or NULL */
    Py_ssize_t size;    /* request body bytes received */
    PyObject *queue;    /* a replay's kept messages not yet received again: a list, or NULL */
};

static PyTypeObject ExchangeType;
static PyObject *exchange_call(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames);

static Exchange *
exchange_make(PyTypeObject *type, PyObject *send, PyObject *receive, Py_ssize_t limit)
{
    Exchange *self = (Exchange *)type->tp_alloc(type, 0);
    if (self != NULL) {
        self->call = exchange_call;
        self->server_send = Py_NewRef(send);
        self->server_receive = Py_NewRef(receive);
        self->limit = limit;
        self->heals = PyTuple_New(0);
        if (self->heals == NULL) {
            Py_CLEAR(self);
        }
    }
    return self;
}

static PyObject *
exchange_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *send, *receive;
    Py_ssize_t limit;
    if ((kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0)
        || !PyArg_ParseTuple(args, "OOn:Exchange", &send, &receive, &limit)) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_TypeError, "Exchange() takes no keyword arguments");
        }
        return NULL;
    }
    return (PyObject *)exchange_make(type, send, receive, limit);
}

/* Exchange(send, receive, limit) without an argument tuple: every request makes one. */
static PyObject *
exchange_vector_new(PyObject *type, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    if (PyVectorcall_NARGS(nargsf) != 3 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0)) {
        PyErr_SetString(PyExc_TypeError, "Exchange(send, receive, limit) takes three positional arguments");
        return NULL;
    }
    Py_ssize_t limit = PyLong_AsSsize_t(args[2]);
    if (limit == -1 && PyErr_Occurred()) {
        return NULL;
    }
    return (PyObject *)exchange_make((PyTypeObject *)type, args[0], args[1], limit);
}

static int
exchange_traverse(Exchange *self, visitproc visit, void *arg)
{
    Py_VISIT(self->server_send);
    Py_VISIT(self->server_receive);
    Py_VISIT(self->start);
    Py_VISIT(self->held);
    Py_VISIT(self->heals);
    Py_VISIT(self->header);
    Py_VISIT(self->kept);
    Py_VISIT(self->queue);
    return 0;
}

static int
exchange_clear(Exchange *self)
{
    Py_CLEAR(self->server_send);
    Py_CLEAR(self->server_receive);
    Py_CLEAR(self->start);
    Py_CLEAR(self->held);
    Py_CLEAR(self->heals);
    Py_CLEAR(self->header);
    Py_CLEAR(self->kept);
    Py_CLEAR(self->queue);
    return 0;
}

static void
exchange_dealloc(Exchange *self)
{
    PyObject_GC_UnTrack(self);
    exchange_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Whether `value` is the str `name` (interned: mostly one pointer test). */
static int
is_str(PyObject *value, PyObject *name)
{
    return value == name || (PyUnicode_Check(value) && PyUnicode_Compare(value, name) == 0);
}

/* message.get(key), a new reference, or NULL (absent: no error set). */
static PyObject *
get(PyObject *message, PyObject *key)
{
    if (PyDict_CheckExact(message)) {
        return Py_XNewRef(PyDict_GetItemWithError(message, key));
    }
    PyObject *value = PyObject_GetItem(message, key);
    if (value == NULL && PyErr_ExceptionMatches(PyExc_KeyError)) {
        PyErr_Clear();
    }
    return value;
}

/* A received message: keep it for a replay if it is part of the request body and there is room. */
static int
exchange_keep(Exchange *self, PyObject *message)
{
    if (self->limit < 0) {
        return 0;
    }
    PyObject *kind = get(message, s_type);
    if (kind == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    int request = is_str(kind, s_request);
    Py_DECREF(kind);
    if (!request) {
        return 0;
    }
    PyObject *body = get(message, s_body);
    if (body == NULL && PyErr_Occurred()) {
        return -1;
    }
    Py_ssize_t n = body != NULL ? PyObject_Length(body) : 0;
    Py_XDECREF(body);
    if (n < 0) {
        return -1;
    }
    self->size += n;
    if (self->size > self->limit) {  /* too large to keep: not replayed */
        Py_CLEAR(self->kept);
        return 0;
    }
    if (self->kept == NULL && (self->kept = PyList_New(0)) == NULL) {
        return -1;
    }
    return PyList_Append(self->kept, message);
}

/* The held start message, with X-Pyward-Healed when the request was healed. */
static PyObject *
healed_start(Exchange *self)
{
    if (self->header == NULL || PyBytes_GET_SIZE(self->header) == 0) {  /* not healed (yet) */
        return Py_NewRef(self->start);
    }
    PyObject *start = PyDict_New();
    if (start == NULL || PyDict_Update(start, self->start) < 0) {
        Py_XDECREF(start);
        return NULL;
    }
    PyObject *given = get(self->start, s_headers);
    PyObject *headers = given != NULL ? PySequence_List(given) : PyList_New(0);
    Py_XDECREF(given);
    PyObject *pair = headers != NULL ? PyTuple_Pack(2, s_header_name, self->header) : NULL;
    int failed = pair == NULL || PyList_Append(headers, pair) < 0 || PyDict_SetItem(start, s_headers, headers) < 0;
    Py_XDECREF(pair);
    Py_XDECREF(headers);
    if (failed) {
        Py_DECREF(start);
        return NULL;
    }
    return start;
}

/* The usual response going out: the held start, then `last`.  The start's
 * send runs now; when it completes without suspending, as it usually does,
 * the server's own awaitable for `last` is returned, for the caller's `await`
 * to run as it would without the exchange.  Else a Relay goes on from where
 * the start's send suspended (what it yielded first), then sends `last`. */
static PyObject *
release_start_then(Exchange *self, PyObject *last)
{
    PyObject *start = healed_start(self);
    if (start == NULL) {
        return NULL;
    }
    PyObject *awaitable = PyObject_CallOneArg(self->server_send, start);
    PyObject *it = awaitable != NULL ? awaited(awaitable) : NULL;
    Py_XDECREF(awaitable);
    PyObject *value = NULL;
    PySendResult status = it != NULL ? PyIter_Send(it, Py_None, &value) : PYGEN_ERROR;
    if (status != PYGEN_NEXT) {
        Py_DECREF(start);
        Py_XDECREF(it);
        if (status == PYGEN_ERROR) {
            return NULL;
        }
        Py_DECREF(value);
        return PyObject_CallOneArg(self->server_send, last);
    }
    PyObject *messages = PyTuple_Pack(2, start, last);
    Py_DECREF(start);
    Relay *relay = messages != NULL ? (Relay *)relay_new(self->server_send, messages, NULL, NULL) : NULL;
    Py_XDECREF(messages);
    if (relay == NULL) {
        Py_DECREF(it);
        Py_DECREF(value);
        return NULL;
    }
    relay->next = 1;
    relay->current = it;
    relay->pending = value;
    return (PyObject *)relay;
}

/* The response goes out: the held messages are sent, then `last` (if not NULL). */
static PyObject *
exchange_release(Exchange *self, PyObject *last)
{
    self->sent = 1;
    Py_ssize_t held = self->held != NULL ? PyList_GET_SIZE(self->held) : 0;
    if (held == 0 && last != NULL) {
        return release_start_then(self, last);
    }
    PyObject *messages = PyTuple_New(1 + held + (last != NULL));
    if (messages == NULL) {
        return NULL;
    }
    PyObject *start = healed_start(self);
    if (start == NULL) {
        Py_DECREF(messages);
        return NULL;
    }
    PyTuple_SET_ITEM(messages, 0, start);
    for (Py_ssize_t i = 0; i < held; i++) {
        PyTuple_SET_ITEM(messages, 1 + i, Py_NewRef(PyList_GET_ITEM(self->held, i)));
    }
    if (last != NULL) {
        PyTuple_SET_ITEM(messages, 1 + held, Py_NewRef(last));
    }
    PyObject *relay = relay_new(self->server_send, messages, NULL, NULL);
    Py_DECREF(messages);
    return relay;
}

static PyObject *
exchange_send(PyObject *op, PyObject *message)
{
    Exchange *self = (Exchange *)op;
    if (self->sent) {
        return PyObject_CallOneArg(self->server_send, message);
    }
    PyObject *kind = PyObject_GetItem(message, s_type);
    if (kind == NULL) {
        return NULL;
    }
    int start = is_str(kind, s_start), body = !start && is_str(kind, s_response_body);
    Py_DECREF(kind);
    if (start) {
        PyObject *status = PyObject_GetItem(message, s_status);
        long code = status != NULL ? PyLong_AsLong(status) : -1;
        Py_XDECREF(status);
        if (code == -1 && PyErr_Occurred()) {
            return NULL;
        }
        Py_XSETREF(self->start, Py_NewRef(message));
        self->status = code;
        return Py_NewRef(ready_none);
    }
    if (body && self->status >= 500) {
        PyObject *more = get(message, s_more_body);
        int streams = more != NULL ? PyObject_IsTrue(more) : 0;
        Py_XDECREF(more);
        if (streams < 0 || (more == NULL && PyErr_Occurred())) {
            return NULL;
        }
        if (!streams) {  /* a complete 5xx: held until the application returns */
            if (self->held == NULL && (self->held = PyList_New(0)) == NULL) {
                return NULL;
            }
            return PyList_Append(self->held, message) < 0 ? NULL : Py_NewRef(ready_none);
        }
    }
    if (self->start == NULL) {  /* an extension's message before the response: not held */
        return PyObject_CallOneArg(self->server_send, message);
    }
    return exchange_release(self, message);
}

/* exchange(message): the same as exchange.send(message). */
static PyObject *
exchange_call(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    if (PyVectorcall_NARGS(nargsf) != 1 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0)) {
        PyErr_SetString(PyExc_TypeError, "send(message) takes one positional argument");
        return NULL;
    }
    return exchange_send(op, args[0]);
}

static PyObject *
exchange_commit(PyObject *op, PyObject *unused)
{
    Exchange *self = (Exchange *)op;
    if (self->sent || self->start == NULL) {
        return Py_NewRef(ready_none);
    }
    return exchange_release(self, NULL);
}

static PyObject *
exchange_receive(PyObject *op, PyObject *unused)
{
    Exchange *self = (Exchange *)op;
    if (self->queue != NULL && PyList_GET_SIZE(self->queue) > 0) {  /* a replay: the kept messages first */
        PyObject *message = Py_NewRef(PyList_GET_ITEM(self->queue, 0));
        if (PyList_SetSlice(self->queue, 0, 1, NULL) < 0 || exchange_keep(self, message) < 0) {
            Py_DECREF(message);
            return NULL;
        }
        PyObject *relay = relay_new(NULL, NULL, message, NULL);
        Py_DECREF(message);
        return relay;
    }
    return relay_new(self->server_receive, NULL, NULL, self);
}

static PyObject *
exchange_over(PyObject *op, PyObject *unused)
{
    Exchange *self = (Exchange *)op;
    return PyBool_FromLong(self->limit >= 0 && self->size > self->limit);
}

static PyObject *
exchange_replay(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    Exchange *self = (Exchange *)op;
    if (nargs != 2 || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "replay(heals, header) takes a list and bytes");
        return NULL;
    }
    Exchange *attempt = exchange_make(Py_TYPE(self), self->server_send, self->server_receive, self->limit);
    if (attempt == NULL) {
        return NULL;
    }
    Py_SETREF(attempt->heals, Py_NewRef(args[0]));
    attempt->header = Py_NewRef(args[1]);
    attempt->queue = self->kept != NULL ? PyList_GetSlice(self->kept, 0, PY_SSIZE_T_MAX) : PyList_New(0);
    if (attempt->queue == NULL) {
        Py_DECREF(attempt);
        return NULL;
    }
    return (PyObject *)attempt;
}

static PyMethodDef exchange_methods[] = {
    {"send", exchange_send, METH_O, "send(message): the send the application is given; returns an awaitable."},
    {"receive", exchange_receive, METH_NOARGS, "receive(): the receive the application is given; returns an awaitable."},
    {"commit", exchange_commit, METH_NOARGS, "commit(): an awaitable that sends what is held (nothing once sent)."},
    {"over", exchange_over, METH_NOARGS, "over(): whether the request body was too large to keep."},
    {"replay", (PyCFunction)(void (*)(void))exchange_replay, METH_FASTCALL,
     "replay(heals, header): the next attempt, its response carrying X-Pyward-Healed: header."},
    {NULL},
};

static PyMemberDef exchange_members[] = {
    {"status", T_LONG, offsetof(Exchange, status), READONLY, "the response's status (0 before its start)"},
    {"sent", T_BOOL, offsetof(Exchange, sent), READONLY, "whether the response went out"},
    {"heals", T_OBJECT, offsetof(Exchange, heals), READONLY, "this request's heals, in its replays"},
    {NULL},
};

static PyTypeObject ExchangeType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pyward._native._pyward.Exchange",
    .tp_basicsize = sizeof(Exchange),
    .tp_dealloc = (destructor)exchange_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "Exchange(send, receive, limit): one attempt at an ASGI request (integrations/asgi.py);\n"
              "calling it is calling its send.",
    .tp_vectorcall_offset = offsetof(Exchange, call),
    .tp_call = PyVectorcall_Call,
    .tp_traverse = (traverseproc)exchange_traverse,
    .tp_clear = (inquiry)exchange_clear,
    .tp_methods = exchange_methods,
    .tp_members = exchange_members,
    .tp_new = exchange_new,
    .tp_vectorcall = exchange_vector_new,
};

int
pw_asgi_exec(PyObject *module)
{
    static const char *names[] = {"type", "status", "headers", "more_body", "body", "throw", "close", "value",
                                  "gi_code", "co_flags", "http.response.start", "http.response.body",
                                  "http.request"};
    PyObject **slots[] = {&s_type, &s_status, &s_headers, &s_more_body, &s_body, &s_throw, &s_close, &s_value,
                          &s_gi_code, &s_co_flags, &s_start, &s_response_body, &s_request};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if ((*slots[i] = PyUnicode_InternFromString(names[i])) == NULL) {
            return -1;
        }
    }
    if ((s_header_name = PyBytes_FromString("x-pyward-healed")) == NULL || PyType_Ready(&RelayType) < 0
        || PyType_Ready(&ExchangeType) < 0 || (ready_none = relay_new(NULL, NULL, NULL, NULL)) == NULL) {
        return -1;
    }
    return PyModule_AddObjectRef(module, "Exchange", (PyObject *)&ExchangeType);
}
