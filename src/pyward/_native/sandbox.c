/* The sandbox's native half.
 *
 * The policy decision is made by one Python callable, `decide(event, args)`,
 * that the sandbox builds with private globals and then hides from the GC.
 * Its verdict comes back here:
 *     None        allow
 *     "message"   deny (an explicit deny rule; nothing can override it)
 *     ("message",) deny because nothing allows it (a user hook may allow it)
 * and the denial is raised here, so the program's traceback never contains a
 * frame of pyward (a frame would lead to the decision function's globals).
 *
 * The program's own callback (install_hook) is composed with that verdict, or
 * runs alone when no policy is installed ("hook-only": nothing is blocked but
 * what the callback blocks).  It may answer "allow"/"deny"/None or raise; a
 * raised exception reaches the audited operation's caller unchanged, as with
 * any PEP 578 hook, and both ways of refusing are journaled through `hook_emit`.
 *
 * Everything kept here (decide, the user hook, guarded originals) is held by
 * C statics or by objects the GC does not track, so walking gc.get_objects()
 * or gc.get_referents() cannot reach and rebind them.
 */
#include "pyward.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

static PyObject *decide_fn;    /* the sandbox's decision callable */
static PyObject *denied_type;  /* pyward.AccessDenied */
static PyObject *import_denied_type;  /* pyward.ImportDenied, for the "import" permission */
static PyObject *user_hook;    /* install_hook() callback, or NULL */
int pw_user_hook_active;       /* user_hook != NULL, for the audit hook's first test */
static int hook_all;           /* the callback sees every event */
static char **hook_prefixes;   /* ... or the events starting with one of these (and its exact names) */
static Py_ssize_t n_hook_prefixes;
static PyObject *hook_emit;    /* emit(kind, event, args, reason): journals the callback's verdicts */
static _Thread_local int in_hook; /* >0 while the callback (or its journaling) runs on this thread */
static int fail_closed;        /* enforce: an internal error denies */
static int subinterpreters;    /* the policy allows subinterpreters */
static _Thread_local int depth; /* >0 while decide runs on this thread */
static PyObject *pending;      /* the decider's queue of events to journal (a list only C and it hold) */
static PyObject *flush_fn;     /* journals the queue: called after a verdict, never inside one */
static _Thread_local int flushing;
#define MAX_NESTED 4           /* verdicts inside a verdict (program code the interpreter ran there) */
static int hook_locked;        /* sandbox_set_hook refuses: for good */
static PyObject *quiet_dirs;   /* the decider's directories whose files open quietly (see quiet_open) */
static PyObject *quiet_paths;  /* path as spelled -> the accesses (1 read, 2 write) quiet_open allowed */
static PyObject *open_event;   /* "open", interned */
static PyObject *last_dir;     /* quiet_open's last directory key: the next path there reuses it (and its hash) */
static Py_ssize_t streak;       /* quiet_open's judgements in a row in last_dir */
static PyObject *quiet_lists;  /* the directory keys listed (see list_dir): once a run each, whatever is emptied */
static ino_t *denied_inos;     /* the inodes of the files deny rules name (hard links to them are judged) */
static Py_ssize_t n_denied_inos;
#define LIST_AFTER 32          /* files of one directory judged in a row before it is listed */
#define LIST_MAX 4096          /* entries a listing reads at most (the rest are judged one by one) */
#define MAX_LISTED 10000       /* directories listed in a run at most */

static int
raise_denied_as(PyObject *type, PyObject *message)
{
    PyObject *exc = PyObject_CallOneArg(type, message);
    if (exc == NULL) {
        return -1;  /* whatever the constructor raised: the operation still fails */
    }
    PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    Py_DECREF(exc);
    return -1;
}

static int
raise_denied(PyObject *message)
{
    return raise_denied_as(denied_type, message);
}

/* "Type: message" of the pending exception, which stays pending. */
static PyObject *
describe_pending(void)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    PyObject *text = NULL;
    if (value != NULL) {
        PyObject *str = PyObject_Str(value);
        if (str != NULL) {
            text = PyUnicode_GET_LENGTH(str) ? PyUnicode_FromFormat("%s: %U", Py_TYPE(value)->tp_name, str)
                                             : PyUnicode_FromString(Py_TYPE(value)->tp_name);
            Py_DECREF(str);
        }
    }
    if (text == NULL) {
        PyErr_Clear();
        text = PyUnicode_FromString("an exception");
    }
    PyErr_Restore(type, value, tb);
    return text;
}

/* "Type: message" of the pending exception, which is cleared. */
static PyObject *
describe_and_clear(void)
{
    PyObject *text = describe_pending();
    PyErr_Clear();
    return text;
}

/* Journal what the callback did (kind "denied" or "allowed"); a pending
 * exception (the callback's own) is kept for the operation's caller. */
static void
journal_hook(const char *kind, PyObject *event, PyObject *args, PyObject *reason)
{
    if (hook_emit == NULL || reason == NULL) {
        return;
    }
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    in_hook++;
    depth++;  /* the journal's own work is pyward's: not the policy's business */
    pw_shield_enter();
    PyObject *res = PyObject_CallFunction(hook_emit, "sOOO", kind, event, args, reason);
    pw_shield_leave();
    if (res == NULL) {
        PyErr_WriteUnraisable(hook_emit);  /* its "sys.unraisablehook" event must not reach the hook either */
    }
    else {
        Py_DECREF(res);
    }
    depth--;
    in_hook--;
    PyErr_Restore(type, value, tb);
}

/* Whether the callback wants this event; `mask` is its audit table entry's (0: none). */
int
pw_hook_wants(const char *event, uint32_t mask)
{
    if (user_hook == NULL || depth > 0 || in_hook > 0) {
        return 0;  /* no callback, pyward's own work, or the callback's own events */
    }
    if (event[0] == 'c' && strcmp(event, "cpython._PySys_ClearAuditHooks") == 0) {
        return 0;  /* the interpreter is torn down: no Python code may run (CPython's own hooks are gone) */
    }
    if (hook_all || (mask & (1u << PW_HOOK_SUBSCRIBER))) {
        return 1;
    }
    for (Py_ssize_t i = 0; i < n_hook_prefixes; i++) {
        if (strncmp(event, hook_prefixes[i], strlen(hook_prefixes[i])) == 0) {
            return 1;
        }
    }
    return 0;
}

static int
hook_wants_object(PyObject *event)
{
    if (!pw_user_hook_active) {
        return 0;
    }
    const char *name = PyUnicode_AsUTF8(event);
    if (name == NULL) {
        PyErr_Clear();
        return 0;
    }
    return pw_hook_wants(name, pw_name_has(name, PW_HOOK_SUBSCRIBER) ? 1u << PW_HOOK_SUBSCRIBER : 0);
}

/* Call the program's callback: -1 it raised (journaled; the exception is
 * pending), 0 no opinion, 1 allow, 2 deny.  Like CPython does for a Python
 * audit hook, tracing and profiling are off while it runs. */
static int
call_hook(PyObject *event, PyObject *args)
{
    PyObject *hook = Py_NewRef(user_hook);
    PyThreadState *ts = PyThreadState_Get();
    in_hook++;
    PyThreadState_EnterTracing(ts);
    PyObject *answer = PyObject_CallFunctionObjArgs(hook, event, args, NULL);
    PyThreadState_LeaveTracing(ts);
    in_hook--;
    Py_DECREF(hook);
    if (answer == NULL) {
        PyObject *why = describe_pending();
        journal_hook("denied", event, args, why);
        Py_XDECREF(why);
        return -1;  /* the program's own exception propagates, unchanged */
    }
    int verdict = 0;
    if (answer == Py_True || (PyUnicode_Check(answer) && PyUnicode_CompareWithASCIIString(answer, "allow") == 0)) {
        verdict = 1;
    }
    else if (answer == Py_False
             || (PyUnicode_Check(answer) && PyUnicode_CompareWithASCIIString(answer, "deny") == 0)) {
        verdict = 2;
    }
    Py_DECREF(answer);
    return verdict;
}

static int
deny_by_hook(PyObject *event, PyObject *args)
{
    PyObject *why = PyUnicode_FromString("it returned \"deny\"");
    journal_hook("denied", event, args, why);
    Py_XDECREF(why);
    PyObject *msg = PyUnicode_FromFormat("%U denied by the hook installed with pyward.sandbox.install_hook()",
                                         event);
    if (msg == NULL) {
        return -1;
    }
    int rc = raise_denied_as(denied_type != NULL ? denied_type : PyExc_PermissionError, msg);
    Py_DECREF(msg);
    return rc;
}

/* An event the policy does not check (or no policy installed): the callback alone decides. */
int
pw_hook_alone(PyObject *event, PyObject *args)
{
    int answer = call_hook(event, args);
    if (answer < 0) {
        return -1;
    }
    return answer == 2 ? deny_by_hook(event, args) : 0;
}

/* The verdict protocol: 0 allowed, -1 with an exception set.  `hooked`: the
 * program's callback wants this event (pw_hook_wants). */
/* Journal what the verdicts queued, outside any verdict: the journal is Python
 * the program can reach, so the events it raises are judged like the program's.
 * The exception a denial set stays pending. */
