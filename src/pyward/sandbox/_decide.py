"""The sandbox's decision code.

A verdict never runs code the program can reach: what it has to journal is
queued (QUEUE) and journaled by flush() after the verdict, outside it.

These functions never run with this module's globals: `engine.build_decider`
re-creates each of them with a private globals dict that holds the compiled
policy, captured C-level functions (realpath, getcwd, sys._getframe...) and
private caches, then hides that dict and the functions from the GC.  So the
names in CAPITALS below are filled in by the engine; the program cannot reach
them, and nothing here calls back into code the program could have patched:
no stdlib Python functions, no `re`, no methods of the program's objects.

Verdict protocol (see _native/sandbox.c): None allows; a str denies for an
explicit deny rule; a 1-tuple (str,) denies because nothing allows it.

A finding is a tuple (perm, resource, op, code) where code is 0 implicit
(never journaled), 1 allowed by a rule, 2 not allowed, 3 explicitly denied.
"""
# ruff: noqa: F821  (the names in CAPITALS are provided by the engine)


def decide(event, args):
    handler = HANDLERS.get(event)
    if handler is None:
        return None
    try:
        found = handler(args)
        if found is None:
            return None
        if type(found) is str:  # a quiet refusal, never journaled (see on_env_visible)
            return (found,)
        return settle(found, event, frame_at(2))
    except Exception as exc:
        return internal_error(event, exc)


def journal_later(*event):
    """Journal later: the journal is code the program can reach, so it never runs
    inside a verdict; the C side calls flush() once the verdict is given."""
    PENDING.append(event)


def flush():
    """Journal what the verdicts queued (and end the run for --on-deny=exit)."""
    while PENDING:
        item = PENDING.pop(0)
        if item[0] is None:
            EXIT_ON_DENY(item[1])
        else:
            EMIT(*item)


def internal_error(event, exc):
    """A check that failed is journaled (and counted) as an internal error; under
    enforce the operation is denied, under watch it goes through."""
    why = type(exc).__name__  # str() of an exception could run the program's code
    if exc.args and type(exc.args[0]) is str:
        why = why + ": " + exc.args[0]
    message = "pyward sandbox: internal error while checking " + event + " (" + why + ")"
    message = message + ("; watch mode lets the operation through" if MODE == 0 else
                         "; denied (the sandbox fails closed)")
    journal_later("internal_error", event, message, "error", {"event": event, "error": why}, locate(frame_at(3)))
    return None if MODE == 0 else (message,)


def settle(found, event, frame):
    """Journal findings, ask in prompt mode, and produce the verdict."""
    if type(found) is tuple:
        found = [found]
    verdict = None
    site = None
    for perm, resource, op, code in found:
        key = perm + "\x00" + resource
        if site is None:
            site = locate(frame)
        via = named_form(resource) if perm == "net" else None
        if perm == "run" or perm == "net":
            resource = resource.partition("\x00")[0]
        if code == 1 or MODE == 0:
            noted = noted_key(perm, resource if via is None else resource + "\x00" + via, op, code)
            if noted in NOTED:
                continue
            NOTED[noted] = 1
            if code == 1:
                kind, severity, message = "allowed", "info", describe(perm, resource, op, via) + " allowed"
                if noted[-2:] == "/*":
                    message = message + "; further " + perm + "s allowed in " + noted[len(perm) + 1:-2] \
                        + " are not journaled one by one"
            elif code >= 2 and CONFIGURED:
                kind, severity = "would_deny", "notice"
                message = describe(perm, resource, op, via) + " would be denied under enforce (watch mode)"
            else:
                kind, severity, message = "observed", "info", describe(perm, resource, op, via)
            journal_later(kind, resource, message, severity, details(perm, op, event, None, via), site)
            continue
        if MODE == 2 and code == 2:
            answer = ask(perm, resource, op, key)
            if answer:
                journal_later("granted", resource, describe(perm, resource, op) + " allowed at the prompt", "notice",
                     details(perm, op, event, "prompt: all of " + perm if answer == 2 else "prompt"), site)
                continue
        rule = None
        if code == 3:
            rule = deny_origin(perm, key.partition("\x00")[2])
            message = describe(perm, resource, op, via) + " denied by " + rule + " (a deny rule wins over any allow)"
        else:
            message = (describe(perm, resource, op, via) + " denied by pyward's sandbox: allow it with "
                       + HOW.replace("{perm}", perm).replace("{scope}", suggest(perm, resource, via)))
        journal_later("denied", resource, message, "warning", details(perm, op, event, rule, via), site)
        if EXIT_ON_DENY is not None:
            PENDING.append((None, message))  # --on-deny=exit: after the journal has the denial
        if verdict is None:
            if perm == "import" or (perm == "ffi" and op[:7] == "import " and resource in FFI_MODULES):
                # raised as pyward.ImportDenied: programs probe with `except ImportError`
                verdict = (message, code == 3)
            else:
                verdict = message if code == 3 else (message,)
    return verdict


def noted_key(perm, resource, op, code):
    """What an "allowed"/"observed" event is journaled once for: a resource; for a
    path a rule allows, its directory (a program that opens 10,000 files in a
    directory it may read gets one event, not 10,000)."""
    if op == "listing":
        return perm + "\x00" + resource + "\x00listing"  # a later real read is news
    if code == 1 and (perm == "read" or perm == "write"):
        cut = resource.rfind("/")
        if cut >= 0:
            return perm + "\x00" + resource[:cut] + "/*"
    return perm + "\x00" + resource


def details(perm, op, event, rule, via=None):
    found = {"permission": perm, "operation": op, "event": event, "rule": rule}
    if via is not None:
        found["via"] = via
    return found


def describe(perm, resource, op, via=None):
    if via is not None:  # the address a name gave: the name is what the program asked for
        return VERBS[perm] + " '" + resource + "' (" + op + ", an address of '" + via.rpartition(":")[0] + "')"
    return VERBS[perm] + " '" + resource + "' (" + op + ")"


def suggest(perm, resource, via=None):
    return resource if via is None else via


def named_form(resource):
    """'name:port' when a network resource is an address a lookup of that name gave (the name
    the program resolved before connecting to its address, as urllib3 and asyncio do)."""
    for part in resource.split("\x00")[1:]:
        if part[:1] == "+":
            host = split_host(part[1:])[0]
            if host is not None and literal(host) is None:
                return part[1:]
    return None


def locate(frame):
    """(file:line, function) of the program's code: skip pyward and the stdlib."""
    first = frame
    while frame is not None:
        filename = frame.f_code.co_filename
        if not filename.startswith(PLUMBING) or (filename.startswith(STDLIB) and "-packages/" in filename):
            return (filename + ":" + str(frame.f_lineno), frame.f_code.co_qualname)
        frame = frame.f_back
    if first is None:
        return (None, None)
    return (first.f_code.co_filename + ":" + str(first.f_lineno), first.f_code.co_qualname)


# --- evaluation ---------------------------------------------------------------


def check(perm, resource, op):
    key = perm + "\x00" + resource
    code = CACHE.get(key)
    if code is None:
        code = evaluate(perm, resource)
        CACHE[key] = code
    if (code == 0 or code == 2) and perm == "write" and bytecode_cache(resource):
        if compiling():
            code = 2  # the program's own compile: a write like any other, journaled, learned, granted or denied
        elif code == 2:
            # python's import writes bytecode caches next to every module it loads and goes on
            # without one it cannot write: outside the program's tree that is refused (a planted
            # .pyc would run in later runs), quietly, as python itself takes it; watch lets it be
            return None if MODE == 0 else "pyward: bytecode caches are written only in the program's own tree"
    if code == 0:
        return None
    if code == 1 or MODE == 0:
        if noted_key(perm, resource, op, code) in NOTED:
            return None
        return (perm, resource, op, code)
    if code == 2 and (key in GRANTED or perm in GRANTED):
        return None
    return (perm, resource, op, code)


def bytecode_cache(resource):
    return "/__pycache__/" in resource or resource.endswith("/__pycache__")


def compiling():
    """Whether py_compile (compileall, `python -m py_compile`) is writing this bytecode cache.
    The import system's cache writes are implicit: python goes on without a cache it cannot
    write, and the kernel wall grants none.  py_compile fails without its write, so that write
    is the program's, judged like any other (and so learned, where an implicit one is not)."""
    frame = frame_at(2)
    for _ in range(8):  # compile -> _write_atomic or os.makedirs (-> makedirs...) -> the audited call
        if frame is None:
            return False
        code = frame.f_code
        if (code.co_filename, code.co_name) in BYTECODE_WRITERS:
            return True
        frame = frame.f_back
    return False


def evaluate(perm, resource):
    rules = RULES[perm]
    if perm == "net" and "\x00" in resource:  # several forms (see inet_resource): a deny on any wins
        allowed = rules[2] is not None
        for form, judged in net_forms(resource):
            if matches(perm, form, rules[1]) is not None:
                return 3
            if judged and not allowed and matches(perm, form, rules[0]) is not None:
                allowed = True
        return 1 if allowed else 2
    cut = resource.rfind("/") if perm == "read" or perm == "write" else -1
    if cut >= 0:  # a path: the rules are matched by the directory's plan, then the last component
        directory, name = resource[:cut], resource[cut + 1:]
        key = perm + "\x00" + directory
        plan = PLANS.get(key)
        if plan is None:
            plan = (dir_plan(directory, rules[1]), dir_plan(directory, rules[0]))
            PLANS[key] = plan
        if plan_match(plan[0], resource, name) is not None or inode_denied(perm, resource):
            return 3
        if rules[2] is not None or plan_match(plan[1], resource, name) is not None:
            return 1
    else:
        if matches(perm, resource, rules[1]) is not None or inode_denied(perm, resource):
            return 3
        if rules[2] is not None or matches(perm, resource, rules[0]) is not None:
            return 1
    if implicit(perm, resource):
        return 0
    return 2


def dir_plan(directory, rules):
    """The rules that can match a file in `directory`, each reduced to what it asks of
    the file's name: (0, None, origin) every name, (1, name, origin) that name,
    (2, segment glob, origin), (3, rule, origin) the whole path (a '**' glob).
    Matching a name then costs one comparison, however many rules the policy has."""
    plan = []
    segments = None
    for rule in rules:
        kind = rule[0]
        if kind == 6:
            plan.append((0, None, rule[2]))
        elif kind == 0:
            prefix = rule[1]
            if prefix == "/" or directory == prefix or directory.startswith(prefix + "/"):
                plan.append((0, None, rule[2]))
            elif prefix.startswith(directory + "/") and "/" not in prefix[len(directory) + 1:]:
                plan.append((1, prefix[len(directory) + 1:], rule[2]))
        elif kind == 1:
            pattern = rule[1]
            if "**" in pattern:
                plan.append((3, pattern, rule[2]))
                continue
            if segments is None:
                segments = directory.split("/")
            if len(pattern) != len(segments) + 1:
                continue
            fits = True
            for i in range(len(segments)):
                if not segment_match(pattern[i], segments[i]):
                    fits = False
                    break
            if fits:
                last = pattern[-1]
                if "?" in last:
                    plan.append((2, last, rule[2]))
                else:  # split once here, not at each match
                    plan.append((5, tuple(last.split("*")), rule[2]))
        else:
            plan.append((4, rule, rule[2]))
    return tuple(plan)


def plan_match(plan, resource, name):
    for how, what, origin in plan:
        if how == 0:
            return origin
        if how == 5:
            if wild_match(what, name):
                return origin
        elif how == 1:
            if name == what:
                return origin
        elif how == 2:
            if segment_match(what, name):
                return origin
        elif how == 3:
            if glob_match(what, resource.split("/")):
                return origin
        elif matches("", resource, (what,)) is not None:
            return origin
    return None


