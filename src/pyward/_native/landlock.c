/* The kernel wall: Landlock rulesets made from lists the sandbox compiled in Python.
 *
 * Three calls: the ABI version the kernel offers (0: none), and restricting the
 * calling thread's process for good.  No policy logic here: sandbox/kernel.py
 * decides what each path and port is granted; this file only speaks the syscalls,
 * which no stdlib module exposes. */
#include "pyward.h"

#ifdef __linux__
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef __NR_landlock_create_ruleset
#define __NR_landlock_create_ruleset 444
#endif
#ifndef __NR_landlock_add_rule
#define __NR_landlock_add_rule 445
#endif
#ifndef __NR_landlock_restrict_self
#define __NR_landlock_restrict_self 446
#endif
#ifndef PR_SET_NO_NEW_PRIVS
#define PR_SET_NO_NEW_PRIVS 38
#endif

/* The uapi structures, spelled out so that building needs no recent kernel headers. */
struct pw_ruleset_attr {
    uint64_t handled_access_fs;
    uint64_t handled_access_net;
    uint64_t scoped;  /* ABI 6 */
};
struct pw_path_beneath {
    uint64_t allowed_access;
    int32_t parent_fd;
} __attribute__((packed));
struct pw_net_port {
    uint64_t allowed_access;
    uint64_t port;
};
#define PW_CREATE_RULESET_VERSION (1U << 0)
#define PW_RULE_PATH_BENEATH 1
#define PW_RULE_NET_PORT 2

static long
pw_abi(void)
{
    long abi = syscall(__NR_landlock_create_ruleset, NULL, 0, PW_CREATE_RULESET_VERSION);
    return abi < 0 ? 0 : abi;
}

/* landlock_abi() -> int: the Landlock ABI version, 0 when the kernel has none (or it is disabled). */
static PyObject *
pw_landlock_abi(PyObject *self, PyObject *unused)
{
    return PyLong_FromLong(pw_abi());
}

/* landlock_restrict(handled_fs, handled_net, paths, ports, scoped=0) -> list of paths skipped
 *
 * paths: [(path, access), ...], ports: [(port, access), ...]; scoped: what the
 * process may not reach outside its domain (ABI 6: signals).  A path that cannot
 * be opened (gone since it was listed) is skipped and returned; every other
 * failure raises OSError and leaves the process unrestricted. */
static PyObject *
pw_landlock_restrict(PyObject *self, PyObject *args)
{
    unsigned long long handled_fs, handled_net, scoped = 0;
    PyObject *paths, *ports;
    if (!PyArg_ParseTuple(args, "KKO!O!|K", &handled_fs, &handled_net, &PyList_Type, &paths, &PyList_Type, &ports,
                          &scoped)) {
        return NULL;
    }
    PyObject *skipped = PyList_New(0);
    if (skipped == NULL) {
        return NULL;
    }
    struct pw_ruleset_attr attr = {handled_fs, handled_net, scoped};
    /* the size tells the kernel which fields there are: an older one refuses a larger struct */
    size_t size = scoped ? sizeof(attr) : handled_net ? 2 * sizeof(uint64_t) : sizeof(uint64_t);
    int ruleset = (int)syscall(__NR_landlock_create_ruleset, &attr, size, 0);
    if (ruleset < 0) {
        Py_DECREF(skipped);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(paths); i++) {
        PyObject *path;
        unsigned long long access;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(paths, i), "O&K", PyUnicode_FSConverter, &path, &access)) {
            goto fail;
        }
        int fd = open(PyBytes_AS_STRING(path), O_PATH | O_CLOEXEC);
        if (fd < 0) {
            int failed = PyList_Append(skipped, PyList_GET_ITEM(paths, i));
            Py_DECREF(path);
            if (failed < 0) {
                goto fail;
            }
            continue;
        }
        Py_DECREF(path);
        struct pw_path_beneath rule = {access, fd};
        long rc = syscall(__NR_landlock_add_rule, ruleset, PW_RULE_PATH_BENEATH, &rule, 0);
        int err = errno;
        close(fd);
        if (rc < 0) {
            errno = err;
            PyErr_SetFromErrno(PyExc_OSError);
            goto fail;
        }
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(ports); i++) {
        unsigned long long port, access;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(ports, i), "KK", &port, &access)) {
            goto fail;
        }
        struct pw_net_port rule = {access, port};
        if (syscall(__NR_landlock_add_rule, ruleset, PW_RULE_NET_PORT, &rule, 0) < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            goto fail;
        }
    }
    /* without no_new_privs an unprivileged process may not restrict itself; it also
       keeps a setuid child from shedding the domain */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || syscall(__NR_landlock_restrict_self, ruleset, 0) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        goto fail;
    }
    close(ruleset);
    return skipped;
fail:
    close(ruleset);
    Py_DECREF(skipped);
    return NULL;
}
#else
static PyObject *
pw_landlock_abi(PyObject *self, PyObject *unused)
{
    return PyLong_FromLong(0);
}

static PyObject *
pw_landlock_restrict(PyObject *self, PyObject *args)
{
    PyErr_SetString(PyExc_OSError, "Landlock exists only on Linux");
    return NULL;
}
#endif

PyMethodDef pw_landlock_methods[] = {
    {"landlock_abi", pw_landlock_abi, METH_NOARGS, "The kernel's Landlock ABI version (0: none)."},
    {"landlock_restrict", pw_landlock_restrict, METH_VARARGS,
     "Restrict this process and its descendants to the given Landlock rules, for good."},
    {NULL, NULL, 0, NULL},
};