static void
flush_pending(void)
{
    if (flushing || pending == NULL || flush_fn == NULL || PyList_GET_SIZE(pending) == 0) {
        return;  /* a flush in progress journals what its own events queue */
    }
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    flushing = 1;
    pw_shield_enter();
    PyObject *res = PyObject_CallNoArgs(flush_fn);
    pw_shield_leave();
    flushing = 0;
    if (res == NULL) {
        PyErr_WriteUnraisable(flush_fn);
    }
    else {
        Py_DECREF(res);
    }
    PyErr_Restore(type, value, tb);
}

static int decide_in_window(PyObject *event, PyObject *args, int hooked);

/* The decider's wild_match over an ASCII name: `parts` is a '*' glob split on
 * '*' (parts[0]*parts[1]*...); a part that is not an ASCII str never fits. */
static int
glob_fits(const char *name, Py_ssize_t len, PyObject *parts)
{
    Py_ssize_t n = PyTuple_CheckExact(parts) ? PyTuple_GET_SIZE(parts) : 0;
    for (Py_ssize_t j = 0; j < n; j++) {
        PyObject *part = PyTuple_GET_ITEM(parts, j);
        if (!PyUnicode_CheckExact(part) || !PyUnicode_IS_ASCII(part)) {
            return 0;
        }
    }
    if (n == 0) {
        return 0;
    }
    PyObject *first = PyTuple_GET_ITEM(parts, 0), *last = PyTuple_GET_ITEM(parts, n - 1);
    Py_ssize_t first_len = PyUnicode_GET_LENGTH(first), last_len = PyUnicode_GET_LENGTH(last);
    if (n == 1) {
        return len == first_len && memcmp(name, PyUnicode_DATA(first), len) == 0;
    }
    Py_ssize_t position = first_len, end = len - last_len;
    if (position > end || memcmp(name, PyUnicode_DATA(first), first_len) != 0
        || memcmp(name + end, PyUnicode_DATA(last), last_len) != 0) {
        return 0;
    }
    for (Py_ssize_t j = 1; j < n - 1; j++) {
        PyObject *middle = PyTuple_GET_ITEM(parts, j);
        Py_ssize_t size = PyUnicode_GET_LENGTH(middle);
        const char *found = size == 0 ? name + position
                                      : memmem(name + position, end - position, PyUnicode_DATA(middle), size);
        if (found == NULL) {
            return 0;
        }
        position = (found - name) + size;
    }
    return 1;
}

/* Whether the file name `name` (ASCII, `len` bytes) fits `fits`, a quiet_dirs
 * entry's answer for one access: True every name; a tuple of patterns, each a
 * tuple of the parts of a '*' glob (one part: that exact name); else none. */
static int
name_fits(const char *name, Py_ssize_t len, PyObject *fits)
{
    if (fits == Py_True) {
        return 1;
    }
    if (!PyTuple_CheckExact(fits)) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(fits); i++) {
        if (glob_fits(name, len, PyTuple_GET_ITEM(fits, i))) {
            return 1;
        }
    }
    return 0;
}

static int quiet_file(const char *path, const char *name, Py_ssize_t name_len, long wants, PyObject *entry,
                      int *let_go);

/* quiet_paths[path] = the accesses `bits` (1 read, 2 write) allowed quietly; the table is emptied
 * past 100,000 paths.  Not remembered on an error: the next open of it comes back to be judged. */
static void
remember(PyObject *path, long bits)
{
    if (PyDict_GET_SIZE(quiet_paths) > 100000) {
        PyDict_Clear(quiet_paths);
    }
    PyObject *both = PyLong_FromLong(bits);
    if (both == NULL || PyDict_SetItem(quiet_paths, path, both) < 0) {
        PyErr_Clear();
    }
    Py_XDECREF(both);
}
static void list_dir(PyObject *key, PyObject *entry);

/* The usual open(), allowed here without a Python frame: 1 when the decider
 * would allow it with nothing to journal, 0 when it must judge.  The decider
 * fills `quiet_dirs` (its open_quietly: a directory whose allowance is
 * journaled already and where no deny rule can match a name) keyed by the
 * directory as the program spells it, up to its last '/', mapping to (names
 * quiet to read, names quiet to write); it empties the table whenever names
 * may resolve differently (a rename, a chdir...).  The file itself is judged
 * as the decider does, by one lstat, but of the path as spelled: the very
 * lookup the kernel's open will make next (from the same working directory),
 * no longer than the program's own (a relative path is not walked again from
 * the root).  A symlink, a hard link, a missing file, anything that is not
 * plain ASCII go to the decider.
 * Like the decider's own per-path cache, a path allowed here is remembered
 * (`quiet_paths`, emptied with the directories) and not looked at again. */