def deny_origin(perm, resource):
    if perm == "ffi" and resource in GUARDED_MODULES:
        return "pyward (a fresh copy of " + resource + " would bring back functions the sandbox guards)"
    if perm == "env" and own_variable(resource) is not None:
        return own_variable(resource)
    if perm == "net" and "\x00" in resource:
        for form, _judged in net_forms(resource):
            origin = matches(perm, form, RULES[perm][1])
            if origin is not None:
                return origin
        return "a deny rule"
    origin = matches(perm, resource, RULES[perm][1])
    if origin is None and inode_denied(perm, resource):
        return "a deny rule on the file this hard link points to"
    return origin or "a deny rule"


def matches(perm, resource, rules):
    """The origin of the first rule in `rules` matching `resource`, or None."""
    for rule in rules:
        kind = rule[0]
        if kind == 0:  # a path and everything below it
            prefix = rule[1]
            if resource == prefix or resource.startswith(prefix + "/") or prefix == "/":
                return rule[2]
        elif kind == 1:  # a path glob
            if glob_match(rule[1], resource.split("/")):
                return rule[2]
        elif kind == 2:  # a name, or a glob over names
            if wild_match(rule[1], resource):
                return rule[2]
        elif kind == 3:  # run: a name matches the command's base name
            name = resource.rpartition("\x00")[0].rpartition("/")[2]
            real = resource.rpartition("\x00")[2]
            if name == rule[1] or real.rpartition("/")[2] == rule[1]:
                return rule[2]
        elif kind == 4:  # run: a path matches the resolved executable
            if resource.rpartition("\x00")[2] == rule[1]:
                return rule[2]
        elif kind == 5:  # net
            if net_match(rule, resource):
                return rule[2]
        elif kind == 6:  # everything (a deny rule without scope)
            return rule[2]
    return None


def wild_match(parts, text):
    """Match `text` against a pattern split on '*' (so parts[0]*parts[1]*...)."""
    if len(parts) == 1:
        return text == parts[0]
    if not text.startswith(parts[0]) or not text.endswith(parts[-1]):
        return False
    position = len(parts[0])
    end = len(text) - len(parts[-1])
    if position > end:
        return False
    for middle in parts[1:-1]:
        found = text.find(middle, position, end)
        if found < 0:
            return False
        position = found + len(middle)
    return True


def glob_match(pattern, segments):
    """Path glob over '/'-separated segments: '**' spans any number of them."""
    if not pattern:
        return not segments
    head = pattern[0]
    if head == "**":
        for i in range(len(segments) + 1):
            if glob_match(pattern[1:], segments[i:]):
                return True
        return False
    if not segments:
        return False
    if segment_match(head, segments[0]):
        return glob_match(pattern[1:], segments[1:])
    return False


def segment_match(pattern, text):
    if "?" not in pattern:
        return wild_match(pattern.split("*"), text)
    if "*" not in pattern:
        if len(pattern) != len(text):
            return False
        for a, b in zip(pattern, text):
            if a != "?" and a != b:
                return False
        return True
    return wild_match(pattern.replace("?", "*").split("*"), text)  # approximate: '?' as '*'


def net_match(rule, resource):
    """rule = (5, host_kind, origin, host, port, network, prefix, version)."""
    host, port = split_host(resource)
    if host is None:  # unix: a socket file, or a directory of sockets
        return resource == rule[3] or (rule[1] == 4 and resource.startswith(rule[3] + "/"))
    want = rule[4]
    if want is not None and port is not None and port != want:
        return False
    kind = rule[1]
    if kind == 0:  # a name: itself, and the addresses it resolves to
        return host == rule[3] or (literal(host) is not None and host in rule_addresses(rule[3]))
    if kind == 1:
        return host.endswith(rule[3])
    if kind == 2:
        number = ip_number(host, rule[7])
        return number is not None and number >> (rule[7] - rule[6]) == rule[5] >> (rule[7] - rule[6])
    return kind == 3  # any host


def split_host(resource):
    """('host', port or None) from 'host', 'host:port' or '[v6]:port'; (None, None) for others."""
    if resource[:5] == "unix:" or resource[:4] == "raw:":
        return (None, None)
    if resource[:1] == "[":
        close = resource.find("]")
        host = resource[1:close]
        rest = resource[close + 1:]
        return (host, int(rest[1:]) if rest[:1] == ":" and rest[1:].isdigit() else None)
    host, sep, port = resource.rpartition(":")
    if not sep:
        return (resource, None)
    return (host, int(port) if port.isdigit() else None)


def net_forms(resource):
    """(form, judged by allow rules too) for each form of a network resource."""
    parts = resource.split("\x00")
    out = [(parts[0], True)]
    for part in parts[1:]:
        out.append((part[1:], part[:1] == "+"))
    return out


def rule_addresses(name):
    """The addresses a host named in a rule resolves to, looked up once, when an
    address is first judged against the rule."""
    found = RULE_ADDRESSES.get(name)
    if found is None:
        found = tuple(RESOLVE(name, 0)) if RESOLVE is not None else ()
        RULE_ADDRESSES[name] = found
    return found


def ip_number(host, bits):
    if bits == 32:
        parts = host.split(".")
        if len(parts) != 4:
            return None
        number = 0
        for part in parts:
            if not part.isdigit() or len(part) > 3 or int(part) > 255:
                return None
            number = number * 256 + int(part)
        return number
    if ":" not in host or INET_PTON is None:
        return None
    for char in host:
        if char not in HEX_COLON:
            return None
    try:
        raw = INET_PTON(AF_INET6, host)
    except OSError:
        return None
    return int.from_bytes(raw, "big")


def inode_denied(perm, resource):
    """A hard link elsewhere to a file a deny rule names."""
    denied = DENY_INODES.get(perm)
    if not denied or resource[:1] != "/":
        return False
    seen = STATE.get("info")
    if seen is not None and seen[0] == resource:  # resolve's lstat of this very file (not a symlink)
        result = seen[1]
        info = (result.st_dev, result.st_ino, result.st_nlink, result.st_mode)
    else:
        info = stat_info(resource)
    return info is not None and info[2] > 1 and (str(info[0]) + ":" + str(info[1])) in denied


def stat_info(path):
    try:
        result = STAT(path)
    except (OSError, ValueError):
        return None
    return (result.st_dev, result.st_ino, result.st_nlink, result.st_mode)


def implicit(perm, resource):
    if perm == "read":
        return resource.startswith(IMPLICIT_READ_ROOTS) or resource in IMPLICIT_READ_FILES
    if perm == "write":
        if resource in IMPLICIT_WRITE_FILES:
            return True
        return bytecode_cache(resource) and in_program_tree(resource)
    if perm == "import":  # the program's own, or a stdlib file not in sys.stdlib_module_names (_sysconfigdata_*)
        return program_module(resource) or module_in(STDLIB_DIR, resource)
    if perm == "env":
        return resource in IMPLICIT_ENV or resource.startswith(IMPLICIT_ENV_PREFIXES)
    return False


def in_program_tree(resource):
    """Under the program's directory, and not in pyward's package, the stdlib or an
    installed package: a .pyc planted there would run in every later run's children."""
    if resource.startswith(PLUMBING) or "-packages/" in resource:
        return False
    for directory in PROGRAM_DIRS:
        if resource.startswith(STR_ADD(directory, "/")):
            return True
    return False


def program_module(top):
    for directory in PROGRAM_DIRS:
        if module_in(directory, top):
            return True
    return False


def module_in(directory, top):
    base = directory + "/" + top
    return REALPATH(base + ".py") is not None or REALPATH(base + "/__init__.py") is not None


# --- resolving paths ----------------------------------------------------------


def cwd():
    value = STATE.get("cwd")
    if value is None:
        value = GETCWD()
        STATE["cwd"] = value
    return value


def resolve(path, dir_fd, follow=True):
    """The absolute path the kernel will act on, or None when it cannot be known
    here (an object the program passed: a later event carries its path).

    Resolved as the kernel does: the directory part through every symlink, the
    last component followed too unless `follow` is false (O_NOFOLLOW, O_EXCL
    creation, and the calls that act on the entry itself: remove, rename...);
    a symlink whose target does not exist resolves to that target, which is
    what an open for writing creates."""
    kind = type(path)
    if kind is not str:
        # A subclass may lie through any method it overrides; the OS reads the
        # underlying data, and so does this: the unbound base-type operations,
        # and type checks that call nothing the program defined.
        if SUBCLASS(str, kind):
            path = STR_ADD("", path)
        elif SUBCLASS(bytes, kind):
            path = BYTES_DECODE(BYTES_ADD(b"", path), FS_ENCODING, FS_ERRORS)
        elif SUBCLASS(int, kind):
            return fd_target(INT_ADD(0, path))
        elif has_index(kind):
            return FD_OBJECT  # its __index__ is the program's code: not called here (see docs/sandbox.md)
        else:
            return None
    if not path:
        return None
    if path[0] != "/":
        if dir_fd is not None and type(dir_fd) is not int:
            return FD_OBJECT if has_index(type(dir_fd)) else None
        if type(dir_fd) is int and dir_fd >= 0:
            base = fd_target(dir_fd)
            if base is None or base[:1] != "/":
                return "/proc/self/fd/" + str(dir_fd) + "/" + path
        else:
            base = STATE.get("cwd") or cwd()
        path = base + "/" + path
    key = path if follow else path + "\x00"
    known = RESOLVED_PATHS.get(key)
    if known is not None:
        return known
    real = kernel_path(path, follow, 40)
    if real[:6] == "/proc/":  # not cached: /proc/self/fd/N changes with dup2, /proc/self with fork
        return own_proc(real, GETPID(), THREAD_ID())
    if path[:6] != "/proc/":
        if len(RESOLVED_PATHS) > 100000:
            RESOLVED_PATHS.clear()
        RESOLVED_PATHS[key] = real
    return real


def own_proc(path, pid, thread):
    """A path below this process's own /proc/PID as /proc/self/..., and below its
    thread's /proc/PID/task/TID as /proc/thread-self/...: the name the file has in
    every process of the run, which rules, messages and learned policies use (a
    literal PID would name another process in a child, or in the next run).
    Uses no globals: the rules compiler calls it too."""
    own = "/proc/%d" % pid
    size = len(own)
    if path[:size] != own or (len(path) > size and path[size] != "/"):
        return path
    rest = path[size:]
    task = "/task/%d" % thread
    if rest[:len(task)] == task and (len(rest) == len(task) or rest[len(task)] == "/"):
        return "/proc/thread-self" + rest[len(task):]
    return "/proc/self" + rest


def has_index(kind):
    """Whether objects of this type convert to an int (a file descriptor) by __index__,
    found in the types' own dicts: no attribute lookup the program could hook."""
    for base in TYPE_MRO(kind):
        if "__index__" in TYPE_DICT(base):
            return True
    return False


def fd_target(fd):
    """What file descriptor `fd` names now (never cached: dup2 re-points it)."""
    if fd < 0:
        return None
    try:
        target = READLINK("/proc/self/fd/" + INT_REPR(fd))
        if target[-10:] == " (deleted)" and FSTAT(fd).st_nlink == 0:
            target = target[:-10]  # the kernel's mark of a file with no name left: judged by the one it had
    except (OSError, ValueError):
        return None
    return target if target[:1] == "/" else "/proc/self/fd/" + INT_REPR(fd)


