"""Imported only by the sandbox's forkserver: parses tiny samples so every child inherits warm caches.

Some parsers fill caches on first use (trafilatura builds its justext stoplists: ~0.5 s). Done once
in the forkserver, the work is shared by every forked child instead of repeated per parse. Nothing
here may start a thread (no DuckDB): the server must stay single-threaded to fork safely.
"""

import gc

from tasks.parse.html import parse_html
from tasks.parse.json import parse_json

parse_html(b"<html><head><title>warm</title></head><body><p>Warm-up text for the parser.</p></body></html>")
parse_json(b'{"warm": ["up"]}')

# Everything loaded so far lives as long as the server: moved out of the collector's sight, a
# child's first garbage collection does not touch (and so copy) every page it shares with us.
gc.freeze()
