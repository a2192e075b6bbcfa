/* The program's source compiled as python compiles a script.
 *
 * `compile_script(source, filename)`: the code object of `source` (bytes, its
 * encoding declared or UTF-8; or str) as `compile(source, filename, "exec",
 * dont_inherit=True)` makes it.  python parses and compiles a script or a -c
 * command in C; the built-in `compile()` first checks whether its source is an
 * ast object, and its first call in a process builds the ast module's classes:
 * 10 to 13 million instructions python never spends to run a script, paid by
 * every guarded program and every Python child.  A source holding a NUL byte
 * is the caller's to give to compile() (a C string would end there). */
#include "pyward.h"

static PyObject *
compile_script(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyUnicode_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "compile_script(source, filename) needs bytes or str and a str");
        return NULL;
    }
    PyCompilerFlags flags = {PyCF_SOURCE_IS_UTF8, PY_MINOR_VERSION};  /* what compile() starts from */
    const char *text;
    Py_ssize_t size;
    if (PyBytes_Check(args[0])) {
        text = PyBytes_AS_STRING(args[0]);  /* the tokenizer reads its coding declaration, as compile() lets it */
        size = PyBytes_GET_SIZE(args[0]);
    }
    else if (PyUnicode_Check(args[0])) {
        text = PyUnicode_AsUTF8AndSize(args[0], &size);
        if (text == NULL) {
            return NULL;
        }
        flags.cf_flags |= PyCF_IGNORE_COOKIE;  /* decoded already: a declaration no longer applies */
    }
    else {
        PyErr_SetString(PyExc_TypeError, "compile_script(source, filename) needs bytes or str and a str");
        return NULL;
    }
    if ((Py_ssize_t)strlen(text) != size) {
        PyErr_SetString(PyExc_ValueError, "compile_script: the source holds a NUL byte");
        return NULL;
    }
    return Py_CompileStringObject(text, args[1], Py_file_input, &flags, -1);
}

PyMethodDef pw_script_methods[] = {
    {"compile_script", (PyCFunction)(void (*)(void))compile_script, METH_FASTCALL,
     "compile_script(source, filename) -> code: compile(source, filename, 'exec', dont_inherit=True) as python "
     "compiles a script (no ast classes built); ValueError for a source holding a NUL byte"},
    {NULL, NULL, 0, NULL},
};
