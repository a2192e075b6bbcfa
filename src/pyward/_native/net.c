/* Name resolution for the sandbox's network rules, with no audit event.
 *
 * A connect to a name is resolved by CPython in C after the audit event, so the
 * sandbox resolves it too to judge the address the connect reaches; and a rule
 * naming a host judges the addresses it resolves to.  Through the socket module
 * that lookup would raise an audit event, and any audit hook the program added
 * would run in the middle of a decision: this does not.
 */
#include "pyward.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

/* resolve(host, family) -> list[str]: the addresses getaddrinfo(3) gives, in its order
 * (CPython connects to the first), as inet_ntop text; [] when the name does not resolve. */
static PyObject *
resolve(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyUnicode_Check(args[0]) || !PyLong_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "resolve(host: str, family: int)");
        return NULL;
    }
    PyObject *out = PyList_New(0);
    if (out == NULL) {
        return NULL;
    }
    if (!PyUnicode_IS_ASCII(args[0])) {
        return out;  /* CPython encodes such names with IDNA first: judged by the name alone */
    }
    const char *host = PyUnicode_AsUTF8(args[0]);
    long family = PyLong_AsLong(args[1]);
    if (host == NULL || (family == -1 && PyErr_Occurred())) {
        Py_DECREF(out);
        return NULL;
    }
    struct addrinfo hints, *found = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = (int)family;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = getaddrinfo(host, NULL, &hints, &found);
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        return out;
    }
    for (struct addrinfo *entry = found; entry != NULL; entry = entry->ai_next) {
        char text[INET6_ADDRSTRLEN];
        const void *where = NULL;
        if (entry->ai_family == AF_INET) {
            where = &((struct sockaddr_in *)entry->ai_addr)->sin_addr;
        }
        else if (entry->ai_family == AF_INET6) {
            where = &((struct sockaddr_in6 *)entry->ai_addr)->sin6_addr;
        }
        if (where == NULL || inet_ntop(entry->ai_family, where, text, sizeof(text)) == NULL) {
            continue;
        }
        PyObject *item = PyUnicode_FromString(text);
        if (item == NULL || PyList_Append(out, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(out);
            freeaddrinfo(found);
            return NULL;
        }
        Py_DECREF(item);
    }
    freeaddrinfo(found);
    return out;
}

PyMethodDef pw_net_methods[] = {
    {"resolve", (PyCFunction)(void (*)(void))resolve, METH_FASTCALL,
     "resolve(host, family) -> list[str]: getaddrinfo(3) without an audit event."},
    {NULL, NULL, 0, NULL},
};