static int
quiet_open(PyObject *args)
{
    if (!PyTuple_CheckExact(args) || PyTuple_GET_SIZE(args) != 3 || PyDict_GET_SIZE(quiet_dirs) == 0
        || quiet_paths == NULL) {
        return 0;
    }
    PyObject *path = PyTuple_GET_ITEM(args, 0), *flags_obj = PyTuple_GET_ITEM(args, 2);
    if (!PyUnicode_CheckExact(path) || !PyUnicode_IS_ASCII(path) || !PyLong_CheckExact(flags_obj)) {
        return 0;
    }
    int overflow;
    long flags = PyLong_AsLongAndOverflow(flags_obj, &overflow);
    if (overflow || (flags == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return 0;
    }
    if ((flags == 0 && PyUnicode_Check(PyTuple_GET_ITEM(args, 1)))  /* fopen's mode string: the decider reads it */
        || (flags & O_NOFOLLOW) || ((flags & O_CREAT) && (flags & O_EXCL))) {
        return 0;
    }
    Py_ssize_t len = PyUnicode_GET_LENGTH(path);
    const char *text = (const char *)PyUnicode_DATA(path);  /* ASCII: one byte a character */
    if (len == 0 || len >= PATH_MAX || memchr(text, '\0', len) != NULL) {
        return 0;
    }
    Py_ssize_t cut = len - 1;
    while (cut >= 0 && text[cut] != '/') {
        cut--;
    }
    long wants = ((flags & (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND)) ? 2 : 0) | ((flags & O_WRONLY) ? 0 : 1);
    PyObject *known = PyDict_GetItemWithError(quiet_paths, path);
    long had = known != NULL && PyLong_CheckExact(known) ? PyLong_AsLong(known) : 0;
    if ((had & wants) == wants) {
        return 1;
    }
    if (known == NULL && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    const char *name = text + cut + 1;
    Py_ssize_t name_len = len - cut - 1;
    if (name_len == 0 || (name[0] == '.' && (name_len == 1 || (name_len == 2 && name[1] == '.')))) {
        return 0;
    }
    PyObject *key;
    if (last_dir != NULL && PyUnicode_GET_LENGTH(last_dir) == cut + 1
        && memcmp(PyUnicode_DATA(last_dir), text, cut + 1) == 0) {  /* both ASCII */
        key = Py_NewRef(last_dir);
        streak++;
    }
    else {
        key = PyUnicode_Substring(path, 0, cut + 1);
        if (key == NULL) {
            PyErr_Clear();
            return 0;
        }
        Py_XSETREF(last_dir, Py_NewRef(key));
        streak = 1;
    }
    PyObject *entry = PyDict_GetItemWithError(quiet_dirs, key);
    if (entry == NULL || !PyTuple_CheckExact(entry) || PyTuple_GET_SIZE(entry) != 2) {
        if (PyErr_Occurred()) {
            PyErr_Clear();
        }
        Py_DECREF(key);
        return 0;
    }
    Py_INCREF(entry);  /* the table may drop it while the GIL is let go for the lstat */
    int let_go = 0;
    int verdict = quiet_file(text, name, name_len, wants, entry, &let_go);  /* text: NUL-terminated (compact) */
    if (!let_go || PyDict_GetItemWithError(quiet_dirs, key) == entry) {
        /* remembered only while the directory's entry is the one judged by (the
         * table may have been emptied while the GIL was let go for the lstat) */
        if (verdict) {
            remember(path, had | wants);
        }
        if (streak == LIST_AFTER) {
            list_dir(key, entry);
        }
    }
    if (PyErr_Occurred()) {
        PyErr_Clear();
    }
    Py_DECREF(entry);
    Py_DECREF(key);
    return verdict;
}

/* Whether this thread is the only one of the only interpreter: no one could take
 * the GIL while a quick system call runs, and letting it go and taking it back
 * costs a good part of what the C answer adds to an open (a thread that starts
 * meanwhile waits for the GIL as it would for any C code that keeps it). */
static int
alone(void)
{
    PyInterpreterState *interp = PyInterpreterState_Head();
    if (interp == NULL || PyInterpreterState_Next(interp) != NULL) {
        return 0;
    }
    PyThreadState *head = PyInterpreterState_ThreadHead(interp);
    return head != NULL && PyThreadState_Next(head) == NULL;
}

/* The file `path` (its last component `name`) of the directory `entry` (a
 * quiet_dirs value the caller holds) for the accesses `wants`: 1 quietly allowed;
 * `let_go` set when the GIL was let go (the table may have changed meanwhile). */
static int
quiet_file(const char *path, const char *name, Py_ssize_t name_len, long wants, PyObject *entry, int *let_go)
{
    if (((wants & 2) && !name_fits(name, name_len, PyTuple_GET_ITEM(entry, 1)))
        || ((wants & 1) && !name_fits(name, name_len, PyTuple_GET_ITEM(entry, 0)))) {
        return 0;
    }
    struct stat info;
    int rc;
    int saved = errno;
    if (alone()) {
        rc = lstat(path, &info);
    }
    else {
        *let_go = 1;
        Py_BEGIN_ALLOW_THREADS
        rc = lstat(path, &info);
        Py_END_ALLOW_THREADS
    }
    errno = saved;
    return rc == 0 && !S_ISLNK(info.st_mode) && info.st_nlink <= 1;
}

/* Whether a listing of the directory open as `fd` gives each entry's own inode
 * number, as stat does: the file systems known to (an overlay, a FUSE file
 * system may not; there a hard link to a denied file would pass for another). */
static int
inodes_listed(int fd)
{
    struct statfs info;
    if (fstatfs(fd, &info) != 0) {
        return 0;
    }
    switch ((unsigned long)info.f_type) {
    case 0xEF53UL:      /* ext2, ext3, ext4 */
    case 0x58465342UL:  /* xfs */
    case 0x9123683EUL:  /* btrfs */
    case 0x01021994UL:  /* tmpfs */
        return 1;
    default:
        return 0;
    }
}

/* The directory `key` (its quiet_dirs entry `entry`), whose files the program
 * goes through (LIST_AFTER judged in a row, no other directory between), listed
 * once: its plain files are remembered in quiet_paths as if each had been
 * opened, so the rest cost the program one getdents rather than an lstat each.
 * The listing tells what the lstat tells: the entry's type (DT_REG: not a
 * symlink) and its inode (not one a deny rule names; any other hard link is
 * judged as its name, as the decider judges it); a name it cannot tell
 * (DT_UNKNOWN, not ASCII) is left to the lstat.  What it remembers is trusted
 * as the per-path cache is: until the tables are emptied (the program renames,
 * links, makes a symlink, starts a child, changes directory...), and a program
 * that could plant a link there unseen could as well open the file first and
 * have the cache trust the name.  The bet's worst case is a program that goes
 * through a few dozen files of a directory far larger: the listing stops at
 * LIST_MAX entries (~2 ms on ext4, which reads an indexed directory at ~0.5 µs
 * an entry), and a directory is listed once a run, however often the tables
 * are emptied (a listing is not paid again for each child the program starts).
 * The GIL is kept for it. */
static void
list_dir(PyObject *key, PyObject *entry)
{
    if (quiet_lists == NULL && (quiet_lists = PyDict_New()) == NULL) {
        PyErr_Clear();
        return;
    }
    int listed = PyDict_Contains(quiet_lists, key);
    if (listed != 0 || PyDict_GET_SIZE(quiet_lists) >= MAX_LISTED || PyDict_SetItem(quiet_lists, key, Py_None) < 0) {
        PyErr_Clear();
        return;
    }
    Py_ssize_t dir_len = PyUnicode_GET_LENGTH(key);
    const char *dir = (const char *)PyUnicode_DATA(key);  /* ASCII, '/'-terminated or empty */
    int saved = errno;
    DIR *listing = opendir(dir_len ? dir : ".");
    if (listing == NULL) {
        errno = saved;
        return;
    }
    if (n_denied_inos > 0 && !inodes_listed(dirfd(listing))) {
        closedir(listing);
        errno = saved;
        return;
    }
    PyObject *read_fits = PyTuple_GET_ITEM(entry, 0), *write_fits = PyTuple_GET_ITEM(entry, 1);
    struct dirent *found;
    for (int n = 0; n < LIST_MAX && (found = readdir(listing)) != NULL; n++) {
        if (found->d_type != DT_REG) {
            continue;
        }
        const char *name = found->d_name;
        Py_ssize_t name_len = (Py_ssize_t)strlen(name);
        int ascii = 1;
        for (Py_ssize_t i = 0; i < name_len && ascii; i++) {
            ascii = (unsigned char)name[i] < 128;
        }
        int denied = 0;
        for (Py_ssize_t i = 0; i < n_denied_inos && !denied; i++) {
            denied = denied_inos[i] == found->d_ino;
        }
        long bits = ascii && !denied
                    ? (name_fits(name, name_len, read_fits) ? 1 : 0) | (name_fits(name, name_len, write_fits) ? 2 : 0)
                    : 0;
        if (bits == 0 || dir_len + name_len >= PATH_MAX) {
            continue;
        }
        PyObject *path = PyUnicode_New(dir_len + name_len, 127);
        if (path == NULL) {
            PyErr_Clear();
            break;
        }
        memcpy(PyUnicode_DATA(path), dir, dir_len);
        memcpy((char *)PyUnicode_DATA(path) + dir_len, name, name_len);
        remember(path, bits);  /* (what an open of it allowed already is among these: it fitted the same names) */
        Py_DECREF(path);
    }
    closedir(listing);
    errno = saved;
}

int
pw_sandbox_decide_for(PyObject *event, PyObject *args, int hooked)
{
    if (decide_fn == NULL) {
        return hooked ? pw_hook_alone(event, args) : 0;  /* no policy: hook-only, or nothing installed */
    }
    if (event == open_event && !hooked && depth == 0 && quiet_dirs != NULL && quiet_open(args)) {
        return 0;
    }
    if (depth == 0 && PyErr_CheckSignals() < 0) {
        /* signal handlers already due run now, before the window, judged like any code */
        return -1;
    }
    int rc = decide_in_window(event, args, depth > 0 ? 0 : hooked);
    if (depth == 0) {
        flush_pending();
    }
    return rc;
}

/* One verdict.  Nothing in it calls the program's code, but the interpreter
 * may: a finalizer of cyclic garbage, a signal handler.  An event that code
 * raises here is judged like any other (it is not pyward's own work), never
 * let through because a verdict is in progress. */
static int
decide_in_window(PyObject *event, PyObject *args, int hooked)
{
    if (depth >= MAX_NESTED) {
        PyObject *msg = PyUnicode_FromFormat("%U denied by pyward's sandbox: raised inside %d nested checks",
                                             event, depth);
        int rc = msg != NULL ? raise_denied(msg) : -1;
        Py_XDECREF(msg);
        return rc;
    }
    depth++;
    pw_shield_enter();
    PyObject *verdict = PyObject_CallFunctionObjArgs(decide_fn, event, args, NULL);
    pw_shield_leave();
    depth--;
    if (verdict == NULL && !PyErr_ExceptionMatches(PyExc_Exception)) {
        /* KeyboardInterrupt & co. from a signal handler: the program's, passed on; its
         * traceback would lead into the decider's frames, so it goes without one */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        Py_XDECREF(tb);
        if (value != NULL) {
            PyException_SetTraceback(value, Py_None);
        }
        PyErr_Restore(type, value, NULL);
        return -1;
    }
    if (verdict == NULL) {
        PyObject *why = describe_and_clear();
        int rc = 0;
        if (fail_closed) {
            PyObject *msg = PyUnicode_FromFormat(
                "pyward sandbox: internal error while checking %U (%U); denied (the sandbox fails closed)",
                event, why);
            rc = msg != NULL ? raise_denied(msg) : -1;
            Py_XDECREF(msg);
        }
        else {
            PySys_FormatStderr("[pyward][error] sandbox: internal error while checking %U (%U); "
                               "watch mode lets the operation through\n", event, why);
        }
        Py_DECREF(why);
        return rc;
    }
    int kind;  /* 0 allow, 1 default deny, 2 explicit deny */
    PyObject *message = NULL;
    PyObject *type = denied_type;
    if (PyTuple_Check(verdict) && PyTuple_GET_SIZE(verdict) == 2 && import_denied_type != NULL) {
        /* (message, explicit): an import the policy refuses, raised as an ImportError */
        PyObject *inner = PyTuple_GET_ITEM(verdict, 1) == Py_True ? PyTuple_GET_ITEM(verdict, 0)
                                                                   : PyTuple_GetSlice(verdict, 0, 1);
        if (inner == NULL) {
            Py_DECREF(verdict);
            return -1;
        }
        if (PyTuple_Check(inner)) {
            Py_DECREF(verdict);
            verdict = inner;  /* a fresh 1-tuple we own */
        }
        else {
            Py_INCREF(inner);
            Py_DECREF(verdict);
            verdict = inner;
        }
        type = import_denied_type;
    }
    if (verdict == Py_None) {
        kind = 0;
    }
    else if (PyUnicode_Check(verdict)) {
        kind = 2;
        message = verdict;
    }
    else if (PyTuple_Check(verdict) && PyTuple_GET_SIZE(verdict) == 1
             && PyUnicode_Check(PyTuple_GET_ITEM(verdict, 0))) {
        kind = 1;
        message = PyTuple_GET_ITEM(verdict, 0);
    }
    else {
        kind = 2;
        message = NULL;
    }
    Py_INCREF(verdict);  /* keeps message alive across the user hook */
    Py_DECREF(verdict);
    if (hooked && kind != 2) {  /* an explicit deny stops the event first, like an earlier hook that raises */
        int answer = call_hook(event, args);
        if (answer < 0) {
            Py_DECREF(verdict);
            return -1;  /* the program's own callback raised: its exception propagates */
        }
        if (kind == 1 && answer == 1) {
            kind = 0;
            PyObject *why = PyUnicode_FromString("it returned \"allow\" for what the policy does not allow");
            journal_hook("allowed", event, args, why);
            Py_XDECREF(why);
        }
        else if (kind == 0 && answer == 2) {
            kind = 3;
        }
    }
    int rc = 0;
    if (kind == 3) {
        rc = deny_by_hook(event, args);
    }
    else if (kind != 0) {
        if (message == NULL) {
            PyObject *msg = PyUnicode_FromFormat("%U denied (invalid sandbox verdict)", event);
            rc = msg != NULL ? raise_denied(msg) : -1;
            Py_XDECREF(msg);
        }
        else {
            rc = raise_denied_as(type, message);
        }
    }
    Py_DECREF(verdict);
    return rc;
}

int
pw_sandbox_decide(PyObject *event, PyObject *args)
{
    return pw_sandbox_decide_for(event, args, hook_wants_object(event));
}

/* A sandboxed event inside a subinterpreter: the policy's Python code lives
 * in the main interpreter and cannot run here.  Under enforce, everything is
 * denied unless the policy allows subinterpreters (which then means: all). */
int
pw_sandbox_foreign(const char *event)
{
    if (decide_fn == NULL || !fail_closed || subinterpreters) {
        return 0;
    }
    PyErr_Format(PyExc_PermissionError,
                 "%s denied by pyward's sandbox: the policy cannot be checked inside a subinterpreter; "
                 "allow them with --allow-ffi=subinterpreters (which gives them everything)", event);
    return -1;
}

static PyObject *
sandbox_install(PyObject *module, PyObject *args)
{
    PyObject *names, *decide, *denied, *import_denied = NULL, *emit = NULL, *queue = NULL, *flush = NULL;
    int closed, subinterp = 0;
    if (!PyArg_ParseTuple(args, "OOOp|pOOOO:sandbox_install", &names, &decide, &denied, &closed, &subinterp,
                          &import_denied, &emit, &queue, &flush)) {
        return NULL;
    }
    if ((queue != NULL && queue != Py_None && !PyList_CheckExact(queue))
        || (flush != NULL && flush != Py_None && !PyCallable_Check(flush))) {
        PyErr_SetString(PyExc_TypeError, "sandbox_install: the queue must be a list and flush callable");
        return NULL;
    }
    if (import_denied != NULL && !PyType_Check(import_denied)) {
        PyErr_SetString(PyExc_TypeError, "import_denied must be an exception type");
        return NULL;
    }
    if (decide_fn != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the sandbox is already installed; it cannot be replaced");
        return NULL;
    }
    if (!PyCallable_Check(decide) || !PyType_Check(denied)
        || !PyType_IsSubtype((PyTypeObject *)denied, (PyTypeObject *)PyExc_BaseException)) {
        PyErr_SetString(PyExc_TypeError, "sandbox_install(names, decide, denied_type, fail_closed)");
        return NULL;
    }
    if (pw_register_hook() < 0 || pw_add_names(names, PW_SANDBOX_SUBSCRIBER) < 0) {
        return NULL;
    }
    decide_fn = Py_NewRef(decide);
    Py_XSETREF(denied_type, Py_NewRef(denied));
    if (emit != NULL && emit != Py_None) {
        Py_XSETREF(hook_emit, Py_NewRef(emit));  /* the callback's verdicts go to the sandbox's journal */
    }
    import_denied_type = import_denied != NULL ? Py_NewRef(import_denied) : NULL;
    if (queue != NULL && queue != Py_None && flush != NULL && flush != Py_None) {
        pending = Py_NewRef(queue);
        flush_fn = Py_NewRef(flush);
    }
    fail_closed = closed;
    subinterpreters = subinterp;
    Py_RETURN_NONE;
}

static int
refuse_if_locked(void)
{
    if (!hook_locked) {
        return 0;
    }
    PyObject *msg = PyUnicode_FromString(
        "the sandbox's callback is locked (under pyward run, or after pyward.sandbox.lock_hook()): "
        "the program cannot change how the policy is applied");
    if (msg != NULL) {
        raise_denied_as(denied_type != NULL ? denied_type : PyExc_PermissionError, msg);
        Py_DECREF(msg);
    }
    return -1;
}

static void
free_prefixes(void)
{
    for (Py_ssize_t i = 0; i < n_hook_prefixes; i++) {
        PyMem_RawFree(hook_prefixes[i]);
    }
    PyMem_RawFree(hook_prefixes);
    hook_prefixes = NULL;
    n_hook_prefixes = 0;
}

/* sandbox_set_hook(hook, names=None, prefixes=None): both None: every event. */
static PyObject *
sandbox_set_hook(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (refuse_if_locked() < 0) {
        return NULL;
    }
    if (nargs < 1 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "sandbox_set_hook(hook, names=None, prefixes=None)");
        return NULL;
    }
    PyObject *hook = args[0];
    PyObject *names = nargs > 1 ? args[1] : Py_None, *prefixes = nargs > 2 ? args[2] : Py_None;
    if (hook != Py_None && !PyCallable_Check(hook)) {
        PyErr_SetString(PyExc_TypeError, "the hook must be callable or None");
        return NULL;
    }
    /* off first: a failure below leaves no callback rather than a half-set one */
    PyObject *old = user_hook;
    user_hook = NULL;
    pw_user_hook_active = 0;
    Py_XDECREF(old);
    pw_clear_subscriber(PW_HOOK_SUBSCRIBER);
    free_prefixes();
    hook_all = 0;
    if (hook == Py_None) {
        Py_RETURN_NONE;
    }
    if (pw_register_hook() < 0) {
        return NULL;
    }
    if (names != Py_None && pw_add_names(names, PW_HOOK_SUBSCRIBER) < 0) {
        pw_clear_subscriber(PW_HOOK_SUBSCRIBER);
        return NULL;
    }
    if (prefixes != Py_None) {
        PyObject *seq = PySequence_Fast(prefixes, "prefixes must be an iterable of str");
        if (seq == NULL) {
            return NULL;
        }
        Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
        hook_prefixes = PyMem_RawCalloc(n ? n : 1, sizeof(char *));
        if (hook_prefixes == NULL) {
            Py_DECREF(seq);
            return PyErr_NoMemory();
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *prefix = PySequence_Fast_GET_ITEM(seq, i);
            const char *text = PyUnicode_Check(prefix) ? PyUnicode_AsUTF8(prefix) : NULL;
            char *copy = text != NULL ? PyMem_RawMalloc(strlen(text) + 1) : NULL;
            if (copy == NULL) {
                if (!PyErr_Occurred()) {
                    if (text == NULL) {
                        PyErr_SetString(PyExc_TypeError, "event prefixes must be str");
                    }
                    else {
                        PyErr_NoMemory();
                    }
                }
                Py_DECREF(seq);
                free_prefixes();
                pw_clear_subscriber(PW_HOOK_SUBSCRIBER);
                return NULL;
            }
            strcpy(copy, text);
            hook_prefixes[n_hook_prefixes++] = copy;
        }
        Py_DECREF(seq);
    }
    hook_all = names == Py_None && prefixes == Py_None;
    user_hook = Py_NewRef(hook);
    pw_user_hook_active = 1;
    Py_RETURN_NONE;
}

/* Where the callback's verdicts are journaled when no sandbox installed one:
 * set once (the sandbox's own install replaces it); refused when locked. */
static PyObject *
sandbox_hook_journal(PyObject *module, PyObject *args)
{
    PyObject *emit, *denied;
    if (!PyArg_ParseTuple(args, "OO:sandbox_hook_journal", &emit, &denied)) {
        return NULL;
    }
    if (hook_emit != NULL) {
        Py_RETURN_FALSE;
    }
    if (refuse_if_locked() < 0) {
        return NULL;
    }
    if (!PyCallable_Check(emit) || !PyType_Check(denied)
        || !PyType_IsSubtype((PyTypeObject *)denied, (PyTypeObject *)PyExc_BaseException)) {
        PyErr_SetString(PyExc_TypeError, "sandbox_hook_journal(emit, denied_type)");
        return NULL;
    }
    hook_emit = Py_NewRef(emit);
    if (denied_type == NULL) {
        denied_type = Py_NewRef(denied);
    }
    Py_RETURN_TRUE;
}

static PyObject *
sandbox_hook_state(PyObject *module, PyObject *unused)
{
    return Py_BuildValue("{s:O,s:O,s:O,s:O}", "hook", user_hook != NULL ? user_hook : Py_None,
                         "journaled", hook_emit != NULL ? Py_True : Py_False,
                         "policy", decide_fn != NULL ? Py_True : Py_False,
                         "locked", hook_locked ? Py_True : Py_False);
}

static PyObject *
sandbox_lock_hook(PyObject *module, PyObject *unused)
{
    hook_locked = 1;
    Py_RETURN_NONE;
}

static PyObject *
sandbox_installed(PyObject *module, PyObject *unused)
{
    return PyBool_FromLong(decide_fn != NULL);
}

/* A synthetic sandbox event (for operations with no usable audit event). */
static PyObject *
sandbox_check(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyUnicode_Check(args[0]) || !PyTuple_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "sandbox_check(event: str, args: tuple)");
        return NULL;
    }
    if (pw_sandbox_decide(args[0], args[1]) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* --- Guard: a callable that asks the sandbox, then calls the original ----- */

typedef struct {
    PyObject_HEAD
    PyObject *event;      /* str */
    PyObject *original;   /* the wrapped callable, reachable from nowhere else */
    PyObject *transform;  /* optional: transform(args, kwargs) -> (args, kwargs) */
    PyObject *after;      /* optional: after(args, kwargs, result) -> result */
    PyObject *name;       /* for repr */
    PyObject *paths;      /* optional: ((position or None, keyword or None[, kind]), ...) of arguments to convert */
} Guard;

static void
guard_dealloc(Guard *self)
{
    Py_XDECREF(self->event);
    Py_XDECREF(self->original);
    Py_XDECREF(self->transform);
    Py_XDECREF(self->after);
    Py_XDECREF(self->name);
    Py_XDECREF(self->paths);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* A str or bytes as exactly that type (a subclass's data copied, a path-like's
 * __fspath__ called, here, from C): a new reference, or NULL with python's TypeError. */
static PyObject *
exact_text(PyObject *item)
{
    if (PyUnicode_CheckExact(item) || PyBytes_CheckExact(item)) {
        return Py_NewRef(item);
    }
    if (PyUnicode_Check(item)) {
        return PyUnicode_Substring(item, 0, PyUnicode_GET_LENGTH(item));  /* an exact copy */
    }
    if (PyBytes_Check(item)) {
        return PyBytes_FromStringAndSize(PyBytes_AS_STRING(item), PyBytes_GET_SIZE(item));
    }
    PyObject *path = PyOS_FSPath(item);  /* a str or bytes, maybe of a subclass */
    PyObject *exact = path != NULL ? exact_text(path) : NULL;
    Py_XDECREF(path);
    return exact;
}

/* The environment a process is started with (execve, posix_spawn: a mapping, read by its
 * keys() and values() as python reads it; fork_exec: a sequence of b"K=V") as a plain dict
 * or list of exact str and bytes.  What the program defined (a mapping's methods, a
 * subclass's, __fspath__) runs here, from C, with no frame of pyward's below it: the
 * transform that adds pyward's variables then reads only builtin objects. */
static PyObject *
plain_environment(PyObject *env)
{
    if (PyList_Check(env) || PyTuple_Check(env)) {
        PyObject *items = PySequence_List(env), *out = PyList_New(0);
        for (Py_ssize_t i = 0; items != NULL && out != NULL && i < PyList_GET_SIZE(items); i++) {
            PyObject *entry = exact_text(PyList_GET_ITEM(items, i));
            if (entry == NULL || PyList_Append(out, entry) < 0) {
                Py_CLEAR(out);
            }
            Py_XDECREF(entry);
        }
        Py_XDECREF(items);
        return items == NULL ? (Py_XDECREF(out), NULL) : out;
    }
    PyObject *keys = PyMapping_Keys(env);
    PyObject *values = keys != NULL ? PyMapping_Values(env) : NULL;
    PyObject *out = values != NULL ? PyDict_New() : NULL;
    if (out != NULL && PyList_GET_SIZE(keys) != PyList_GET_SIZE(values)) {
        PyErr_SetString(PyExc_RuntimeError, "env changed size during iteration");
        Py_CLEAR(out);
    }
    for (Py_ssize_t i = 0; out != NULL && i < PyList_GET_SIZE(keys); i++) {
        PyObject *key = exact_text(PyList_GET_ITEM(keys, i));
        PyObject *value = key != NULL ? exact_text(PyList_GET_ITEM(values, i)) : NULL;
        if (value == NULL || PyDict_SetItem(out, key, value) < 0) {
            Py_CLEAR(out);
        }
        Py_XDECREF(key);
        Py_XDECREF(value);
    }
    Py_XDECREF(keys);
    Py_XDECREF(values);
    return out;
}

/* posix_spawn's file_actions as a plain list of plain tuples of exact ints and, for a
 * path, exact str or bytes (each element converted as python converts it: __index__,
 * __fspath__, run here from C): the decider judges the files a POSIX_SPAWN_OPEN opens
 * in the child, and the original gets the very values judged. */
static PyObject *
plain_file_actions(PyObject *actions)
{
    PyObject *items = PySequence_List(actions), *out = items != NULL ? PyList_New(0) : NULL;
    for (Py_ssize_t i = 0; out != NULL && i < PyList_GET_SIZE(items); i++) {
        PyObject *action = PySequence_Tuple(PyList_GET_ITEM(items, i));
        PyObject *plain = action != NULL ? PyTuple_New(PyTuple_GET_SIZE(action)) : NULL;
        long tag = -1;
        for (Py_ssize_t j = 0; plain != NULL && j < PyTuple_GET_SIZE(action); j++) {
            PyObject *element = PyTuple_GET_ITEM(action, j);
            /* the path of an open (python's POSIX_SPAWN_OPEN is 0) as text, every other element as an int */
            PyObject *exact = j == 2 && tag == 0 ? exact_text(element) : PyNumber_Index(element);
            if (j == 0 && exact != NULL) {
                tag = PyLong_AsLong(exact);
                if (tag == -1 && PyErr_Occurred()) {
                    PyErr_Clear();
                }
            }
            if (exact == NULL) {
                Py_CLEAR(plain);
                break;
            }
            PyTuple_SET_ITEM(plain, j, exact);
        }
        if (plain == NULL || PyList_Append(out, plain) < 0) {
            Py_CLEAR(out);
        }
        Py_XDECREF(plain);
        Py_XDECREF(action);
    }
    Py_XDECREF(items);
    return out;
}

/* The path arguments named by `paths` that are neither str nor bytes, converted once by
 * their __fspath__ (as the original would convert them): the sandbox then judges, and
 * the original opens, the same str or bytes, and the program's __fspath__ never runs
 * inside a verdict.  A spec with a third element converts the argument whole instead:
 * "env" an environment (plain_environment), "file_actions" posix_spawn's (plain_file_actions).
 * *args and *kwargs are replaced by new references when anything
 * changed (*owned set to 1); objects without __fspath__ are left for the original to refuse. */
static int
convert_paths(PyObject *paths, PyObject **args, PyObject **kwargs, int *owned)
{
    static PyObject *fspath_name;
    if (fspath_name == NULL && (fspath_name = PyUnicode_InternFromString("__fspath__")) == NULL) {
        return -1;
    }
    *owned = 0;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(paths); i++) {
        PyObject *spec = PyTuple_GET_ITEM(paths, i);
        Py_ssize_t position = PyTuple_GET_ITEM(spec, 0) == Py_None ? PY_SSIZE_T_MAX  /* keyword only */
                                                                  : PyLong_AsSsize_t(PyTuple_GET_ITEM(spec, 0));
        PyObject *keyword = PyTuple_GET_ITEM(spec, 1);
        const char *kind = PyTuple_GET_SIZE(spec) > 2 ? PyUnicode_AsUTF8(PyTuple_GET_ITEM(spec, 2)) : NULL;
        PyObject *value = NULL;
        int in_kwargs = 0;
        if (position < PyTuple_GET_SIZE(*args)) {
            value = PyTuple_GET_ITEM(*args, position);
        }
        else if (keyword != Py_None && *kwargs != NULL && PyDict_Check(*kwargs)) {
            value = PyDict_GetItemWithError(*kwargs, keyword);
            if (value == NULL && PyErr_Occurred()) {
                return -1;
            }
            in_kwargs = 1;
        }
        PyObject *path;
        if (kind != NULL) {
            if (value == NULL || value == Py_None) {
                continue;
            }
            path = strcmp(kind, "env") == 0 ? plain_environment(value) : plain_file_actions(value);
        }
        else {
            if (value == NULL || value == Py_None || PyUnicode_Check(value) || PyBytes_Check(value)
                || _PyType_Lookup(Py_TYPE(value), fspath_name) == NULL) {
                continue;
            }
            path = PyOS_FSPath(value);
        }
        if (path == NULL) {
            return -1;
        }
        if (!*owned) {
            *args = PyTuple_GetSlice(*args, 0, PyTuple_GET_SIZE(*args));
            *kwargs = *kwargs != NULL ? PyDict_Copy(*kwargs) : NULL;
            *owned = 1;
            if (*args == NULL || (in_kwargs && *kwargs == NULL)) {
                Py_DECREF(path);
                return -1;
            }
        }
        if (in_kwargs) {
            int rc = PyDict_SetItem(*kwargs, keyword, path);
            Py_DECREF(path);
            if (rc < 0) {
                return -1;
            }
        }
        else {
            PyObject *old = PyTuple_GET_ITEM(*args, position);
            PyTuple_SET_ITEM(*args, position, path);
            Py_DECREF(old);
        }
    }
    return 0;
}

static PyObject *guard_call_converted(Guard *self, PyObject *args, PyObject *kwargs);
static PyObject *guard_call_plain(Guard *self, PyObject *args, PyObject *kwargs);

/* Keyword names that are str subclasses (`f(**{Name("path"): ...})`, which CPython lets
 * through) as plain str: the decision and the transforms look keywords up by name, and a
 * lookup that meets such a key calls its __eq__ (and __hash__), the program's code, with
 * pyward's frame below it.  A new reference, or NULL with an exception set. */
static PyObject *
plain_keywords(PyObject *kwargs)
{
    PyObject *key, *value, *plain = PyDict_New();
    Py_ssize_t pos = 0;
    if (plain == NULL) {
        return NULL;
    }
    while (PyDict_Next(kwargs, &pos, &key, &value)) {
        if (!PyUnicode_Check(key)) {
            Py_DECREF(plain);
            PyErr_SetString(PyExc_TypeError, "keywords must be strings");
            return NULL;
        }
        PyObject *name = exact_text(key);  /* a subclass's data as a new plain str: none of its methods runs */
        if (name == NULL) {
            Py_DECREF(plain);
            return NULL;
        }
        int seen = PyDict_Contains(plain, name);
        if (seen == 0) {
            seen = PyDict_SetItem(plain, name, value) < 0 ? -1 : 0;
        }
        else if (seen == 1) {
            PyErr_Format(PyExc_TypeError, "keyword argument repeated: %U", name);
            seen = -1;
        }
        Py_DECREF(name);
        if (seen < 0) {
            Py_DECREF(plain);
            return NULL;
        }
    }
    return plain;
}

static PyObject *
guard_call(Guard *self, PyObject *args, PyObject *kwargs)
{
    if (kwargs == NULL || !PyDict_CheckExact(kwargs)) {
        return guard_call_plain(self, args, kwargs);
    }
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(kwargs, &pos, &key, &value)) {
        if (!PyUnicode_CheckExact(key)) {
            PyObject *plain = plain_keywords(kwargs);
            if (plain == NULL) {
                return NULL;
            }
            PyObject *result = guard_call_plain(self, args, plain);
            Py_DECREF(plain);
            return result;
        }
    }
    return guard_call_plain(self, args, kwargs);
}