def kernel_path(path, follow, hops):
    """`path` (absolute) resolved the kernel's way: the directory by its cached real
    path, the last component by one lstat, a symlink followed to its final target."""
    cut = path.rfind("/")
    name = path[cut + 1:]
    if name == "" or name == "." or name == "..":
        real = REALPATH(path)  # the directory itself
        return real if real is not None else resolve_missing(path)
    base = DIRS.get(path[:cut]) or real_dir(path[:cut])
    if base is None:
        return resolve_missing(path)
    full = (base if base != "/" else "") + "/" + name
    if not follow:
        return full
    try:
        info = LSTAT(full)
    except (OSError, ValueError):
        return full  # nothing there (yet): created as named
    if info.st_mode & 0o170000 != 0o120000:
        STATE["info"] = (full, info)  # inode_denied's stat, saved a syscall
        return full
    if hops <= 0:
        return full  # the kernel gives up too (ELOOP)
    try:
        target = READLINK(full)
    except (OSError, ValueError):
        return full
    if target[:1] != "/":
        target = (base if base != "/" else "") + "/" + target
    return kernel_path(target, True, hops - 1)


def real_dir(directory):
    """The real path of a directory, cached by its spelling (forget_paths empties
    the cache when the program changes names), or None when it does not exist."""
    if directory == "":
        return "/"
    real = DIRS.get(directory)
    if real is None:
        real = REALPATH(directory)
        if real is None:
            return None
        if real[:6] != "/proc/" and directory[:6] != "/proc/":
            if len(DIRS) > 100000:
                DIRS.clear()
            DIRS[directory] = real
    return real


def resolve_missing(path):
    """A path that does not exist (yet): resolve its longest existing parent."""
    head = path
    tail = ""
    while True:
        cut = head.rfind("/")
        if cut <= 0:
            return normalise(path)
        tail = head[cut:] + tail
        head = head[:cut]
        real = REALPATH(head)
        if real is not None:
            return normalise(real + tail)


def normalise(path):
    parts = []
    for part in path.split("/"):
        if part == "" or part == ".":
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/" + "/".join(parts)


def forget_paths():
    """The program changed the file system's names: resolutions may differ now."""
    RESOLVED_PATHS.clear()
    DIRS.clear()
    SPOTS.clear()
    QUIET_DIRS.clear()
    QUIET_PATHS.clear()
    QUIET.clear()
    STATE.pop("info", None)
    for key in [k for k in CACHE if k[:4] in ("read", "writ")]:
        del CACHE[key]


# --- handlers: one per audit event -------------------------------------------


def on_open(args):
    path, flags = args[0], args[2]
    if type(path) is int or type(flags) is not int:
        return None  # a descriptor already open (judged when it was opened)
    if flags == 0 and type(args[1]) is str:
        flags = fopen_flags(args[1])
    # the kernel does not follow a last-component symlink under O_NOFOLLOW, nor when
    # creating exclusively (O_CREAT|O_EXCL fails on any existing entry, dangling or not)
    follow = not (flags & O_NOFOLLOW or (flags & O_CREAT and flags & O_EXCL))
    if follow and type(path) is str and path:
        key = path if path[0] == "/" else (STATE.get("cwd") or cwd()) + "/" + path
        if key + WANTS[flags & ACCESS_FLAGS] in QUIET:
            return None  # this path, this access: decided already, nothing to say (cleared by forget_paths)
        if open_quietly(key, flags):
            quiet_for_native(path, key)
            return None
    real = resolve(path, None, follow)
    if real is None:
        return None
    if real[:6] == "/proc/":
        special = special_file(real)
        if special is not None:
            return special
    if not flags & WRITE_FLAGS:
        found = check("read", real, "open")
        if found is not None and found[3] == 2 and REALPATH(real) is None:
            return None  # nothing there to read: the OS answers FileNotFoundError, as to any probe of a config file
        return found
    return by_access(real, flags, "open")


def by_access(real, flags, op):
    """The write and the read an open with `flags` makes, each judged: O_RDWR reads too, whatever the
    write's finding (an allowance still to journal is no verdict on the read)."""
    write = check("write", real, op) if flags & WRITE_FLAGS else None
    if type(write) is str:
        return write  # a quiet refusal (a bytecode cache outside the program's tree)
    read = None if flags & O_WRONLY else check("read", real, op)
    if write is None or read is None:
        return write or read
    if MODE == 1 and (write[3] >= 2 or read[3] >= 2):  # refused: one denial (the write's first), and the
        return write if write[3] >= 2 else read         # half that was allowed is not news
    return [write, read]


def open_quietly(path, flags):
    """The common case, decided by the directory: True when opening `path` (absolute)
    is allowed with nothing to journal.  The directory's real path and the rules
    that can match a name in it are cached together; the last component costs one
    lstat (a symlink, a hard link to a denied file, a denial or a first journaled
    allowance leave it to the general path)."""
    cut = path.rfind("/")
    name = path[cut + 1:]
    if name == "" or name == "." or name == ".." or path[:6] == "/proc/":
        return False
    spot = SPOTS.get(path[:cut])
    if spot is None:
        real = real_dir(path[:cut])
        if real is None or real[:6] == "/proc/":
            return False
        spot = [real if real != "/" else "", None, None]
        SPOTS[path[:cut]] = spot
    full = spot[0] + "/" + name
    try:
        info = LSTAT(full)
    except (OSError, ValueError):
        return False
    if info.st_mode & 0o170000 == 0o120000 or info.st_nlink > 1:
        return False
    write = flags & WRITE_FLAGS
    if write and not quiet_in(spot, 2, "write", full, name):
        return False
    if not flags & O_WRONLY and not quiet_in(spot, 1, "read", full, name):
        return False
    QUIET[path + WANTS[flags & ACCESS_FLAGS]] = 1
    return True


def quiet_for_native(spelled, path):
    """Let the C side answer the next opens in this directory itself (see quiet_open in
    _native/sandbox.c): keyed by the directory as the program spells it, with, for
    each access, the names it may open quietly (True: all; a tuple of '*' globs split
    on '*'); the C side looks at the file by the path as spelled.  Only what is known
    to need no journal: an access whose directory has a deny rule that could match a
    name, or whose allowance was not yet journaled, stays with open_quietly."""
    spot = SPOTS.get(path[:path.rfind("/")])
    if spot is None:
        return
    read, write = native_names(spot[1], "read", spot[0]), native_names(spot[2], "write", spot[0])
    if read is not None or write is not None:
        if len(QUIET_DIRS) > 100000:
            QUIET_DIRS.clear()
        QUIET_DIRS[spelled[:spelled.rfind("/") + 1]] = (read, write)


def native_names(state, perm, directory):
    if state is None or state[0]:
        return None
    if perm == "read" and STR_ADD(directory, "/").startswith(IMPLICIT_READ_ROOTS):
        # every name here is implicitly readable: quiet unless an allowance is still to be journaled
        return True if state[3] or not (state[2] or state[1]) else None
    if not state[3]:
        return None
    if state[2]:
        return True
    names = []
    for how, what, _origin in state[1]:
        if how == 0:
            return True
        if how == 5:
            names.append(what)
        elif how == 1:
            names.append((what,))
    return tuple(names) if names else None


def quiet_in(spot, slot, perm, full, name):
    """Whether `perm` on the file `name` of this directory is allowed with nothing to journal."""
    state = spot[slot]
    if state is None:
        rules = RULES[perm]
        directory = spot[0]
        # [deny plan, allow plan, whole-directory allowance, the directory's allowance journaled]
        state = [dir_plan(directory, rules[1]), dir_plan(directory, rules[0]), rules[2] is not None,
                 (perm + "\x00" + directory + "/*") in NOTED]
        spot[slot] = state
    if state[0] and plan_match(state[0], full, name) is not None:
        return False
    if state[2] or (state[1] and plan_match(state[1], full, name) is not None):
        if state[3]:
            return True
        if (perm + "\x00" + spot[0] + "/*") in NOTED:
            state[3] = True
            return True
        return False  # the first allowance in this directory: journaled by the general path
    return implicit(perm, full)


def fopen_flags(mode):
    """C code opening with fopen (Py_fopen: SSLContext.keylog_filename, ...) reports
    its mode string with no flags: judge the write it makes as a write."""
    if "a" in mode:
        return O_WRONLY | O_APPEND
    if "w" in mode or "x" in mode or "+" in mode:
        return O_WRONLY | O_TRUNC if "+" not in mode else O_RDWR
    return 0


def special_file(real):
    """Files that give more than their name says: other processes' environment, memory."""
    if real[:6] != "/proc/":
        return None
    if real.endswith("/environ"):
        return check("env", "*", "read " + real)
    if real.endswith("/mem"):
        return check("ffi", "memory", "open " + real)
    return None


def absolute_open(call, kwargs):
    """os.open(path, flags, dir_fd=fd): the `open` audit event does not carry
    dir_fd, so the guard hands os.open the absolute path instead; the event
    then names the file the OS opens.  (Same file; only a directory renamed
    between the two steps would differ.)"""
    if not kwargs or kwargs.get("dir_fd") is None:
        return (call, kwargs)
    path = call[0] if call else kwargs.get("path")
    if type(path) is bytes:
        path = path.decode(FS_ENCODING, FS_ERRORS)
    if type(path) is not str or path[:1] == "/":
        return (call, kwargs)
    base = REALPATH("/proc/self/fd/" + str(kwargs["dir_fd"]))
    if base is None:
        return (call, kwargs)
    rest = dict(kwargs)
    del rest["dir_fd"]
    if call:
        return ((base + "/" + path,) + tuple(call[1:]), rest)
    rest["path"] = base + "/" + path
    return (call, rest)


def path_handler(perm, op, path_index, fd_index):
    follow = op not in ENTRY_OPS  # remove, rmdir, mkdir...: the kernel acts on the entry, not on a link's target
    def handler(args):
        if len(args) <= path_index:
            return None
        dir_fd = args[fd_index] if 0 <= fd_index < len(args) else None
        real = resolve(args[path_index], dir_fd, follow)
        if real is None:
            return None
        if perm == "write" and op in NAMESPACE_OPS:
            forget_paths()
        return check(perm, real, op)
    return handler


def on_listdir(args):
    path = args[0] if args else None
    real = resolve(path if path is not None else ".", None)
    return check("read", real, "listdir") if real is not None else None


def on_glob(args):
    pattern = args[0]
    if type(pattern) is bytes:
        pattern = pattern.decode(FS_ENCODING, FS_ERRORS)
    if type(pattern) is not str:
        return None
    fixed = []
    for part in pattern.split("/"):
        if "*" in part or "?" in part or "[" in part:
            break
        fixed.append(part)
    base = "/".join(fixed) or ("/" if pattern[:1] == "/" else ".")
    root = args[2] if len(args) > 2 and type(args[2]) in (str, bytes) else None
    if root is not None and base[:1] != "/":
        root = root.decode(FS_ENCODING, FS_ERRORS) if type(root) is bytes else root
        base = root + "/" + base
    dir_fd = args[3] if len(args) > 3 else None
    real = resolve(base, dir_fd)
    return check("read", real, "glob") if real is not None else None


def on_rename(args):
    src = resolve(args[0], args[2] if len(args) > 2 else None, False)
    dst = resolve(args[1], args[3] if len(args) > 3 else None, False)
    forget_paths()
    return pick(check("write", src, "rename") if src else None, check("write", dst, "rename") if dst else None)


def on_link(args):
    """A hard link is a second name for the same file: writing through it writes the
    source, so it is judged as a write of the source (followed: os.link's default)."""
    src = resolve(args[0], args[2] if len(args) > 2 else None)
    dst = resolve(args[1], args[3] if len(args) > 3 else None, False)
    forget_paths()
    found = []
    if src is not None:
        read = check("read", src, "link")
        if read is not None:
            found.append(read)
        write = check("write", src, "link")
        if write is not None:
            found.append(write)
    if dst is not None:
        write = check("write", dst, "link")
        if write is not None:
            found.append(write)
    return found or None


