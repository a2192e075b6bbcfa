/* serving.c: objects every request served under heal makes (bench/serve.py
 * measures them): the WSGI middleware's held response (integrations/wsgi.py)
 * and http.server's response buffer (integrations/httpserver.py).  Each has a
 * Python twin there, the fallback without the extension, with the same
 * behaviour (tests/test_serving_native.py checks both).
 *
 * Held:
 * Every request served under the middleware makes one: it is the
 * start_response the application calls, it holds the status, headers,
 * write() calls and the read-ahead of the body up to its first non-empty
 * chunk, and once committed it is the body iterable the server reads and
 * closes (wsgi.py's _Response in Python). */
#include "pyward.h"
#include <structmember.h>

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *status;       /* what start_response was given ("" before) */
    PyObject *headers;      /* a list, never changed in place */
    PyObject *written;      /* bytes the application wrote before the commit: a list, or NULL */
    PyObject *result;       /* the application's iterable, or NULL */
    PyObject *chunks;       /* the chunks read ahead: a list, or NULL */
    Py_ssize_t next;        /* the next of `chunks` to hand out */
    PyObject *rest;         /* the iterator after the read-ahead, or NULL */
    PyObject *server_write; /* the server's write(), once committed */
} Held;

static PyObject *held_write(PyObject *self, PyObject *data);
static PyMethodDef write_def = {"write", (PyCFunction)held_write, METH_O,
                                "write(data): the WSGI write callable (held until the commit)."};

static PyObject *s_file_wrapper, *s_close, *s_empty, *s_empty_bytes, *s_write, *s_flush, *s_join;  /* made at exec */

static PyObject *held_start_response(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames);

/* The result of a call whose value is not wanted: 0, or -1 with the error set. */
static int
dropped(PyObject *result)
{
    if (result == NULL) {
        return -1;
    }
    Py_DECREF(result);
    return 0;
}

static PyObject *
held_vector_new(PyObject *type, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    if (PyVectorcall_NARGS(nargsf) != 0 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0)) {
        PyErr_SetString(PyExc_TypeError, "Held() takes no arguments");
        return NULL;
    }
    Held *self = (Held *)((PyTypeObject *)type)->tp_alloc((PyTypeObject *)type, 0);
    if (self != NULL) {
        self->vectorcall = held_start_response;
        self->status = Py_NewRef(s_empty);
    }
    return (PyObject *)self;
}

static PyObject *
held_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    /* only the count matters: held_vector_new refuses any argument */
    size_t given = (size_t)PyTuple_GET_SIZE(args) + (kwargs != NULL ? (size_t)PyDict_GET_SIZE(kwargs) : 0);
    return held_vector_new((PyObject *)type, NULL, given, NULL);
}

static int
held_traverse(Held *self, visitproc visit, void *arg)
{
    Py_VISIT(self->status);
    Py_VISIT(self->headers);
    Py_VISIT(self->written);
    Py_VISIT(self->result);
    Py_VISIT(self->chunks);
    Py_VISIT(self->rest);
    Py_VISIT(self->server_write);
    return 0;
}

static int
held_clear(Held *self)
{
    Py_CLEAR(self->status);
    Py_CLEAR(self->headers);
    Py_CLEAR(self->written);
    Py_CLEAR(self->result);
    Py_CLEAR(self->chunks);
    Py_CLEAR(self->rest);
    Py_CLEAR(self->server_write);
    return 0;
}