static PyObject *
guard_call_plain(Guard *self, PyObject *args, PyObject *kwargs)
{
    if (self->paths == NULL) {
        return guard_call_converted(self, args, kwargs);
    }
    int owned = 0;
    if (convert_paths(self->paths, &args, &kwargs, &owned) < 0) {
        if (owned) {
            Py_XDECREF(args);
            Py_XDECREF(kwargs);
        }
        return NULL;
    }
    PyObject *result = guard_call_converted(self, args, kwargs);
    if (owned) {
        Py_DECREF(args);
        Py_XDECREF(kwargs);
    }
    return result;
}

static PyObject *
guard_call_converted(Guard *self, PyObject *args, PyObject *kwargs)
{
    if (self->event != NULL) {
        PyObject *check = PyTuple_Pack(2, args, kwargs != NULL ? kwargs : Py_None);
        if (check == NULL) {
            return NULL;
        }
        int rc = pw_sandbox_decide(self->event, check);
        Py_DECREF(check);
        if (rc < 0) {
            return NULL;
        }
    }
    PyObject *pair = NULL;
    if (self->transform != NULL) {
        pw_shield_enter();
        pair = PyObject_CallFunctionObjArgs(self->transform, args, kwargs != NULL ? kwargs : Py_None, NULL);
        pw_shield_leave();
        if (pair == NULL) {
            return NULL;
        }
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2 || !PyTuple_Check(PyTuple_GET_ITEM(pair, 0))) {
            Py_DECREF(pair);
            PyErr_SetString(PyExc_TypeError, "guard transform must return (args, kwargs)");
            return NULL;
        }
        args = PyTuple_GET_ITEM(pair, 0);
        kwargs = PyTuple_GET_ITEM(pair, 1) == Py_None ? NULL : PyTuple_GET_ITEM(pair, 1);
    }
    PyObject *result = PyObject_Call(self->original, args, kwargs);
    if (result != NULL && self->after != NULL) {
        pw_shield_enter();
        PyObject *final = PyObject_CallFunctionObjArgs(self->after, args, kwargs != NULL ? kwargs : Py_None,
                                                       result, NULL);
        pw_shield_leave();
        Py_DECREF(result);
        result = final;
    }
    Py_XDECREF(pair);
    return result;
}