def on_symlink(args):
    dst = resolve(args[1], args[2] if len(args) > 2 else None, False)
    forget_paths()
    return check("write", dst, "symlink") if dst is not None else None


def on_copytree(args):
    src = resolve(args[0], None)
    dst = resolve(args[1], None)
    return pick(check("read", src, "copytree") if src else None, check("write", dst, "copytree") if dst else None)


def note_sqlite_uri(call, kwargs):
    """Before _sqlite3.connect (its event does not say): whether this thread's next connection takes its
    'file:' name as a URI only (uri=True), so that on_sqlite does not judge the literal file name too."""
    uri = call[7] if len(call) > 7 else (kwargs.get("uri") if type(kwargs) is dict else None)
    database = call[0] if call else (kwargs.get("database") if type(kwargs) is dict else None)
    STATE[("sqlite uri", THREAD_ID())] = database if (uri is True or (type(uri) is int and uri)) \
        and type(database) is str else None
    return (call, kwargs)


def on_sqlite(args):
    database = args[0] if args else None
    uri = STATE.pop(("sqlite uri", THREAD_ID()), None)
    return sqlite_file(database, "sqlite3.connect", uri is not None and uri == database and type(database) is str)


def sqlite_file(database, op, uri_only=False):
    """A database named by str or bytes: a path, or a 'file:' URI (judged as the URI's
    path, and as the literal name too where that could be opened); read for mode=ro.
    A name of another type reaches here only when sqlite3.Connection() itself was
    handed an object with __fspath__ (the guarded connect converts it first): its
    __fspath__ is the program's code, not called in a verdict, so what it names is
    not known and the open is judged as a write nobody named."""
    kind = type(database)
    if kind is not str and kind is not bytes:
        if database is None:
            return None
        if SUBCLASS(str, kind):
            database = STR_ADD("", database)
        elif SUBCLASS(bytes, kind):
            database = BYTES_ADD(b"", database)
        else:
            return check("write", FSPATH_DATABASE, op)
    if type(database) is bytes:
        database = BYTES_DECODE(database, FS_ENCODING, FS_ERRORS)
    if database in ("", ":memory:"):
        return None
    perm = "write"
    found = []
    if database[:5] == "file:":
        path, query = uri_path(database)
        mode = uri_param(query, "mode")
        if mode == "memory" or path in ("", ":memory:"):
            path = None
        if mode == "ro":
            perm = "read"
        if path is not None:
            real = resolve(path, None)
            if real is not None:
                found.append(check(perm, real, op))
        literal = None if uri_only else resolve(database, None)  # without uri=True the name is a file name
        if literal is not None and REALPATH(literal.rpartition("/")[0] or "/") is not None:
            found.append(check("write", literal, op))
    else:
        real = resolve(database, None)
        if real is not None:
            found.append(check(perm, real, op))
    found = [f for f in found if f is not None]
    return found or None


def on_sqlite_handle(args):
    """A connection being opened (sqlite3.connect, sqlite3.Connection(), a second
    __init__): SQLite's own authorizer goes on its handle from C before the program
    gets it, so ATTACH and VACUUM INTO are judged; the program's set_authorizer is
    guarded to keep the judgement (guard_module)."""
    conn = args[0] if args else None
    if conn is None or SQLITE_ARM is None or SQLITE_ARM(conn):  # (degraded mode has no guards)
        return None
    return check("write", UNARMED_DATABASE, "sqlite3.connect")


def on_sqlite_attach(args):
    """SQLite's authorizer saw an ATTACH (or the one a VACUUM INTO makes): the name
    when it was a literal, None when SQL computed it (a bound parameter)."""
    name = args[0] if args else None
    if name is None:
        return check("write", COMPUTED_DATABASE, "sqlite3 ATTACH")
    return sqlite_file(name, "sqlite3 ATTACH")


def own_authorizer(call, kwargs):
    """set_authorizer(callback): pyward's authorizer, composed with the program's."""
    if len(call) == 2:
        return ((call[0], SQLITE_AUTHORIZER(call[1])), kwargs)
    if len(call) == 1 and type(kwargs) is dict and "authorizer_callback" in kwargs:
        rest = dict(kwargs)
        inner = rest.pop("authorizer_callback")
        return ((call[0], SQLITE_AUTHORIZER(inner)), rest or None)
    return (call, kwargs)  # the original raises its own TypeError


def guard_authorizer_setter(cls):
    original = TYPE_DICT(cls).get("set_authorizer")
    if type(original) is METHOD_DESCRIPTOR:
        GUARD_METHOD(cls, "set_authorizer", NATIVE_GUARD(None, original, own_authorizer))


# C functions that open files with no audit event: guarded as their modules are made


def guard_created(call, kwargs, module):
    """After _imp.create_dynamic or create_builtin: the module, guarded (single-phase
    modules are whole here)."""
    guard_module(module)
    return module


def guard_executed(call, kwargs, result):
    """After _imp.exec_dynamic: the module its types and functions were just made in."""
    if call:
        guard_module(call[0])
    return result


def guard_module(module):
    """An extension module whose C code opens files with no audit event gets its guards
    here, before any code of the program sees it (a second copy made by
    importlib.util.module_from_spec comes through here too)."""
    if type(module) is not MODULE_TYPE:
        return
    space = MODULE_DICT(module)
    name = space.get("__name__")
    if name == "_sqlite3":
        guard_function_with(space, "connect", None, note_sqlite_uri, ((0, "database"),))
        cls = space.get("Connection")
        if type(cls) is type:
            guard_authorizer_setter(cls)
            SQLITE_BIND(cls)
    elif name == "readline":
        for function, position in READLINE_FILES:
            guard_function(space, function, "pyward.readline." + function, ((position, None),))
    elif name == "_ssl":
        cls = space.get("_SSLContext")
        if type(cls) is type:
            guard_c_method(cls, "load_verify_locations", "pyward.ssl.load_verify_locations",
                           ((1, "cafile"), (2, "capath")))
            guard_c_method(cls, "load_cert_chain", "pyward.ssl.load_cert_chain", ((1, "certfile"), (2, "keyfile")))
            guard_c_method(cls, "load_dh_params", None, ((1, None),))  # its "open" event judges the str
    elif name == "_signal":  # a second copy: its handlers deferred in a verdict too, its pidfd calls judged
        if SHIELD_SIGNALS is not None:
            SHIELD_SIGNALS(module)
        guard_function(space, "pidfd_send_signal", "pyward.pidfd_send_signal", None)
    elif name == "uvloop.loop":  # libuv's sockets, lookups and processes raise no audit event
        guard_methods(space.get("Loop"), LOOP_METHODS, "pyward.uvloop.")
    elif name == "zmq.backend.cython._zmq":  # libzmq's sockets raise no audit event either
        guard_methods(space.get("Socket"), ("bind", "connect"), "pyward.zmq.")
    elif name in NATIVE_IO_ENTRIES:  # libraries that open files and sockets in C: judged where they are named
        guard_native_io(space, NATIVE_IO_ENTRIES[name])
    elif name == "_posixshmem":
        guard_function(space, "shm_open", "pyward.shm_open", None)
        guard_function(space, "shm_unlink", "pyward.shm_unlink", None)
    elif name == "posix" and module is not POSIX_MODULE:  # a second copy: the guards install.py gave the first
        guard_function_with(space, "open", None, absolute_open)
        guard_function(space, "pidfd_open", "pyward.pidfd_open", None)
        guard_function(space, "mkfifo", "pyward.mkfifo", ((0, "path"),))
        guard_function(space, "mknod", "pyward.mknod", ((0, "path"),))
        for function in ("execve", "posix_spawn", "posix_spawnp"):
            original = space.get(function)
            if original is not None and type(original) is not GUARD_TYPE and (PAYLOAD is not None
                                                                                or function != "execve"):
                space[function] = NATIVE_GUARD(*spawn_guard(function, original))
    elif name == "_posixsubprocess" and module is not POSIXSUBPROCESS_MODULE:
        original = space.get("fork_exec")
        if original is not None and type(original) is not GUARD_TYPE:
            space["fork_exec"] = NATIVE_GUARD("pyward.fork_exec", original,
                                              inject_fork_exec if PAYLOAD is not None else None, None,
                                              ((5, None, "env"),) if PAYLOAD is not None else None)
    elif name == "_imp":  # the process's, or a fresh copy (module_from_spec): it makes the modules above
        for function, after in (("create_dynamic", guard_created), ("exec_dynamic", guard_executed),
                                ("create_builtin", guard_created)):
            original = space.get(function)
            if original is not None and type(original) is not GUARD_TYPE:
                space[function] = NATIVE_GUARD(None, original, None, after)
                if function != "create_builtin":  # (see on_code_new)
                    STATE.setdefault("extension inits", []).append(space[function])


def guard_methods(cls, methods, prefix):
    """A C (or Cython) class's methods as Guards raising `prefix + method`; a method that starts a process
    (`subprocess_*`) hands an explicit `env=` the sandbox's variables, so that a Python child is armed."""
    if type(cls) is type:
        for method in methods:
            original = TYPE_DICT(cls).get(method)
            if original is not None and type(original) is not GUARD_TYPE:
                arms = PAYLOAD is not None and method[:11] == "subprocess_"
                try:
                    GUARD_METHOD(cls, method, NATIVE_GUARD(prefix + method, original,
                                                           inject_env_keyword if arms else None, None,
                                                           ((None, "env", "env"),) if arms else None))
                except TypeError:  # a class of a shape pyward does not know: the import goes on, unguarded
                    return


def guard_native_io(space, entries):
    for owner, name, event, paths in entries:
        if owner is None:
            guard_function(space, name, event, paths)
            continue
        cls = space.get(owner)
        original = TYPE_DICT(cls).get(name) if type(cls) is type else None
        if type(original) is STATIC_METHOD:  # guarded inside: GUARD_METHOD puts it back as a static method
            original = original.__func__
        if original is not None and type(original) is not GUARD_TYPE:
            try:
                GUARD_METHOD(cls, name, NATIVE_GUARD(event, original, None, None, paths))
            except TypeError:  # a class of a shape pyward does not know: the import goes on, unguarded
                pass


def guard_function(space, name, event, paths):
    original = space.get(name)
    if original is not None and type(original) is not GUARD_TYPE:
        space[name] = NATIVE_GUARD(event, original, None, None, paths)


def guard_function_with(space, name, event, before, paths=None):
    original = space.get(name)
    if original is not None and type(original) is not GUARD_TYPE:
        space[name] = NATIVE_GUARD(event, original, before, None, paths)


def guard_c_method(cls, name, event, paths):
    original = TYPE_DICT(cls).get(name)
    if type(original) is METHOD_DESCRIPTOR:
        GUARD_METHOD(cls, name, NATIVE_GUARD(event, original, None, None, paths))


def path_of(value):
    """The path a str or bytes argument names (a C function's fspath already done by its guard)."""
    kind = type(value)
    if kind is str or kind is bytes or SUBCLASS(str, kind) or SUBCLASS(bytes, kind):
        return resolve(value, None)
    return None


def file_arguments(perm, op, spec):
    """A guarded C function reading the files its arguments name (ssl's certificates)."""
    def handler(args):
        call, kwargs = args[0], args[1]
        found = []
        for position, keyword in spec:
            if len(call) > position:
                value = call[position]
            else:
                value = kwargs.get(keyword) if type(kwargs) is dict else None
            real = path_of(value) if value is not None else None
            if real is not None:
                item = check(perm, real, op)
                if item is not None and item[3] == 2 and perm == "read" and REALPATH(real) is None:
                    continue  # nothing there to read: the OS answers, as to a read-only open of it
                if item is not None:
                    found.append(item)
        return found or None
    return handler