static void
held_dealloc(Held *self)
{
    PyObject_GC_UnTrack(self);
    held_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* start_response(status, headers, exc_info=None): the object itself is the start_response the application gets. */
static PyObject *
held_start_response(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Held *self = (Held *)op;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    PyObject *status = nargs > 0 ? args[0] : NULL, *headers = nargs > 1 ? args[1] : NULL;
    PyObject *exc_info = nargs > 2 ? args[2] : NULL;
    if (nargs > 3) {
        goto usage;
    }
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i), *value = args[nargs + i];
        PyObject **slot = PyUnicode_CompareWithASCIIString(name, "status") == 0 ? &status
                          : PyUnicode_CompareWithASCIIString(name, "headers") == 0 ? &headers
                          : PyUnicode_CompareWithASCIIString(name, "exc_info") == 0 ? &exc_info : NULL;
        if (slot == NULL || *slot != NULL) {
            goto usage;
        }
        *slot = value;
    }
    if (status == NULL || headers == NULL) {
        goto usage;
    }
    if (exc_info != NULL && exc_info != Py_None && self->server_write != NULL) {
        /* too late to change the response: the headers are sent; re-raise (PEP 3333) */
        PyObject *value = PySequence_GetItem(exc_info, 1);
        PyObject *tb = value == NULL ? NULL : PySequence_GetItem(exc_info, 2);
        if (tb != NULL) {
            if (!PyExceptionInstance_Check(value)) {
                PyErr_SetString(PyExc_TypeError, "start_response: exc_info[1] is not an exception");
            }
            else if (tb == Py_None || PyException_SetTraceback(value, tb) == 0) {
                PyErr_SetObject((PyObject *)Py_TYPE(value), value);
            }
        }
        Py_XDECREF(value);
        Py_XDECREF(tb);
        return NULL;
    }
    Py_XSETREF(self->status, Py_NewRef(status));
    Py_XSETREF(self->headers, Py_NewRef(headers));
    return PyCFunction_New(&write_def, op);
usage:
    PyErr_SetString(PyExc_TypeError, "start_response(status, headers, exc_info=None)");
    return NULL;
}

static PyObject *
held_call(PyObject *op, PyObject *args, PyObject *kwargs)
{
    return PyVectorcall_Call(op, args, kwargs);
}

static PyObject *
held_write(PyObject *op, PyObject *data)
{
    Held *self = (Held *)op;
    if (self->server_write != NULL) {
        return dropped(PyObject_CallOneArg(self->server_write, data)) < 0 ? NULL : Py_NewRef(Py_None);
    }
    if (self->written == NULL && (self->written = PyList_New(0)) == NULL) {
        return NULL;
    }
    return PyList_Append(self->written, data) < 0 ? NULL : Py_NewRef(Py_None);
}

/* run(app, environ): call the application and read its iterable up to the first non-empty chunk. */
static PyObject *
held_run(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    Held *self = (Held *)op;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "run(app, environ)");
        return NULL;
    }
    PyObject *call[2] = {args[1], op};
    PyObject *result = PyObject_Vectorcall(args[0], call, 2, NULL);
    if (result == NULL) {
        return NULL;
    }
    Py_XSETREF(self->result, result);
    if (PyList_CheckExact(result) || PyTuple_Check(result)) {
        Py_RETURN_NONE;  /* nothing to read ahead: it is all there */
    }
    PyObject *wrapper = PyDict_Check(args[1]) ? PyDict_GetItemWithError(args[1], s_file_wrapper) : NULL;
    if (wrapper == NULL && PyErr_Occurred()) {
        return NULL;
    }
    if (wrapper != NULL && PyType_Check(wrapper)) {
        int is = PyObject_IsInstance(result, wrapper);
        if (is != 0) {
            return is < 0 ? NULL : Py_NewRef(Py_None);  /* a file for the server to send as it can */
        }
    }
    PyObject *rest = PyObject_GetIter(result);
    if (rest == NULL) {
        return NULL;
    }
    PyObject *chunks = PyList_New(0);
    if (chunks == NULL) {
        Py_DECREF(rest);
        return NULL;
    }
    for (;;) {
        PyObject *chunk = PyIter_Next(rest);
        if (chunk == NULL) {
            Py_DECREF(rest);
            if (PyErr_Occurred()) {
                Py_DECREF(chunks);
                return NULL;
            }
            Py_XSETREF(self->chunks, chunks);  /* the iterable is exhausted */
            Py_RETURN_NONE;
        }
        int full = PyList_Append(chunks, chunk) < 0 ? -1 : PyObject_IsTrue(chunk);
        Py_DECREF(chunk);
        if (full != 0) {
            if (full < 0) {
                Py_DECREF(rest);
                Py_DECREF(chunks);
                return NULL;
            }
            Py_XSETREF(self->chunks, chunks);
            Py_XSETREF(self->rest, rest);
            Py_RETURN_NONE;
        }
    }
}