static PyObject *
guard_repr(Guard *self)
{
    return PyUnicode_FromFormat("<built-in function %U (guarded by pyward)>", self->name);
}

static PyObject *
guard_get_name(Guard *self, void *closure)
{
    return Py_NewRef(self->name);
}

static PyGetSetDef guard_getset[] = {
    {"__name__", (getter)guard_get_name, NULL, NULL, NULL},
    {NULL},
};

/* Not a GC type on purpose: gc.get_referents() of a non-GC object is empty,
 * so the original cannot be reached through the guard. */
static PyTypeObject GuardType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pyward._native._pyward.Guard",
    .tp_basicsize = sizeof(Guard),
    .tp_dealloc = (destructor)guard_dealloc,
    .tp_call = (ternaryfunc)guard_call,
    .tp_repr = (reprfunc)guard_repr,
    .tp_getset = guard_getset,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A function guarded by pyward's sandbox.",
};

static PyObject *
make_guard(PyObject *module, PyObject *args)
{
    PyObject *event, *original, *transform = Py_None, *after = Py_None, *paths = Py_None;
    if (!PyArg_ParseTuple(args, "OO|OOO:guard", &event, &original, &transform, &after, &paths)) {
        return NULL;
    }
    if (paths != Py_None) {
        int ok = PyTuple_Check(paths);
        for (Py_ssize_t i = 0; ok && i < PyTuple_GET_SIZE(paths); i++) {
            PyObject *spec = PyTuple_GET_ITEM(paths, i);
            ok = PyTuple_Check(spec) && (PyTuple_GET_SIZE(spec) == 2 || PyTuple_GET_SIZE(spec) == 3)
                 && ((PyLong_CheckExact(PyTuple_GET_ITEM(spec, 0)) && PyLong_AsSsize_t(PyTuple_GET_ITEM(spec, 0)) >= 0)
                     || (PyTuple_GET_ITEM(spec, 0) == Py_None && PyUnicode_CheckExact(PyTuple_GET_ITEM(spec, 1))))
                 && (PyTuple_GET_ITEM(spec, 1) == Py_None || PyUnicode_CheckExact(PyTuple_GET_ITEM(spec, 1)))
                 && (PyTuple_GET_SIZE(spec) == 2
                     || (PyUnicode_CheckExact(PyTuple_GET_ITEM(spec, 2))
                         && (PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(spec, 2), "env") == 0
                             || PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(spec, 2), "file_actions") == 0)));
        }
        if (!ok) {
            PyErr_Clear();
            PyErr_SetString(PyExc_TypeError, "guard paths: a tuple of (position: int >= 0 or None, keyword: str | "
                                             "None[, kind: 'env' or 'file_actions'])");
            return NULL;
        }
    }
    if ((event != Py_None && !PyUnicode_Check(event)) || !PyCallable_Check(original)
        || (transform != Py_None && !PyCallable_Check(transform)) || (after != Py_None && !PyCallable_Check(after))) {
        PyErr_SetString(PyExc_TypeError,
                        "guard(event: str | None, original, transform=None, after=None): callables expected");
        return NULL;
    }
    if (PyType_Ready(&GuardType) < 0) {
        return NULL;
    }
    Guard *g = PyObject_New(Guard, &GuardType);
    if (g == NULL) {
        return NULL;
    }
    g->event = event == Py_None ? NULL : Py_NewRef(event);
    g->original = Py_NewRef(original);
    g->transform = transform == Py_None ? NULL : Py_NewRef(transform);
    g->after = after == Py_None ? NULL : Py_NewRef(after);
    g->paths = paths == Py_None ? NULL : Py_NewRef(paths);
    PyObject *name = PyObject_GetAttrString(original, "__name__");
    if (name == NULL) {
        PyErr_Clear();
        name = PyUnicode_FromString("guarded");
    }
    g->name = name;
    return (PyObject *)g;
}