def on_readline(perm, position, default):
    """readline's history and init files, read and written by the C library."""
    op = "readline"
    def handler(args):
        call = args[0]
        value = call[position] if len(call) > position else None
        real = path_of(value) if value is not None else readline_default(default)
        return check(perm, real, op) if real is not None else None
    return handler


def readline_default(which):
    """The file GNU readline uses when given none: $HOME/.history; $INPUTRC, else
    ~/.inputrc, else /etc/inputrc."""
    home = ENV_GET("HOME") if ENV_GET is not None else None
    if which == "history":
        return resolve(home + "/.history", None) if home else None
    named = ENV_GET("INPUTRC") if ENV_GET is not None else None
    if named:
        return resolve(named, None)
    if home:
        own = resolve(home + "/.inputrc", None)
        if own is not None and REALPATH(own) is not None:
            return own
    return "/etc/inputrc"


def on_shm(op):
    """POSIX shared memory: glibc opens /dev/shm/NAME (leading slashes dropped), as
    open(2) of that file with the given flags, never following a symlink."""
    def handler(args):
        call, kwargs = args[0], args[1]
        name = call[0] if call else (kwargs.get("path") if type(kwargs) is dict else None)
        kind = type(name)
        if kind is not str:
            if not SUBCLASS(str, kind):
                return None  # the original raises TypeError
            name = STR_ADD("", name)
        real = resolve("/dev/shm/" + name.lstrip("/"), None, False)
        if real is None:
            return None
        if op == "shm_unlink":
            forget_paths()
            return check("write", real, op)
        flags = call[1] if len(call) > 1 else (kwargs.get("flags") if type(kwargs) is dict else None)
        if type(flags) is not int:
            return None
        return by_access(real, flags, op)
    return handler


def uri_path(uri):
    """(percent-decoded path, query) of an SQLite 'file:' URI."""
    rest = uri[5:]
    if rest[:2] == "//":
        cut = rest.find("/", 2)
        rest = rest[cut:] if cut >= 0 else ""
    path, _, query = rest.partition("?")
    path = path.partition("#")[0]
    out = []
    i = 0
    while i < len(path):
        char = path[i]
        if char == "%" and len(path[i + 1:i + 3]) == 2:
            try:
                out.append(chr(int(path[i + 1:i + 3], 16)))
                i += 3
                continue
            except ValueError:
                pass
        out.append(char)
        i += 1
    return ("".join(out), query.partition("#")[0])


def uri_param(query, name):
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if key == name:
            return value
    return None


def pick(first, second):
    if first is None:
        return second
    if second is None:
        return first
    return [first, second]


def on_chdir(args):
    STATE.pop("cwd", None)
    QUIET_DIRS.clear()  # their keys spell relative paths from the old one
    QUIET_PATHS.clear()
    return None


# network


def on_address(op):
    def handler(args):
        if len(args) < 2 or args[1] is None:
            return None
        resource = address(args[0], args[1], op == "bind")
        return check("net", resource, op) if resource is not None else None
    return handler


def address(sock, addr, binding):
    family = FAMILY(sock)
    if family == AF_UNIX:
        return unix_resource(addr)
    if family == AF_INET or family == AF_INET6:
        if type(addr) is not tuple or len(addr) < 2:
            return None
        host, port = addr[0], addr[1]
        if type(host) is bytes:
            host = host.decode("ascii", "replace")
        if type(host) is not str or type(port) is not int:
            return None
        return inet_resource(host.lower(), port, family, binding)
    return "raw:family " + str(family)


def unix_resource(addr):
    """A unix socket's name as a resource: a file's real path, or an abstract name (@)."""
    if type(addr) is bytes:
        if addr[:1] == b"\x00":
            return "unix:@" + addr[1:].decode("utf-8", "backslashreplace")
        addr = addr.decode(FS_ENCODING, FS_ERRORS)
    if type(addr) is not str:
        return None
    if addr[:1] == "\x00":  # the bytes the kernel gets, spelled as a bytes name is
        try:
            return "unix:@" + addr[1:].encode(FS_ENCODING, FS_ERRORS).decode("utf-8", "backslashreplace")
        except UnicodeError:  # socket cannot encode it either: the call fails
            return "unix:@" + addr[1:]
    real = resolve(addr, None)
    return "unix:" + real if real is not None else None


def with_port(host, port):
    return ("[" + host + "]:" if ":" in host else host + ":") + str(port)


def inet_resource(host, port, family, binding):
    """The resource a connect/sendto/bind is judged as: rules compare addresses,
    not spellings.  'shown' alone, or 'shown' then, after NUL bytes, the forms the
    OS will really use, each '+form' (judged like the shown one: allowed by a rule
    on it, denied by a rule on it) or '-form' (a deny rule on it denies too)."""
    if host == "" and family == AF_INET6:
        number = "::"
    else:
        number = literal(host) if family == AF_INET or ":" in host else None
    forms = []
    if number is None:  # a name: CPython resolves it in C after this event; judge where it leads
        shown = host
        found = RESOLVE(host, family) if RESOLVE is not None else []
        if found:
            forms.append("+" + with_port(found[0], port))  # CPython connects to the first address
    else:
        shown = number
        if number == "0.0.0.0" or number == "::":
            loopback = "127.0.0.1" if number == "0.0.0.0" else "::1"
            # a connect to the unspecified address reaches this host; a bind to it listens on
            # every interface, this host's included
            forms.append(("-" if binding else "+") + with_port(loopback, port))
        name = RESOLVED.get(number)  # an address a lookup of an allowed name gave
        if name is not None:
            forms.append("+" + with_port(name, port))
    shown = with_port(shown, port)
    if not forms:
        return shown
    return shown + "\x00" + "\x00".join(forms)


def literal(host):
    """The canonical text of a numeric address (every inet_aton spelling: '127.1',
    '2130706433', '0x7f000001', '0177.0.0.1'; a v4-mapped v6 address as v4; the
    empty host as 0.0.0.0), or None for a name."""
    if host == "":
        return "0.0.0.0"
    if host == "<broadcast>":
        return "255.255.255.255"
    if ":" in host:
        if INET_PTON is None:
            return None
        bare = host.partition("%")[0]  # a scope id names the interface, not the address
        try:
            raw = INET_PTON(AF_INET6, bare)
        except (OSError, ValueError):
            return None
        if raw[:12] == V4_MAPPED:
            return INET_NTOA(raw[12:])
        return INET_NTOP(AF_INET6, raw)
    for char in host:  # inet_aton(3) ignores what follows a space; getaddrinfo(3) then sees a name
        if char not in HEX_DOT:
            return None
    try:
        return INET_NTOA(INET_ATON(host))
    except (OSError, ValueError):
        return None


def on_dns(args):
    if not args:
        return None
    host = args[0]
    if type(host) is bytes:
        host = host.decode("ascii", "replace")
    if type(host) is tuple and host:  # getnameinfo(sockaddr, flags)
        host = host[0]
    if type(host) is not str or not host:
        return None
    host = host.lower()
    if host == "localhost" or literal(host) is not None:
        return None  # no query leaves the machine; the connect that follows is checked
    return check("net", host, "dns lookup")


# uvloop's event loop: libuv makes its sockets, lookups and processes in C, with no audit event; its
# methods (LOOP_METHODS) are guarded (guard_module) and judged here as the calls they stand for.  A socket
# the program made itself (sock=...) was judged when it connected or bound.


def loop_argument(call, kwargs, position, name):
    """A loop method's argument, by position (after self) or keyword."""
    if len(call) > position:
        return call[position]
    return kwargs.get(name) if type(kwargs) is dict else None


def loop_inet(host, port, op, binding):
    """(host, port) of a loop method: a DNS lookup of a name, then the connect or bind."""
    if type(host) is bytes:
        host = host.decode("ascii", "replace")
    if type(port) is str and port.isdigit():
        port = int(port)
    if type(host) is not str or type(port) is not int:
        return []
    found = []
    lookup = on_dns((host,)) if host else None
    if lookup is not None:
        found.append(lookup)
    family = AF_INET6 if ":" in host else AF_INET
    judged = check("net", inet_resource(host.lower(), port, family, binding), op)
    if judged is not None:
        found.append(judged)
    return found


def on_loop(method):
    def handler(args):
        call, kwargs = args[0], args[1]
        if type(call) is not tuple:
            return None
        if method == "getaddrinfo":
            return on_dns((loop_argument(call, kwargs, 1, "host"),))
        if method == "getnameinfo":
            return on_reverse_dns((loop_argument(call, kwargs, 1, "sockaddr"),))
        if method == "sock_connect":
            sock, addr = loop_argument(call, kwargs, 1, "sock"), loop_argument(call, kwargs, 2, "address")
            resource = address(sock, addr, False) if sock is not None and addr is not None else None
            return check("net", resource, "connect") if resource is not None else None
        if method == "subprocess_exec":
            return check_run(loop_argument(call, kwargs, 2, "program"), kwargs.get("cwd") if type(kwargs) is dict
                             else None, "uvloop subprocess_exec")
        if method == "subprocess_shell":
            return check_run("/bin/sh", None, "uvloop subprocess_shell")
        if loop_argument(call, kwargs, 99, "sock") is not None:
            return None  # the program's own socket: judged when it connected or bound
        found = []
        if method == "create_connection" or method == "create_server":
            host, port = loop_argument(call, kwargs, 2, "host"), loop_argument(call, kwargs, 3, "port")
            hosts = host if type(host) in (list, tuple) else [host]
            for each in hosts:
                found += loop_inet("" if each is None else each, port, "connect" if method == "create_connection"
                                   else "bind", method == "create_server")
            local = loop_argument(call, kwargs, 99, "local_addr")
            if type(local) is tuple and len(local) >= 2:
                found += loop_inet(local[0], local[1], "bind", True)
        elif method == "create_datagram_endpoint":
            for position, name, op in ((2, "local_addr", "bind"), (3, "remote_addr", "connect")):
                pair = loop_argument(call, kwargs, position, name)
                if type(pair) is tuple and len(pair) >= 2:
                    found += loop_inet(pair[0], pair[1], op, op == "bind")
        else:  # create_unix_connection, create_unix_server
            path = loop_argument(call, kwargs, 2, "path")
            resource = unix_resource(path) if path is not None else None
            judged = check("net", resource, "connect" if method == "create_unix_connection" else "bind") \
                if resource is not None else None
            if judged is not None:
                found.append(judged)
        return found or None
    return handler


def on_zmq(op):
    """A ZeroMQ socket's bind or connect (libzmq's own sockets): 'tcp://host:port' as a connect or bind
    ('*' the unspecified address, port '*' one the OS chooses; 'local;remote' binds local first),
    'ipc://path' as a unix socket, 'inproc://' as nothing (in the process), any other transport as
    its endpoint, which only a rule naming it allows."""
    def handler(args):
        call, kwargs = args[0], args[1]
        if type(call) is not tuple:
            return None
        endpoint = loop_argument(call, kwargs, 1, "addr")
        if type(endpoint) is bytes:
            endpoint = endpoint.decode("utf-8", "replace")
        if type(endpoint) is not str:
            return None  # pyzmq's own TypeError
        transport, sep, rest = endpoint.partition("://")
        if not sep or transport == "inproc":
            return None
        if transport == "ipc":
            resource = unix_resource(rest) if rest and rest != "*" else None
            return check("net", resource, op) if resource is not None else None
        if transport != "tcp":
            return check("net", endpoint, op)
        found = []
        parts = rest.split(";")
        for index in range(len(parts)):
            host, _, port = parts[index].rpartition(":")
            binding = op == "bind" or index < len(parts) - 1
            host = host[1:-1] if host[:1] == "[" and host[-1:] == "]" else host
            found += loop_inet("" if host == "*" else host, 0 if port == "*" else port,
                               "bind" if binding else "connect", binding)
        return found or None
    return handler


