"""Imported once by the runner's flow-run forkserver: every flow-run process is forked with it loaded.

A flow-run process started fresh imports Prefect, LanceDB, NumPy and SQLAlchemy before it runs a
line of ours: 5-8 s of CPU on 2 cores, most of a small job's latency. Forked from a server that has
imported them already, a run starts in about 0.2 s. Nothing here may start a thread of its own
(LanceDB's idle event loop is re-created in each child by LanceDB itself): the server must stay
quiet to fork safely.
"""

import gc
import os
import warnings

# LanceDB re-creates its background event loop in a forked child and warns that fork support is
# experimental because another thread might have been mid-operation; the forkserver never opens a
# table, so none was. runpy warns when a child re-runs the runner module (multiprocessing's
# `__mp_main__`) that is already imported here. Both would only clutter every flow run's log.
warnings.filterwarnings("ignore", message="lancedb fork support is experimental", category=RuntimeWarning)
warnings.filterwarnings("ignore", message="'flows.runner' found in sys.modules", category=RuntimeWarning)

import encodings.idna  # noqa: E402, F401

# Modules a run still imported on first use (py-spy over bench/bench_latency.py: ~0.1 s of CPU per run).
import anyio._backends._asyncio  # noqa: E402, F401
import numpy.ma  # noqa: E402, F401
import prefect.flow_engine  # noqa: E402, F401
import prefect.task_engine  # noqa: E402, F401
import prefect.utilities.visualization  # noqa: E402, F401
import sqlalchemy.dialects.sqlite  # noqa: E402, F401

import flows.ingest  # noqa: E402, F401
import flows.prune  # noqa: E402, F401
import flows.reindex  # noqa: E402, F401
import flows.sync  # noqa: E402, F401
import flows.webhooks  # noqa: E402, F401
import tasks.parse.markdown  # noqa: E402, F401
from gristmill.internals import import_late_prefect_modules  # noqa: E402
from gristmill.lifetime import die_with_parent  # noqa: E402
from gristmill.tls import tls_context  # noqa: E402
from tasks.chunk import load_tokenizer  # noqa: E402

# The server dies with the runner, and each flow run with the server (a parent-death signal does not
# survive a fork, so every child asks for its own): a runner killed outright leaves no run behind.
die_with_parent()
os.register_at_fork(after_in_child=die_with_parent)

import_late_prefect_modules()
load_tokenizer()  # ~40 ms per run otherwise
tls_context()  # ~12 ms per run otherwise (the embeddings client's)

# Everything loaded so far lives as long as the server: out of the collector's sight, a child's
# first garbage collection does not touch (and so copy) every page it shares with the server.
gc.freeze()
