"""A logging-heavy program: a logger hierarchy, a stdout handler with a
formatter, a rotating file handler, a QueueHandler/QueueListener pair (a
thread), dictConfig, filters, exceptions logged with their traceback, and
warnings captured into logging.  Usage: logging_prog.py DIR (writes DIR/app.log)."""
import logging
import logging.config
import logging.handlers
import os
import queue
import sys
import warnings

out_dir = sys.argv[1]
FORMAT = "%(levelname)s:%(name)s:%(message)s"

logging.config.dictConfig({
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": FORMAT}},
    "handlers": {
        "stdout": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout", "formatter": "plain"},
        "file": {"class": "logging.handlers.RotatingFileHandler", "filename": os.path.join(out_dir, "app.log"),
                 "maxBytes": 4096, "backupCount": 2, "formatter": "plain", "encoding": "utf-8"},
    },
    "loggers": {"app": {"level": "DEBUG", "handlers": ["stdout", "file"], "propagate": False}},
})

log = logging.getLogger("app")
db = logging.getLogger("app.db")


class OnlyEven(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "n", 0) % 2 == 0


db.addFilter(OnlyEven())
for n in range(6):
    db.info("query %d", n, extra={"n": n})

try:
    {}["missing"]
except KeyError:
    log.exception("lookup failed")

log.debug("%s items", 3)
log.warning("disk at %d%%", 91)

# a queue handler: records cross to a listener thread
q: "queue.Queue[logging.LogRecord]" = queue.Queue()
sink = logging.StreamHandler(sys.stdout)
sink.setFormatter(logging.Formatter("queued " + FORMAT))
listener = logging.handlers.QueueListener(q, sink)
listener.start()
worker = logging.getLogger("worker")
worker.propagate = False
worker.addHandler(logging.handlers.QueueHandler(q))
worker.setLevel(logging.INFO)
for i in range(3):
    worker.info("job %d done", i)
listener.stop()

logging.captureWarnings(True)
logging.getLogger("py.warnings").addHandler(sink)
warnings.warn("old API", DeprecationWarning, stacklevel=1)
warnings.simplefilter("always")
warnings.warn("careful", UserWarning)  # noqa: B028  (the program as written: the test compares where it points)

for i in range(200):  # enough to rotate the file once or twice
    log.info("line %03d %s", i, "x" * 40)
logging.shutdown()
print("log files:", sorted(f for f in os.listdir(out_dir) if f.startswith("app.log")))