def call_argument(args, position, name):
    """A guarded call's argument by position or keyword (args: the event's (call, kwargs))."""
    call, kwargs = args[0], args[1]
    if type(call) is not tuple:
        return None
    return loop_argument(call, kwargs, position, name)


def text_path(value):
    """A str or bytes argument as a str path, or None (a file object, a buffer: no file named)."""
    if type(value) is bytes:
        return BYTES_DECODE(value, FS_ENCODING, FS_ERRORS)
    return value if type(value) is str else None


def on_duckdb_connect(args):
    """duckdb.connect(database, read_only): DuckDB opens the file (and its '.wal' beside it) in C++."""
    database = text_path(call_argument(args, 0, "database"))
    if database is None or database == "" or database[:8] == ":memory:" or database[:3] == "md:":
        return None  # in memory; MotherDuck's service (its connection is DuckDB's own, unseen: learn.NATIVE_IO)
    real = resolve(database, None)
    if real is None:
        return None
    if call_argument(args, 1, "read_only") is True:
        return check("read", real, "duckdb connect")
    judged = (check("write", real, "duckdb connect"), check("write", real + ".wal", "duckdb connect"))
    found = [item for item in judged if item is not None]
    return found or None


def on_h5py(op):
    """h5py.h5f.open(name, flags) and create(name): HDF5 opens the file in C; ACC_RDONLY (0) reads."""
    def handler(args):
        real = path_of(call_argument(args, 0, "name"))
        if real is None:
            return None
        reading = op == "open" and call_argument(args, 1, "flags") == 0  # the default is ACC_RDWR
        return check("read" if reading else "write", real, "h5py " + op)
    return handler


def on_polars(op, *arguments):
    """Polars' scans, reads, sinks and writes: its Rust code opens the files named by the arguments
    (position, keyword), each a path or a list of them (a str: polars has made a Path one; bytes are data, a
    file object none of its files).  A glob is judged as its directory up to the first pattern; a URL
    other than file:// is not a local file (learn.NATIVE_IO says so)."""
    perm = "read" if op[:4] in ("scan", "read") else "write"
    def handler(args):
        named = []
        for position, name in arguments:
            value = call_argument(args, position, name)
            named += value if type(value) is list or type(value) is tuple else (value,)
        found = []
        for source in named:
            if type(source) is not str or source == "":
                continue
            if source[:7] == "file://":
                source = source[7:]
            elif "://" in source:
                continue
            cut = len(source)
            for pattern in "*?[":
                at = source.find(pattern)
                if at != -1 and at < cut:
                    cut = at
            if cut < len(source):
                source = source[:source.rfind("/", 0, cut) + 1] or "."
            real = resolve(source, None)
            judged = check(perm, real, "polars " + op) if real is not None else None
            if judged is not None:
                found.append(judged)
        return found or None
    return handler


def on_lxml(op, position):
    """lxml's parse(source) and ElementTree.write(file): libxml2 opens a path (or a file: URL) in C; a file
    object or another URL is not a file libxml2 opens by name."""
    def handler(args):
        source = text_path(call_argument(args, position, "source" if op == "parse" else "file"))
        if source is None:
            return None
        if source[:7] == "file://":
            source = source[7:]
        elif "://" in source:
            return None
        real = resolve(source, None)
        return check("read" if op == "parse" else "write", real, "lxml " + op) if real is not None else None
    return handler


def on_grpc_port(args):
    """A gRPC server's add_http2_port(address): its C core binds 'host:port' ('[v6]:port', 'unix:path')."""
    address = text_path(call_argument(args, 1, "address"))
    if address is None:
        return None
    if address[:5] == "unix:":
        resource = unix_resource(address[5:])
        return check("net", resource, "bind") if resource is not None else None
    host, _, port = address.rpartition(":")
    host = host[1:-1] if host[:1] == "[" and host[-1:] == "]" else host
    # (its own channels then connect to the port in C, unseen: learn keeps the host, any port)
    return loop_inet("" if host in ("", "*") else host, port, SERVER_BIND, True) or None


def on_reverse_dns(args):
    """gethostbyaddr / getnameinfo of an address: a query about it goes out (PTR)."""
    host = args[0] if args else None
    if type(host) is tuple and host:  # getnameinfo(sockaddr, flags)
        host = host[0]
    if type(host) is bytes:
        host = host.decode("ascii", "replace")
    if type(host) is not str:
        return None
    number = literal(host.lower())
    if number is None:
        return on_dns(args)  # a name is looked up first
    return check("net", number, "reverse dns lookup")


def on_socket_new(args):
    if len(args) < 3:
        return None
    family, kind = args[1], args[2]
    if kind == SOCK_RAW or family == AF_PACKET:
        return check("net", "raw:family " + str(family), "raw socket")
    return None


def record_addresses(call, kwargs, result):
    """After socket.getaddrinfo(host, ...): remember which addresses a name gave,
    so a connect to one of them counts as a connect to the allowed name."""
    if call and type(call[0]) is str and type(result) is list and literal(call[0].lower()) is None:
        host = call[0].lower()
        for entry in result:
            if type(entry) is tuple and len(entry) == 5 and type(entry[4]) is tuple and entry[4]:
                ip = entry[4][0]
                if type(ip) is str and ip != host:
                    ip = ip.lower()
                    RESOLVED[ip] = host
                    prefix = "net\x00[" + ip + "]" if ":" in ip else "net\x00" + ip + ":"
                    for key in [k for k in CACHE if k.startswith(prefix)]:
                        del CACHE[key]
    return result


# processes


def run_resource(name, directory):
    """'name-as-given\\0real path' for run rules to match either."""
    if type(name) is bytes:
        name = name.decode(FS_ENCODING, FS_ERRORS)
    if type(name) is not str or not name:
        return None
    real = ""
    if "/" in name:
        path = name if name[0] == "/" else (directory or cwd()) + "/" + name
        real = REALPATH(path) or normalise(path)
    else:
        for entry in search_path():
            candidate = REALPATH(entry + "/" + name)
            if candidate is not None:
                real = candidate
                break
    return name + "\x00" + real


def search_path():
    value = ENV_GET("PATH") if ENV_GET is not None else None
    return (value or "/usr/local/bin:/usr/bin:/bin").split(":")


def check_run(name, directory, op):
    resource = run_resource(name, directory)
    return check("run", resource, op) if resource is not None else None


def on_popen(args):
    executable, argv = args[0], args[1]
    directory = args[2] if len(args) > 2 and type(args[2]) is str else None
    if executable is None and type(argv) in (list, tuple) and argv:
        executable = argv[0]
    if type(argv) in (str, bytes) and executable is None:
        executable = argv
    return check_run(executable, directory, "subprocess.Popen")


def on_system(args):
    forget_paths()  # a child may change names (as for fork_exec)
    return check_run("sh", None, "os.system")


def on_exec(args):
    path = args[0]
    kind = type(path)
    if kind is not str and kind is not bytes and (SUBCLASS(int, kind) or has_index(kind)):
        # os.fexecve: runs what the descriptor holds (a memfd's code was never on disk)
        target = fd_target(INT_ADD(0, path)) if SUBCLASS(int, kind) else None
        target = target or "(a file descriptor)"
        return check("run", target + "\x00" + target, "os.fexecve")
    return check_run(path, None, "os.exec")


def on_posix_spawn(args):
    if RERUN is not None and len(args) > 2 and is_rerun(args[0], args[1], args[2]):
        journal_later("own", args[0], "pyward re-runs the program in a fresh process: " + args[0], "debug",
             {"operation": "re-run", "event": "os.posix_spawn"}, (None, None))
        return None
    forget_paths()  # a child may change names: subprocess's route on 3.13, as fork_exec's before
    return check_run(args[0], None, "os.exec")


def is_rerun(path, argv, env):
    """pyward's re-run (rerun.py): this command, in the environment and the
    directory the run started with, plus the variable naming its attempt and channel."""
    if path != RERUN[0] or type(argv) not in (list, tuple) or tuple(argv) != RERUN[1] or type(env) is not dict:
        return False
    marker = env.get(RERUN[4])
    if type(marker) is not str:
        return False
    attempt, _, fd = marker.partition(":")
    if not attempt.isdigit() or not fd.isdigit():
        return False
    rest = {}
    for key, value in env.items():
        if key != RERUN[4]:
            rest[key] = value
    return rest == RERUN[2] and GETCWD() == RERUN[3]


def on_kill(args):
    """A signal that reaches pyward's recorder (the process keeping the run's record)
    is refused in every mode: the program may not end its own record."""
    if len(args) < 2:
        return None
    target, signum = args[0], args[1]
    if type(target) is not int or type(signum) is not int or signum == 0:
        return None
    if target in PROTECTED_PIDS or -target in PROTECTED_PIDS or (target == -1 and PROTECTED_PIDS):
        return refuse_signal(INT_REPR(signum), "process " + INT_REPR(target), "kill")
    if SIGNALS_SCOPED and target > 0 and target != GETPID() and outside_the_run(target):
        return signal_refused("process " + INT_REPR(target), "signal " + INT_REPR(signum) + " to process "
                              + INT_REPR(target) + " denied: the process was not started by this run, and the "
                              "kernel wall keeps the run's signals inside it when the policy lets commands or "
                              "native code run (--no-kernel lifts that)", "kill", "pyward (kernel wall)", 5)
    return None


def outside_the_run(pid):
    """Whether the kernel refuses this run's signals to `pid` for its wall's scope: a
    process of the same user (another user's is refused anyway, as under python)."""
    try:
        KILL(pid, 0)
        return False
    except PermissionError:
        pass
    except OSError:
        return False
    try:
        return STAT("/proc/" + INT_REPR(pid)).st_uid == GETEUID()
    except (OSError, ValueError):
        return False


def refuse_signal(signum, whom, operation):
    return signal_refused(whom, "signal " + signum + " to " + whom + " denied: it reaches pyward's recorder, "
                          "the process that keeps this run's record", operation, "pyward (its recorder process)", 6)


def signal_refused(whom, message, operation, rule, depth):
    """Journaled after the verdict; `depth`: the program's frame above event_caller's."""
    event = {"pidfd_send_signal": "signal.pidfd_send_signal", "prlimit": "resource.prlimit"}.get(operation,
                                                                                                "os." + operation)
    journal_later("denied", whom, message, "warning",
                  {"permission": "process" if operation == "prlimit" else "signal", "operation": operation,
                   "event": event, "rule": rule}, locate(event_caller(depth)))
    return message


def on_prlimit(args):
    """resource.prlimit(pid, resource, limits): the recorder's limits are not the program's to
    set (a file size of 0 kills it at its next write, no descriptors stop its report)."""
    if len(args) < 3 or args[2] is None or type(args[0]) is not int or args[0] not in PROTECTED_PIDS:
        return None
    pid = INT_REPR(args[0])
    return signal_refused("process " + pid, "setting the resource limits of process " + pid + " denied: it is "
                          "pyward's recorder, the process that keeps this run's record", "prlimit",
                          "pyward (its recorder process)", 5)


