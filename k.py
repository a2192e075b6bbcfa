import os, signal, sys
pid = int(sys.argv[1])
for how in ("kill", "killpg", "neg"):
    try:
        if how == "kill": os.kill(pid, 0)
        elif how == "killpg": os.killpg(os.getpgid(pid), 0)
        else: os.kill(-os.getpgid(pid), 0)
        print(how, "allowed")
    except Exception as e: print(how, type(e).__name__, e)