/* Call result.close() if it has one: 1 done or none, -1 error set. */
static int
close_result(Held *self)
{
    if (self->result == NULL) {
        return 1;
    }
    PyObject *close;
    if (PyObject_GetOptionalAttr(self->result, s_close, &close) <= 0) {
        return PyErr_Occurred() ? -1 : 1;
    }
    int failed = dropped(PyObject_CallNoArgs(close));
    Py_DECREF(close);
    return failed < 0 ? -1 : 1;
}

/* discard(): an attempt that is not answered: its iterable is closed, an Exception from close() ignored. */
static PyObject *
held_discard(PyObject *op, PyObject *unused)
{
    if (close_result((Held *)op) < 0) {
        if (!PyErr_ExceptionMatches(PyExc_Exception)) {
            return NULL;
        }
        PyErr_Clear();
    }
    Py_RETURN_NONE;
}

/* close(): the server is done with the body. */
static PyObject *
held_close(PyObject *op, PyObject *unused)
{
    return close_result((Held *)op) < 0 ? NULL : Py_NewRef(Py_None);
}

/* commit(start_response, extra): the server's start_response is called with the
 * held status and headers (plus the header `extra` when it is not None), the held
 * writes go out; returns the body: the application's own iterable when nothing was
 * read ahead, else this object, which hands out the chunks read ahead and then the rest. */
static PyObject *
held_commit(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    Held *self = (Held *)op;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "commit(start_response, extra)");
        return NULL;
    }
    PyObject *headers = self->headers != NULL ? Py_NewRef(self->headers) : PyList_New(0);
    if (headers == NULL) {
        return NULL;
    }
    if (args[1] != Py_None) {
        PyObject *more = PySequence_List(headers);
        Py_SETREF(headers, more);
        if (headers == NULL || PyList_Append(headers, args[1]) < 0) {
            Py_XDECREF(headers);
            return NULL;
        }
    }
    PyObject *call[2] = {self->status, headers};
    PyObject *write = PyObject_Vectorcall(args[0], call, 2, NULL);
    Py_DECREF(headers);
    if (write == NULL) {
        return NULL;
    }
    Py_XSETREF(self->server_write, write);
    if (self->written != NULL) {
        PyObject *written = self->written;
        self->written = NULL;
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(written); i++) {
            if (dropped(PyObject_CallOneArg(write, PyList_GET_ITEM(written, i))) < 0) {
                Py_DECREF(written);
                return NULL;
            }
        }
        Py_DECREF(written);
    }
    if (self->rest == NULL && (self->chunks == NULL || PyList_GET_SIZE(self->chunks) == 0)) {
        return Py_NewRef(self->result != NULL ? self->result : Py_None);  /* a list, a file wrapper: as returned */
    }
    self->next = 0;
    return Py_NewRef(op);
}

static PyObject *
held_iter(PyObject *op)
{
    return Py_NewRef(op);
}

static PyObject *
held_iternext(PyObject *op)
{
    Held *self = (Held *)op;
    if (self->chunks != NULL) {
        if (self->next < PyList_GET_SIZE(self->chunks)) {
            return Py_NewRef(PyList_GET_ITEM(self->chunks, self->next++));
        }
        Py_CLEAR(self->chunks);
    }
    if (self->rest == NULL) {
        return NULL;
    }
    return PyIter_Next(self->rest);
}

static PyMethodDef held_methods[] = {
    {"run", (PyCFunction)(void (*)(void))held_run, METH_FASTCALL,
     "run(app, environ): call the application with this object as start_response; read ahead to the first non-empty chunk."},
    {"commit", (PyCFunction)(void (*)(void))held_commit, METH_FASTCALL,
     "commit(start_response, extra): send the held response's head to the server; returns the body iterable."},
    {"discard", held_discard, METH_NOARGS, "discard(): close an attempt's iterable that is not answered."},
    {"close", held_close, METH_NOARGS, "close(): close the application's iterable (the server calls it)."},
    {"write", held_write, METH_O, "write(data): the WSGI write callable."},
    {NULL},
};