/* A method of a C type guarded: the method descriptor (or Cython function) in an immutable
 * type's dict is replaced by an instancemethod of a Guard whose original is that very
 * descriptor, so the original is reachable from nowhere but the guard (a static method: by a
 * static method of a Guard whose original is its built-in function).  Once per method: a
 * method that is already guarded (or is not a C method) is left alone and False returned. */
static PyObject *
guard_method(PyObject *module, PyObject *args)
{
    PyObject *type, *name, *guard;
    if (!PyArg_ParseTuple(args, "O!UO!:guard_method", &PyType_Type, &type, &name, &GuardType, &guard)) {
        return NULL;
    }
    PyTypeObject *tp = (PyTypeObject *)type;
    /* a C extension's class: a heap type (immutable, or, as Cython's limited-API classes, not: its dict is
     * the program's to change anyway), or a static type of a third-party extension (Cython's classes: a
     * dotted name, its own dict); never a static type of the interpreter's own */
    int extension = (tp->tp_flags & Py_TPFLAGS_HEAPTYPE)
                    || ((tp->tp_flags & Py_TPFLAGS_IMMUTABLETYPE) && strchr(tp->tp_name, '.') != NULL);
    if (!extension || tp->tp_dict == NULL) {
        PyErr_SetString(PyExc_TypeError, "guard_method: a C extension's class expected");
        return NULL;
    }
    PyObject *current = PyDict_GetItemWithError(tp->tp_dict, name);
    if (current == NULL) {
        if (PyErr_Occurred()) {
            return NULL;
        }
        Py_RETURN_FALSE;
    }
    const char *kind = strrchr(Py_TYPE(current)->tp_name, '.');
    kind = kind != NULL ? kind + 1 : Py_TYPE(current)->tp_name;
    PyObject *method;
    if (Py_IS_TYPE(current, &PyStaticMethod_Type)) {
        /* a static method (PyO3's #[staticmethod], METH_STATIC): its built-in function guarded, and the
         * guard put back as a static method, so that it is still called without the instance */
        PyObject *inner = PyObject_GetAttrString(current, "__func__");
        if (inner == NULL) {
            return NULL;
        }
        int same = PyCFunction_Check(inner) && ((Guard *)guard)->original == inner;
        Py_DECREF(inner);
        if (!same) {
            Py_RETURN_FALSE;
        }
        method = PyStaticMethod_New(guard);
    }
    else if (!(Py_IS_TYPE(current, &PyMethodDescr_Type) || strcmp(kind, "cython_function_or_method") == 0)
             || ((Guard *)guard)->original != current) {
        Py_RETURN_FALSE;
    }
    else {
        method = PyInstanceMethod_New(guard);
    }
    if (method == NULL) {
        return NULL;
    }
    int rc = PyDict_SetItem(tp->tp_dict, name, method);
    Py_DECREF(method);
    if (rc < 0) {
        return NULL;
    }
    PyType_Modified(tp);
    Py_RETURN_TRUE;
}

