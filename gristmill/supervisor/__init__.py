"""`gristmill serve`: the whole service as one command, its parts as supervised child processes."""