static PyMemberDef held_members[] = {
    {"status", T_OBJECT, offsetof(Held, status), READONLY, "the status the application gave (\"\" before)"},
    {"headers", T_OBJECT, offsetof(Held, headers), READONLY, "the headers the application gave"},
    {"result", T_OBJECT, offsetof(Held, result), READONLY, "the application's iterable"},
    {NULL},
};

static PyTypeObject HeldType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pyward._native._pyward.Held",
    .tp_basicsize = sizeof(Held),
    .tp_dealloc = (destructor)held_dealloc,
    .tp_vectorcall_offset = offsetof(Held, vectorcall),
    .tp_call = held_call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "A WSGI response held until it is committed (integrations/wsgi.py).",
    .tp_traverse = (traverseproc)held_traverse,
    .tp_clear = (inquiry)held_clear,
    .tp_iter = held_iter,
    .tp_iternext = held_iternext,
    .tp_methods = held_methods,
    .tp_members = held_members,
    .tp_new = held_new,
    .tp_vectorcall = held_vector_new,
};

/* ResponseBuffer: the handler's wfile while it runs (httpserver.py's _ResponseBuffer in Python). */

typedef struct {
    PyObject_HEAD
    PyObject *real;    /* the handler's own wfile */
    PyObject *chunks;  /* what was written and not sent: a list */
    Py_ssize_t size;   /* bytes written before the commit */
    Py_ssize_t limit;  /* more than this is sent as it is written */
    char sent;         /* part of the response reached the client */
    PyObject *rfile;   /* the handler's own rfile, put back after the request */
    PyObject *body;    /* the request body's recorder, or None */
    PyObject *rule;    /* the request's serving.Replay */
} Buffer;