/* --- sqlite3's authorizer: ATTACH and VACUUM INTO ------------------------- */

/* SQLite opens the file of an ATTACH (and of a VACUUM INTO, which attaches its target)
 * with no audit event; its authorizer is told the name (SQLITE_ATTACH, 24).  This
 * authorizer asks the sandbox about that name and hands every call to the program's
 * own authorizer, if it set one (set_authorizer is guarded to compose it here). */
#define PW_SQLITE_ATTACH 24

typedef struct {
    PyObject_HEAD
    PyObject *inner;  /* the program's authorizer, or NULL */
} Authorizer;

static int
authorizer_traverse(Authorizer *self, visitproc visit, void *arg)
{
    Py_VISIT(self->inner);
    return 0;
}

static int
authorizer_clear(Authorizer *self)
{
    Py_CLEAR(self->inner);
    return 0;
}

static void
authorizer_dealloc(Authorizer *self)
{
    PyObject_GC_UnTrack(self);
    authorizer_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
authorizer_call(Authorizer *self, PyObject *args, PyObject *kwargs)
{
    if (PyTuple_GET_SIZE(args) >= 2 && PyLong_CheckExact(PyTuple_GET_ITEM(args, 0))
        && PyLong_AsLong(PyTuple_GET_ITEM(args, 0)) == PW_SQLITE_ATTACH) {
        static PyObject *event;
        if (event == NULL && (event = PyUnicode_InternFromString("pyward.sqlite3.attach")) == NULL) {
            return NULL;
        }
        PyObject *check = PyTuple_Pack(1, PyTuple_GET_ITEM(args, 1));
        if (check == NULL) {
            return NULL;
        }
        int rc = pw_sandbox_decide(event, check);
        Py_DECREF(check);
        if (rc < 0) {
            return NULL;  /* sqlite3 answers SQLITE_DENY: "not authorized" */
        }
    }
    if (self->inner != NULL) {
        return PyObject_Call(self->inner, args, kwargs);
    }
    return PyLong_FromLong(0);  /* SQLITE_OK */
}

static PyTypeObject AuthorizerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pyward._native._pyward.SqliteAuthorizer",
    .tp_basicsize = sizeof(Authorizer),
    .tp_dealloc = (destructor)authorizer_dealloc,
    .tp_call = (ternaryfunc)authorizer_call,
    .tp_traverse = (traverseproc)authorizer_traverse,
    .tp_clear = (inquiry)authorizer_clear,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "sqlite3's authorizer under pyward's sandbox: ATTACH is judged, then the program's own is asked.",
};

static PyObject *
sqlite_authorizer(PyObject *module, PyObject *inner)
{
    if (PyType_Ready(&AuthorizerType) < 0) {
        return NULL;
    }
    Authorizer *a = PyObject_GC_New(Authorizer, &AuthorizerType);
    if (a == NULL) {
        return NULL;
    }
    a->inner = inner == Py_None ? NULL : Py_NewRef(inner);
    PyObject_GC_Track(a);
    return (PyObject *)a;
}

/* A connection's first authorizer, set from C: sqlite3 raises "sqlite3.connect/handle"
 * before the connection counts as initialised, so set_authorizer cannot be called
 * there; this sets SQLite's own authorizer on the handle (the first field of the
 * connection object, after the object header, on every supported Python) with
 * sqlite3_set_authorizer found in the library _sqlite3 was linked with.  It judges
 * ATTACH only; the program's set_authorizer (guarded) replaces it by the composed one. */
typedef int (*set_authorizer_fn)(void *, int (*)(void *, int, const char *, const char *, const char *,
                                                  const char *), void *);
static set_authorizer_fn sqlite_set_authorizer;

typedef struct {
    PyObject_HEAD
    void *db;  /* sqlite3 * */
} SqliteConnectionHead;

static int
raw_authorizer(void *unused, int action, const char *arg1, const char *arg2, const char *db, const char *trigger)
{
    if (action != PW_SQLITE_ATTACH) {
        return 0;
    }
    static PyObject *event;
    PyGILState_STATE gil = PyGILState_Ensure();
    int answer = 1;  /* SQLITE_DENY unless the sandbox allows */
    if (event == NULL) {
        event = PyUnicode_InternFromString("pyward.sqlite3.attach");
    }
    PyObject *name = arg1 != NULL ? PyUnicode_DecodeFSDefault(arg1) : Py_NewRef(Py_None);
    PyObject *check = name != NULL ? PyTuple_Pack(1, name) : NULL;
    if (event != NULL && check != NULL && pw_sandbox_decide(event, check) == 0) {
        answer = 0;
    }
    Py_XDECREF(check);
    Py_XDECREF(name);
    PyErr_Clear();  /* the denial is journaled; SQLite reports "not authorized" */
    PyGILState_Release(gil);
    return answer;
}

/* sqlite_bind(connection_type): a copy of _sqlite3's Connection (a C type, named
 * sqlite3.Connection); sqlite3_set_authorizer is looked up once, in the library that
 * holds the type's code and its dependencies (the libsqlite3 it was linked with). */
static PyObject *sqlite_connection_types;  /* list of the types bound */

static PyObject *
sqlite_bind(PyObject *module, PyObject *type)
{
    if (!PyType_Check(type)) {
        PyErr_SetString(PyExc_TypeError, "sqlite_bind(connection_type)");
        return NULL;
    }
    PyTypeObject *tp = (PyTypeObject *)type;
    if (!(tp->tp_flags & Py_TPFLAGS_HEAPTYPE) || !(tp->tp_flags & Py_TPFLAGS_IMMUTABLETYPE)
        || strcmp(tp->tp_name, "sqlite3.Connection") != 0 || tp->tp_dealloc == NULL) {
        Py_RETURN_FALSE;
    }
    if (sqlite_set_authorizer == NULL) {
        Dl_info info;
        if (dladdr((void *)tp->tp_dealloc, &info) == 0 || info.dli_fname == NULL) {
            Py_RETURN_FALSE;
        }
        void *handle = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
        if (handle == NULL) {
            Py_RETURN_FALSE;
        }
        sqlite_set_authorizer = (set_authorizer_fn)dlsym(handle, "sqlite3_set_authorizer");
        if (sqlite_set_authorizer == NULL) {
            Py_RETURN_FALSE;
        }
    }
    if (sqlite_connection_types == NULL && (sqlite_connection_types = PyList_New(0)) == NULL) {
        return NULL;
    }
    if (PyList_Append(sqlite_connection_types, type) < 0) {
        return NULL;
    }
    Py_RETURN_TRUE;
}

static PyObject *
sqlite_arm(PyObject *module, PyObject *conn)
{
    int bound = 0;
    for (Py_ssize_t i = 0; sqlite_connection_types != NULL && i < PyList_GET_SIZE(sqlite_connection_types); i++) {
        bound = bound || PyObject_TypeCheck(conn, (PyTypeObject *)PyList_GET_ITEM(sqlite_connection_types, i));
    }
    if (sqlite_set_authorizer == NULL || !bound) {
        Py_RETURN_FALSE;
    }
    void *db = ((SqliteConnectionHead *)conn)->db;
    if (db == NULL || sqlite_set_authorizer(db, raw_authorizer, NULL) != 0) {
        Py_RETURN_FALSE;
    }
    Py_RETURN_TRUE;
}

/* --- helpers that cannot be patched from Python ---------------------------- */

/* Objects untracked here are owned by C for the rest of the process: each
 * keeps a reference from `kept`, so whatever the program does to the
 * containers that also hold them (a namespace cleared, a closure dropped),
 * none is ever deallocated.  That matters beyond hiding: CPython's dealloc of
 * a function, a cell or a method unlinks it from the GC's list without
 * checking it is tracked, and an untracked one crashes the interpreter. */
static PyObject **kept;
static Py_ssize_t n_kept, kept_capacity;

static PyObject *
untrack(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (n_kept + nargs > kept_capacity) {
        Py_ssize_t capacity = (n_kept + nargs) * 2 + 16;
        PyObject **grown = PyMem_RawRealloc(kept, capacity * sizeof(PyObject *));
        if (grown == NULL) {
            return PyErr_NoMemory();
        }
        kept = grown;
        kept_capacity = capacity;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        kept[n_kept++] = Py_NewRef(args[i]);  /* first: never freed, tracked or not */
        if (PyObject_IS_GC(args[i]) && PyObject_GC_IsTracked(args[i])) {
            PyObject_GC_UnTrack(args[i]);
        }
    }
    Py_RETURN_NONE;
}

