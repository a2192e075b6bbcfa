/* pyward._native._pyward: module definition; engines contribute methods. */
#include "pyward.h"

static PyMethodDef *method_tables[] = {pw_audit_methods, pw_sandbox_methods, pw_tamper_methods, pw_monitor_methods,
                                      pw_net_methods, pw_landlock_methods, pw_reach_methods, pw_script_methods,
                                      pw_shield_methods, NULL};

static int
pw_exec(PyObject *module)
{
    for (PyMethodDef **table = method_tables; *table != NULL; table++) {
        if (PyModule_AddFunctions(module, *table) < 0) {
            return -1;
        }
    }
    if (PyModule_AddIntConstant(module, "ABI", 1) < 0) {
        return -1;
    }
    if (pw_guards_exec(module) < 0 || pw_reach_exec(module) < 0 || pw_shield_exec(module) < 0
        || pw_boundary_exec(module) < 0) {
        return -1;
    }
    return pw_audit_exec(module);
}

static PyModuleDef_Slot pw_slots[] = {
    {Py_mod_exec, pw_exec},
    {0, NULL},
};

static struct PyModuleDef pw_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "pyward._native._pyward",
    .m_doc = "pyward's native core: audit hook filtering in C.",
    .m_size = 0,
    .m_slots = pw_slots,
};

PyMODINIT_FUNC
PyInit__pyward(void)
{
    return PyModuleDef_Init(&pw_module);
}