def on_make_node(op):
    """os.mkfifo / os.mknod (no audit event on 3.11-3.13): the creation of a new entry
    (a FIFO, a device or an empty regular file), never through a symlink at its name."""
    def handler(args):
        call, kwargs = args[0], args[1]
        kwargs = kwargs if type(kwargs) is dict else None
        path = call[0] if call else (kwargs.get("path") if kwargs is not None else None)
        dir_fd = kwargs.get("dir_fd") if kwargs is not None else None
        real = resolve(path, dir_fd, False)
        if real is None:
            return None
        forget_paths()
        mode = call[1] if len(call) > 1 else (kwargs.get("mode") if kwargs is not None else None)
        if mode is not None and type(mode) is not int:  # an int subclass by its value; else, by __index__,
            mode = INT_ADD(0, mode) if SUBCLASS(int, type(mode)) else 0o060000  # not run here: as a device
        if op == "mknod" and type(mode) is int and mode & 0o170000 in (0o020000, 0o060000):
            # a device node reads and writes the device itself: no file rule covers that, only a
            # blanket write permission allows it
            return check("write", DEVICE_NODE + " " + real, op)
        return check("write", real, op)
    return handler


def on_pidfd_open(args):
    """os.pidfd_open (no audit event): a process descriptor of the recorder is refused,
    whatever it would be used for (signals, waiting for its end)."""
    call, kwargs = args[0], args[1]
    pid = call[0] if call else (kwargs.get("pid") if type(kwargs) is dict else None)
    if not PROTECTED_PIDS or type(pid) is not int or pid not in PROTECTED_PIDS:
        return None
    return refuse_signal("(any)", "process " + INT_REPR(pid), "pidfd_open")


def on_pidfd_send_signal(args):
    """signal.pidfd_send_signal (no audit event): its descriptor may be a /proc/PID
    directory opened by path (a descriptor of the recorder from pidfd_open is refused there)."""
    call, kwargs = args[0], args[1]
    fd = call[0] if call else (kwargs.get("pidfd") if type(kwargs) is dict else None)
    if not PROTECTED_PIDS or fd is None:
        return None
    kind = type(fd)
    if kind is not int:
        if SUBCLASS(int, kind):
            fd = INT_ADD(0, fd)
        elif has_index(kind):
            return refuse_signal("(any)", FD_OBJECT, "pidfd_send_signal")
        else:
            return None  # the original raises TypeError
    target = fd_target(fd)
    if target is None or target[:6] != "/proc/":
        return None
    pid = target[6:]
    if not pid.isdigit() or int(pid) not in PROTECTED_PIDS:
        return None
    return refuse_signal("(any)", "process " + pid + " (by descriptor " + INT_REPR(fd) + ")", "pidfd_send_signal")


def on_spawn(args):
    forget_paths()  # a child may change names (as for fork_exec)
    return check_run(args[1] if len(args) > 1 else None, None, "os.spawn")


def on_pty_spawn(args):
    argv = args[0]
    if type(argv) in (str, bytes):
        return check_run(argv, None, "pty.spawn")
    if type(argv) in (list, tuple) and argv:
        return check_run(argv[0], None, "pty.spawn")
    return None


def on_fork(args):
    return check("run", "fork\x00", "os.fork")


def guard_fork_exec(args):
    call = args[0]
    if len(call) < 2:
        return None
    argv, executables = call[0], call[1]
    directory = call[4] if len(call) > 4 and type(call[4]) in (str, bytes) else None
    if type(directory) is bytes:
        directory = directory.decode(FS_ENCODING, FS_ERRORS)
    forget_paths()
    name = argv[0] if type(argv) in (list, tuple) and argv else None
    if type(name) is bytes:
        name = name.decode(FS_ENCODING, FS_ERRORS)
    if type(executables) not in (list, tuple) or not executables:
        return check_run(name, directory, "fork_exec")
    if len(executables) == 1:
        return check_run(executables[0], directory, "fork_exec")
    for candidate in executables:  # a PATH search: the child runs the first that exists
        if type(candidate) is bytes:
            candidate = candidate.decode(FS_ENCODING, FS_ERRORS)
        real = REALPATH(candidate) if type(candidate) is str else None
        if real is not None:
            return check("run", (name or candidate.rpartition("/")[2]) + "\x00" + real, "fork_exec")
    return None


# environment


def on_env_read(args):
    name = args[0]
    if type(name) is not str or name in HIDDEN_ENV:
        return None
    return check("env", name, "read" if len(args) == 1 else "listing")


def on_env_visible(args):
    """Listing the environment (iteration, copies, `in`) shows the names the
    program may read and hides the others, silently: a listing is not a read."""
    name = args[0]
    if MODE == 0 or type(name) is not str:
        return None
    key = "env\x00" + name
    code = CACHE.get(key)
    if code is None:
        code = evaluate("env", name)
        CACHE[key] = code
    if code <= 1 or (code == 2 and (key in GRANTED or "env" in GRANTED)):
        return None
    return "hidden"


def on_env_write(args):
    name = args[0] if args else None
    if type(name) is bytes:
        name = name.decode(FS_ENCODING, FS_ERRORS)
    if type(name) is not str:
        return None
    if name[:7] == "PYWARD_" or (name == "PYTHONPATH" and PAYLOAD is not None):
        caller = frame_at(3)  # (frame_at(4) in degraded mode, where a Python hook sits in between)
        if name in PYTHONPATH_NAMES and caller is not None and (caller.f_code in OWN_ENV_WRITERS or (
                caller.f_back is not None and caller.f_back.f_code in OWN_ENV_WRITERS)):
            return None  # os.environ keeping the boot directory first on PYTHONPATH (environ.py)
        return ("env", name, "write", 3)  # what arms child processes is not the program's to change
    return check("env", name, "write")


def own_variable(name):
    """Why a variable cannot be written by the program, or None."""
    if name[:7] == "PYWARD_":
        return "pyward (its own variables carry the policy to child processes)"
    if name == "PYTHONPATH" and PAYLOAD is not None:
        return "pyward (child processes load the sandbox through PYTHONPATH: write it through os.environ, " \
               "which keeps that)"
    return None


# native code and the ways around audit hooks


def on_dlopen(args):
    name = args[0] if args else None
    if name is None:
        caller = frame_at(3)  # CDLL.__init__
        module = caller.f_back if caller is not None else None
        if module is not None and module.f_code.co_name == "<module>" and \
                module.f_globals.get("__name__") == "ctypes" and "ctypes" not in STATE:
            STATE["ctypes"] = 1
            return None  # ctypes' own import (pythonapi = PyDLL(None)): a handle; every use of it is gated
        return check("ffi", "self", "ctypes.CDLL(None)")
    if type(name) is bytes:
        name = name.decode(FS_ENCODING, FS_ERRORS)
    if type(name) is not str:
        return check("ffi", "library", "ctypes.dlopen")
    return check("ffi", name, "ctypes.dlopen")


def ffi_use(op):
    def handler(args):
        return check("ffi", "ctypes", op)
    return handler


def ffi_named(resource, op):
    def handler(args):
        return check("ffi", resource, op)
    return handler


def on_settrace(op):
    def handler(args):
        if args and args[0] is None:
            return None
        caller = event_caller()
        if caller is not None and (caller.f_code.co_filename, caller.f_code.co_name) in HOOK_RESTORERS:
            return None  # the stdlib putting back the hook it saved (the event does not carry the function)
        return check("ffi", "tracing", op)
    return handler


def frame_at(depth):
    """The frame `depth` levels above our caller, or None (at interpreter shutdown
    the stack can be shallower than that)."""
    try:
        return GETFRAME(depth)
    except ValueError:
        return None


def event_caller(depth=4):
    """The Python frame whose call raised the audit event being decided (`depth` frames
    above this one: 4 when a handler calls it)."""
    caller = frame_at(depth)
    while caller is not None and caller.f_code.co_filename.startswith(PLUMBING[0]):
        caller = caller.f_back  # degraded mode: the Python audit hook sits in between
    return caller


def on_marshal(args):
    caller = event_caller()
    if caller is not None and caller.f_code.co_filename in IMPORT_MACHINERY:
        return None
    return check("ffi", "bytecode", "marshal.loads")


def on_code_new(args):
    """Code construction is native-code power, except where the standard library
    only re-labels code that already exists (`types.coroutine` sets a flag):
    judged by the calling function itself, so a program that builds code through
    any other path, stdlib or not, is still checked."""
    caller = event_caller()
    if caller is not None and (caller.f_code.co_filename, caller.f_code.co_name) in CODE_RELABELLERS:
        return None
    if caller is not None and caller.f_code.co_name == "_call_with_frames_removed" and \
            caller.f_code.co_filename == "<frozen importlib._bootstrap>":
        # an extension module making its own code objects as it initialises (Cython 3.1 does, for its
        # tracebacks): native code the import already let in; no Python code chose what they hold
        called = caller.f_locals.get("f")
        for init in STATE.get("extension inits", ()):
            if called is init:
                return None
    return check("ffi", "bytecode", "code object construction")


def on_sqlite_extension(args):
    if len(args) > 1 and args[1] is False:
        return None
    return check("ffi", "sqlite-extensions", "sqlite3 load_extension")


def on_import(args):
    name = args[0] if args else None
    if type(name) is not str:
        return None
    if name in GUARDED_MODULES:
        return ("ffi", name, "re-import of a module the sandbox guards", 3)
    top = name.partition(".")[0]
    if top in FFI_MODULES:  # raw memory with no audit event at all (a Union of an int and a pointer)
        found = check("ffi", FFI_MODULES[top], "import " + name)
        if found is not None:
            return found
    if top in SUBINTERPRETER_MODULES:  # refused here: refusing the creation itself crashes CPython 3.12
        return check("ffi", "subinterpreters", "import " + name)
    if top in STDLIB_NAMES or top in OWN_PACKAGES:
        return None
    if top not in ON_DISK:
        if not on_disk(top):  # nothing to grant: python raises ModuleNotFoundError (an optional module probed for)
            return None
        ON_DISK[top] = 1  # found once, checked by the policy from now on (a module that is absent may appear)
    found = check("import", top, "import " + name)
    reads = NATIVE_READS.get(name)
    if reads is None:
        return found
    found = [found] if found is not None else []
    for path in reads:  # read in C by the library whatever the program does, with no audit event
        item = check("read", path, "import " + name)
        if item is not None:
            found.append(item)
    return found or None


def on_disk(top):
    """Whether a module or package `top` may exist on sys.path; True where it
    cannot be known from here (a zip archive on the path)."""
    for entry in SYS.path:
        if type(entry) is not str:
            return True
        base = REALPATH(entry or ".")
        if base is None:
            continue
        info = stat_info(base)
        if info is None or info[3] & 0o170000 != 0o040000:
            return True
        base = base + "/" + top
        if REALPATH(base) is not None:
            return True
        for suffix in MODULE_SUFFIXES:
            if REALPATH(base + suffix) is not None:
                return True
    return False


# prompt mode


def ask(perm, resource, op, key):
    """Ask on the terminal; remember the answer for the rest of the run."""
    fd = TTY.get("fd")
    if fd is None:
        fd = open_tty()
        TTY["fd"] = fd
    if fd < 0:
        return 0
    shown = resource.partition("\x00")[0]
    question = "[pyward] Allow " + VERBS[perm] + " '" + shown + "'? [y]es / [n]o / [A]ll of " + perm + " > "
    try:
        WRITE(fd, question.encode("utf-8", "replace"))
        answer = read_line(fd)
    except OSError:
        return 0
    if answer == "A":
        GRANTED[perm] = 1
        return 2
    if answer[:1] in ("y", "Y"):
        GRANTED[key] = 1
        return 1
    return 0