static PyObject *
buffer_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *real;
    Py_ssize_t limit;
    static char *names[] = {"real", "limit", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "On:ResponseBuffer", names, &real, &limit)) {
        return NULL;
    }
    Buffer *self = (Buffer *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    if ((self->chunks = PyList_New(0)) == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->real = Py_NewRef(real);
    self->limit = limit;
    self->rfile = Py_NewRef(Py_None);
    self->body = Py_NewRef(Py_None);
    self->rule = Py_NewRef(Py_None);
    return (PyObject *)self;
}

static int
buffer_traverse(Buffer *self, visitproc visit, void *arg)
{
    Py_VISIT(self->real);
    Py_VISIT(self->chunks);
    Py_VISIT(self->rfile);
    Py_VISIT(self->body);
    Py_VISIT(self->rule);
    return 0;
}

static int
buffer_clear(Buffer *self)
{
    Py_CLEAR(self->real);
    Py_CLEAR(self->chunks);
    Py_CLEAR(self->rfile);
    Py_CLEAR(self->body);
    Py_CLEAR(self->rule);
    return 0;
}

static void
buffer_dealloc(Buffer *self)
{
    PyObject_GC_UnTrack(self);
    buffer_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
buffer_commit(PyObject *op, PyObject *unused)
{
    Buffer *self = (Buffer *)op;
    if (self->chunks == NULL || PyList_GET_SIZE(self->chunks) == 0) {
        Py_RETURN_NONE;
    }
    self->sent = 1;
    PyObject *data = PyList_GET_SIZE(self->chunks) == 1 ? Py_NewRef(PyList_GET_ITEM(self->chunks, 0))
                                                        : PyObject_CallMethodOneArg(s_empty_bytes, s_join, self->chunks);
    if (data == NULL) {
        return NULL;
    }
    int failed = dropped(PyObject_CallMethodOneArg(self->real, s_write, data));
    Py_DECREF(data);
    if (failed < 0 || PyList_SetSlice(self->chunks, 0, PY_SSIZE_T_MAX, NULL) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
buffer_write(PyObject *op, PyObject *data)
{
    Buffer *self = (Buffer *)op;
    if (self->sent) {
        return PyObject_CallMethodOneArg(self->real, s_write, data);
    }
    PyObject *copy = PyBytes_CheckExact(data) ? Py_NewRef(data) : PyBytes_FromObject(data);
    if (copy == NULL) {
        return NULL;
    }
    Py_ssize_t n = PyBytes_GET_SIZE(copy);
    int failed = PyList_Append(self->chunks, copy);
    Py_DECREF(copy);
    if (failed < 0) {
        return NULL;
    }
    self->size += n;
    if (self->size > self->limit && dropped(buffer_commit(op, NULL)) < 0) {
        return NULL;
    }
    return PyLong_FromSsize_t(n);
}

static PyObject *
buffer_flush(PyObject *op, PyObject *unused)
{
    if (dropped(buffer_commit(op, NULL)) < 0) {
        return NULL;
    }
    return PyObject_CallMethodNoArgs(((Buffer *)op)->real, s_flush);
}

static PyObject *
buffer_discard(PyObject *op, PyObject *unused)
{
    Buffer *self = (Buffer *)op;
    if (PyList_SetSlice(self->chunks, 0, PY_SSIZE_T_MAX, NULL) < 0) {
        return NULL;
    }
    self->size = 0;
    Py_RETURN_NONE;
}

/* Attributes of its own, else the real wfile's (closed, fileno...). */
static PyObject *
buffer_getattro(PyObject *op, PyObject *name)
{
    PyObject *found = PyObject_GenericGetAttr(op, name);
    if (found != NULL || !PyErr_ExceptionMatches(PyExc_AttributeError)) {
        return found;
    }
    PyErr_Clear();
    return PyObject_GetAttr(((Buffer *)op)->real, name);
}

static PyMethodDef buffer_methods[] = {
    {"write", buffer_write, METH_O, "write(data): held until the commit, unless part of the response was sent."},
    {"commit", buffer_commit, METH_NOARGS, "commit(): send what is held."},
    {"flush", buffer_flush, METH_NOARGS, "flush(): send what is held and flush the real wfile."},
    {"discard", buffer_discard, METH_NOARGS, "discard(): drop what is held (a replay writes its own)."},
    {NULL},
};

static PyMemberDef buffer_members[] = {
    {"real", T_OBJECT, offsetof(Buffer, real), READONLY, "the handler's own wfile"},
    {"sent", T_BOOL, offsetof(Buffer, sent), READONLY, "whether part of the response reached the client"},
    {"rfile", T_OBJECT, offsetof(Buffer, rfile), 0, "the handler's own rfile"},
    {"body", T_OBJECT, offsetof(Buffer, body), 0, "the request body's recorder, or None"},
    {"rule", T_OBJECT, offsetof(Buffer, rule), 0, "the request's replay rule"},
    {NULL},
};

static PyTypeObject BufferType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pyward._native._pyward.ResponseBuffer",
    .tp_basicsize = sizeof(Buffer),
    .tp_dealloc = (destructor)buffer_dealloc,
    .tp_getattro = buffer_getattro,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "ResponseBuffer(real, limit): http.server's wfile while a handler runs (integrations/httpserver.py).",
    .tp_traverse = (traverseproc)buffer_traverse,
    .tp_clear = (inquiry)buffer_clear,
    .tp_methods = buffer_methods,
    .tp_members = buffer_members,
    .tp_new = buffer_new,
};

int
pw_serving_exec(PyObject *module)
{
    if ((s_file_wrapper = PyUnicode_InternFromString("wsgi.file_wrapper")) == NULL
        || (s_close = PyUnicode_InternFromString("close")) == NULL
        || (s_empty = PyUnicode_InternFromString("")) == NULL || (s_empty_bytes = PyBytes_FromString("")) == NULL
        || (s_write = PyUnicode_InternFromString("write")) == NULL
        || (s_flush = PyUnicode_InternFromString("flush")) == NULL
        || (s_join = PyUnicode_InternFromString("join")) == NULL
        || PyType_Ready(&HeldType) < 0 || PyType_Ready(&BufferType) < 0) {
        return -1;
    }
    if (PyModule_AddObjectRef(module, "Held", (PyObject *)&HeldType) < 0) {
        return -1;
    }
    return PyModule_AddObjectRef(module, "ResponseBuffer", (PyObject *)&BufferType);
}