static PyObject *
native_realpath(PyObject *module, PyObject *arg)
{
    PyObject *bytes;
    if (!PyUnicode_FSConverter(arg, &bytes)) {
        return NULL;
    }
    char resolved[PATH_MAX];
    char *ok;
    Py_BEGIN_ALLOW_THREADS
    ok = realpath(PyBytes_AS_STRING(bytes), resolved);
    Py_END_ALLOW_THREADS
    Py_DECREF(bytes);
    if (ok == NULL) {
        Py_RETURN_NONE;
    }
    return PyUnicode_DecodeFSDefault(resolved);
}


/* The value of the variable named by the file-system bytes `bytes` (consumed), or None. */
static PyObject *
env_value(PyObject *bytes)
{
    const char *value = getenv(PyBytes_AS_STRING(bytes));
    Py_DECREF(bytes);
    if (value == NULL) {
        Py_RETURN_NONE;
    }
    return PyUnicode_DecodeFSDefault(value);
}

static PyObject *
env_get(PyObject *module, PyObject *const *argv, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 2 || !PyUnicode_Check(argv[0])) {
        PyErr_SetString(PyExc_TypeError, "env_get(name: str, listing: bool = False)");
        return NULL;
    }
    PyObject *name = argv[0];
    static PyObject *event;
    if (event == NULL && (event = PyUnicode_InternFromString("pyward.env.read")) == NULL) {
        return NULL;
    }
    /* (name,) for a read of one variable; (name, True) while the program lists them all */
    PyObject *args = nargs == 2 && PyObject_IsTrue(argv[1]) ? PyTuple_Pack(2, name, Py_True) : PyTuple_Pack(1, name);
    if (args == NULL) {
        return NULL;
    }
    int rc = pw_sandbox_decide(event, args);
    Py_DECREF(args);
    if (rc < 0) {
        return NULL;
    }
    PyObject *bytes;
    if (!PyUnicode_FSConverter(name, &bytes)) {
        return NULL;
    }
    return env_value(bytes);
}

extern char **environ;

/* The decider's own reads of the environment (PATH, to find a command): no check,
 * since a check inside a verdict is a nested verdict.  Handed out only before the
 * sandbox is installed (to the decider being built, which holds it in its hidden
 * namespace); refused from then on, so the program never gets one. */
static PyObject *
env_raw(PyObject *module, PyObject *name)
{
    PyObject *bytes;
    if (!PyUnicode_Check(name) || !PyUnicode_FSConverter(name, &bytes)) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_TypeError, "env_raw(name: str)");
        }
        return NULL;
    }
    return env_value(bytes);
}

static PyMethodDef env_raw_def = {"env_raw", env_raw, METH_O, NULL};

static PyObject *
take_env_reader(PyObject *module, PyObject *unused)
{
    if (decide_fn != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the sandbox is installed: its environment reader is not handed out");
        return NULL;
    }
    return PyCFunction_New(&env_raw_def, NULL);
}

/* The decider's tables of directories whose files open quietly and of the paths
 * opened so (quiet_open):
 * handed out only before the sandbox is installed, to the decider being built,
 * which keeps it in its hidden namespace; from then on only C and it hold it. */
static PyObject *
take_quiet_dirs(PyObject *module, PyObject *inodes)
{
    if (decide_fn != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the sandbox is installed: its table of quiet directories is not handed out");
        return NULL;
    }
    if (!PyTuple_Check(inodes)) {
        PyErr_SetString(PyExc_TypeError, "take_quiet_dirs(inodes): a tuple of inode numbers");
        return NULL;
    }
    if (open_event == NULL && (open_event = PyUnicode_InternFromString("open")) == NULL) {
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(inodes);
    ino_t *numbers = PyMem_RawCalloc(n ? n : 1, sizeof(ino_t));
    if (numbers == NULL) {
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned long long number = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(inodes, i));
        if (number == (unsigned long long)-1 && PyErr_Occurred()) {
            PyMem_RawFree(numbers);
            return NULL;
        }
        numbers[i] = (ino_t)number;
    }
    PyObject *dirs = PyDict_New(), *paths = PyDict_New();
    PyObject *tables = dirs != NULL && paths != NULL ? PyTuple_Pack(2, dirs, paths) : NULL;
    if (tables != NULL) {  /* the decider built last is the one installed */
        Py_XSETREF(quiet_dirs, Py_NewRef(dirs));
        Py_XSETREF(quiet_paths, Py_NewRef(paths));
        PyMem_RawFree(denied_inos);
        denied_inos = numbers;
        n_denied_inos = n;
    }
    else {
        PyMem_RawFree(numbers);
    }
    Py_XDECREF(dirs);
    Py_XDECREF(paths);
    return tables;
}

static PyObject *
env_names(PyObject *module, PyObject *unused)
{
    PyObject *names = PyList_New(0);
    if (names == NULL) {
        return NULL;
    }
    for (char **e = environ; e != NULL && *e != NULL; e++) {
        const char *eq = strchr(*e, '=');
        if (eq == NULL || eq == *e) {
            continue;
        }
        PyObject *name = PyUnicode_DecodeFSDefaultAndSize(*e, eq - *e);
        if (name == NULL || PyList_Append(names, name) < 0) {
            Py_XDECREF(name);
            Py_DECREF(names);
            return NULL;
        }
        Py_DECREF(name);
    }
    return names;
}

PyMethodDef pw_sandbox_methods[] = {
    {"sandbox_install", sandbox_install, METH_VARARGS,
     "sandbox_install(names, decide, denied_type, fail_closed, subinterpreters=False, import_denied=None, "
     "hook_emit=None): install the sandbox, once per process."},
    {"sandbox_set_hook", (PyCFunction)(void (*)(void))sandbox_set_hook, METH_FASTCALL,
     "sandbox_set_hook(fn | None, names=None, prefixes=None): the program's callback, composed with the policy "
     "(alone without one); it sees the events named or starting with a prefix, every event when both are None."},
    {"sandbox_hook_journal", sandbox_hook_journal, METH_VARARGS,
     "sandbox_hook_journal(emit, denied_type) -> bool: where the callback's verdicts are journaled when no "
     "sandbox is installed (False: already set)."},
    {"sandbox_hook_state", sandbox_hook_state, METH_NOARGS,
     "sandbox_hook_state() -> dict: the callback, whether its verdicts are journaled, a policy, the lock."},
    {"sandbox_lock_hook", sandbox_lock_hook, METH_NOARGS,
     "sandbox_lock_hook(): from now on sandbox_set_hook raises the denial error (cannot be undone)."},
    {"sandbox_installed", sandbox_installed, METH_NOARGS, "Whether the sandbox is installed."},
    {"sandbox_check", (PyCFunction)(void (*)(void))sandbox_check, METH_FASTCALL,
     "sandbox_check(event, args): ask the sandbox about a synthetic event; raises when denied."},
    {"guard", make_guard, METH_VARARGS,
     "guard(event, original, transform=None, after=None, paths=None): a callable that asks the sandbox before calling "
     "original (no question when event is None), may rewrite its arguments and post-process its result; "
     "paths: ((position, keyword), ...) of path arguments converted by __fspath__ first."},
    {"guard_method", guard_method, METH_VARARGS,
     "guard_method(type, name, guard) -> bool: the C method `name` of an immutable type replaced by `guard` "
     "(whose original must be that method), once."},
    {"sqlite_bind", sqlite_bind, METH_O,
     "sqlite_bind(connection_type) -> bool: a copy of sqlite3.Connection whose connections sqlite_arm arms."},
    {"sqlite_arm", sqlite_arm, METH_O,
     "sqlite_arm(connection) -> bool: SQLite's ATTACH judged on a connection being opened."},
    {"sqlite_authorizer", sqlite_authorizer, METH_O,
     "sqlite_authorizer(inner) -> authorizer: judges SQLite's ATTACH by the sandbox, then asks inner (or None)."},
    {"untrack", (PyCFunction)(void (*)(void))untrack, METH_FASTCALL,
     "untrack(*objects): stop the GC from tracking them (they vanish from gc.get_objects()); C keeps a "
     "reference to each for the life of the process, so they are never freed."},
    {"realpath", native_realpath, METH_O, "realpath(path) -> str | None: libc realpath(3)."},
    {"env_get", (PyCFunction)(void (*)(void))env_get, METH_FASTCALL,
     "env_get(name, listing=False) -> str | None: the environment variable, if the sandbox allows."},
    {"take_env_reader", take_env_reader, METH_NOARGS,
     "take_env_reader(): the decider's unchecked environment reader; only before the sandbox is installed."},
    {"take_quiet_dirs", take_quiet_dirs, METH_O,
     "take_quiet_dirs(inodes) -> (dirs, paths): the decider's tables of directories whose files open quietly "
     "and of the paths opened so; `inodes`, those of the files deny rules name, are never taken for plain "
     "files in a listing; only before the sandbox is installed."},
    {"env_names", env_names, METH_NOARGS, "env_names() -> list[str]: names in the process environment."},
    {NULL, NULL, 0, NULL},
};