def open_tty():
    if not STDIN_IS_TTY:
        return -1
    try:
        return OPEN("/dev/tty", O_RDWR)
    except OSError:
        return -1


def read_line(fd):
    chunks = []
    while True:
        byte = READ(fd, 1)
        if not byte or byte == b"\n":
            break
        chunks.append(byte)
    return b"".join(chunks).decode("utf-8", "replace").strip()


def build_handlers():
    """The event table; built inside the private namespace, like every function here."""
    table = {
        "open": on_open,
        "os.listdir": on_listdir,
        "os.scandir": on_listdir,
        "glob.glob": on_glob,
        "glob.glob/2": on_glob,
        "os.listxattr": path_handler("read", "listxattr", 0, -1),
        "os.getxattr": path_handler("read", "getxattr", 0, -1),
        "os.remove": path_handler("write", "remove", 0, 1),
        "os.rmdir": path_handler("write", "rmdir", 0, 1),
        "os.mkdir": path_handler("write", "mkdir", 0, 2),
        "os.chmod": path_handler("write", "chmod", 0, 2),
        "os.chown": path_handler("write", "chown", 0, 3),
        "os.utime": path_handler("write", "utime", 0, 3),
        "os.truncate": path_handler("write", "truncate", 0, -1),
        "os.chflags": path_handler("write", "chflags", 0, -1),
        "os.lchflags": path_handler("write", "lchflags", 0, -1),
        "os.setxattr": path_handler("write", "setxattr", 0, -1),
        "os.removexattr": path_handler("write", "removexattr", 0, -1),
        "os.mkfifo": path_handler("write", "mkfifo", 0, 2),
        "os.mknod": path_handler("write", "mknod", 0, 3),
        "shutil.rmtree": path_handler("write", "rmtree", 0, 1),
        "shutil.copytree": on_copytree,
        "os.rename": on_rename,
        "os.link": on_link,
        "os.symlink": on_symlink,
        "os.chdir": on_chdir,
        "sqlite3.connect": on_sqlite,
        "sqlite3.connect/handle": on_sqlite_handle,
        "pyward.sqlite3.attach": on_sqlite_attach,
        "pyward.readline.read_history_file": on_readline("read", 0, "history"),
        "pyward.readline.write_history_file": on_readline("write", 0, "history"),
        "pyward.readline.append_history_file": on_readline("write", 1, "history"),
        "pyward.readline.read_init_file": on_readline("read", 0, "inputrc"),
        "pyward.ssl.load_verify_locations": file_arguments("read", "ssl load_verify_locations",
                                                           ((1, "cafile"), (2, "capath"))),
        "pyward.ssl.load_cert_chain": file_arguments("read", "ssl load_cert_chain",
                                                     ((1, "certfile"), (2, "keyfile"))),
        "pyward.posix_spawn": on_spawn_actions,
        "pyward.mkfifo": on_make_node("mkfifo"),
        "pyward.mknod": on_make_node("mknod"),
        "pyward.shm_open": on_shm("shm_open"),
        "pyward.shm_unlink": on_shm("shm_unlink"),
        **{"pyward.uvloop." + method: on_loop(method) for method in LOOP_METHODS},
        "pyward.duckdb.connect": on_duckdb_connect,
        "pyward.h5py.open": on_h5py("open"),
        "pyward.h5py.create": on_h5py("create"),
        "pyward.polars.scan_csv": on_polars("scan_csv", (0, "source"), (1, "sources")),
        "pyward.polars.scan_ndjson": on_polars("scan_ndjson", (0, "source"), (1, "sources")),
        "pyward.polars.scan_parquet": on_polars("scan_parquet", (0, "sources")),
        "pyward.polars.scan_ipc": on_polars("scan_ipc", (0, "sources")),
        "pyward.polars.scan_lines": on_polars("scan_lines", (0, "sources")),
        "pyward.polars.read_json": on_polars("read_json", (0, "source")),
        "pyward.polars.read_avro": on_polars("read_avro", (0, "source")),
        "pyward.polars.sink_parquet": on_polars("sink_parquet", (1, "target")),
        "pyward.polars.sink_ipc": on_polars("sink_ipc", (1, "target")),
        "pyward.polars.sink_csv": on_polars("sink_csv", (1, "target")),
        "pyward.polars.sink_ndjson": on_polars("sink_ndjson", (1, "target")),
        "pyward.polars.write_json": on_polars("write_json", (1, "file")),
        "pyward.polars.write_avro": on_polars("write_avro", (1, "file")),
        "pyward.lxml.parse": on_lxml("parse", 0),
        "pyward.lxml.write": on_lxml("write", 1),
        "pyward.grpc.add_http2_port": on_grpc_port,
        "pyward.zmq.bind": on_zmq("bind"),
        "pyward.zmq.connect": on_zmq("connect"),
        "socket.connect": on_address("connect"),
        "socket.sendto": on_address("sendto"),
        "socket.sendmsg": on_address("sendmsg"),
        "socket.bind": on_address("bind"),
        "socket.getaddrinfo": on_dns,
        "socket.gethostbyname": on_dns,
        "socket.gethostbyname_ex": on_dns,
        "socket.gethostbyaddr": on_reverse_dns,
        "socket.getnameinfo": on_reverse_dns,
        "socket.__new__": on_socket_new,
        "subprocess.Popen": on_popen,
        "os.system": on_system,
        "os.exec": on_exec,
        "os.posix_spawn": on_posix_spawn,
        "os.spawn": on_spawn,
        "os.kill": on_kill,
        "os.killpg": on_kill,
        "pyward.pidfd_open": on_pidfd_open,
        "resource.prlimit": on_prlimit,
        "pyward.pidfd_send_signal": on_pidfd_send_signal,
        "os.fork": on_fork,
        "os.forkpty": on_fork,
        "pty.spawn": on_pty_spawn,
        "pyward.fork_exec": guard_fork_exec,
        "pyward.env.read": on_env_read,
        "pyward.env.visible": on_env_visible,
        "os.putenv": on_env_write,
        "os.unsetenv": on_env_write,
        "ctypes.dlopen": on_dlopen,
        "ctypes.dlsym": ffi_use("ctypes.dlsym"),
        "ctypes.dlsym/handle": ffi_use("ctypes.dlsym"),
        "ctypes.call_function": ffi_use("ctypes call"),
        "ctypes.cdata": ffi_use("ctypes.from_address"),
        "ctypes.PyObj_FromPtr": ffi_use("ctypes PyObj_FromPtr"),
        "ctypes.string_at": ffi_use("ctypes.string_at"),
        "ctypes.wstring_at": ffi_use("ctypes.wstring_at"),
        "cpython.PyInterpreterState_New": ffi_named("subinterpreters", "new interpreter"),
        "code.__new__": on_code_new,
        "marshal.loads": on_marshal,
        "marshal.load": on_marshal,
        "sqlite3.enable_load_extension": on_sqlite_extension,
        "sqlite3.load_extension": on_sqlite_extension,
        "sys.settrace": on_settrace("sys.settrace"),
        "sys.setprofile": on_settrace("sys.setprofile"),
        "sys.monitoring.register_callback": on_settrace("sys.monitoring.register_callback"),
        "sys._current_frames": ffi_named("introspection", "sys._current_frames"),
        "sys._current_exceptions": ffi_named("introspection", "sys._current_exceptions"),
        "gc.get_objects": ffi_named("introspection", "gc.get_objects"),
        "gc.get_referrers": ffi_named("introspection", "gc.get_referrers"),
        "import": on_import,
    }
    return {event: handler for event, handler in table.items() if handler is not None}


# child processes: the policy travels in their environment


def inject_env(env):
    """An explicit child environment plus the sandbox's variables: a dict of str or bytes, or a
    list of b"K=V", as the guard made it from whatever the program gave (plain_environment in
    _native/sandbox.c); nothing here calls a method the program defined."""
    if type(env) is dict:
        items = [(k, env[k]) for k in list(env)]
        as_bytes = False
    elif type(env) is not list and type(env) is not tuple:
        return env  # (None, or not converted: the call runs, or fails, as given)
    else:
        items = []
        for entry in env:
            raw = entry if type(entry) is bytes else (entry.encode(FS_ENCODING, FS_ERRORS) if type(entry) is str
                                                     else None)
            if raw is None:
                return env  # not ours to understand: the call fails or runs as given
            key, _, value = raw.partition(b"=")
            items.append((key, value))
        as_bytes = True
    keep = []
    original = None
    for key, value in items:
        name = key.decode(FS_ENCODING, FS_ERRORS) if type(key) is bytes else key
        if name == "PYTHONPATH":
            original = value.decode(FS_ENCODING, FS_ERRORS) if type(value) is bytes else value
        elif name not in CHILD_ARMING_ENV:  # the child is armed from these: pyward's values only
            keep.append((key, value))
    extra = [("PYWARD_SANDBOX", PAYLOAD), ("PYTHONPATH", BOOT_DIR if not original else BOOT_DIR + ":" + original)]
    if original is not None:
        extra.append(("PYWARD_ORIG_PYTHONPATH", original))
    if as_bytes:
        return [k + b"=" + v for k, v in keep] + [
            k.encode(FS_ENCODING, FS_ERRORS) + b"=" + v.encode(FS_ENCODING, FS_ERRORS) for k, v in extra]
    out = {}
    for key, value in keep:
        out[key] = value
    for key, value in extra:
        out[key] = value
    return out


def spawn_guard(name, original):
    """The guard's arguments for execve / posix_spawn[p]: pyward's variables added to an explicit
    environment (read into a plain dict from C first) when children inherit the policy, and
    posix_spawn's file_actions (made plain the same way) judged as the opens they are."""
    spawn = name != "execve"
    convert = ((2, "env", "env"),) if PAYLOAD is not None else ()
    if spawn:
        convert = convert + ((None, "file_actions", "file_actions"),)
    return ("pyward.posix_spawn" if spawn else None, original, inject_third if PAYLOAD is not None else None, None,
            convert or None)


def on_spawn_actions(args):
    """posix_spawn's file_actions (its audit event has none): each POSIX_SPAWN_OPEN is a file the
    child opens before it runs, judged as the program's own open would be; the gravest finding stands."""
    kwargs = args[1]  # (file_actions is keyword-only)
    actions = kwargs.get("file_actions") if type(kwargs) is dict else None
    if type(actions) is not list:
        return None
    gravest = None
    for action in actions:
        if type(action) is tuple and len(action) == 5 and action[0] == SPAWN_OPEN and type(action[3]) is int:
            found = on_open((action[2], None, action[3]))
            if type(found) is str:
                return found
            if found is not None and (gravest is None or found[3] > gravest[3]):
                gravest = found
    return gravest


def inject_fork_exec(call, kwargs):
    if len(call) > 5 and call[5] is not None:
        call = tuple(call[:5]) + (inject_env(call[5]),) + tuple(call[6:])
    return (call, kwargs)


def inject_env_keyword(call, kwargs):
    """A call's `env=` (made a plain dict by its guard) plus the sandbox's variables."""
    if type(kwargs) is dict and kwargs.get("env") is not None:
        kwargs = dict(kwargs)
        kwargs["env"] = inject_env(kwargs["env"])
    return (call, kwargs)


def inject_third(call, kwargs):
    """execve(path, args, env) and posix_spawn(path, argv, env, ...)."""
    if len(call) > 2:
        call = tuple(call[:2]) + (inject_env(call[2]),) + tuple(call[3:])
    elif kwargs and "env" in kwargs:
        kwargs = dict(kwargs)
        kwargs["env"] = inject_env(kwargs["env"])
    return (call, kwargs)
