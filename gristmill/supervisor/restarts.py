"""When the supervisor restarts a child that exited, and when it gives up.

A child that crashes is restarted after a back-off that doubles with each quick crash (one within
`QUICK_CRASH_SECONDS` of its start): 1, 2, 4, 8, 16 s. After `MAX_QUICK_CRASHES` in a row the
supervisor stops the service and says so, since a child that cannot stay up (a port taken, a broken
install) would otherwise be restarted for ever. A child that ran longer than that starts the count
again: a crash a day is a crash, not a crash loop.
"""

from dataclasses import dataclass

FIRST_DELAY_SECONDS = 1.0
MAX_DELAY_SECONDS = 30.0
QUICK_CRASH_SECONDS = 60.0
MAX_QUICK_CRASHES = 5


@dataclass
class RestartBackoff:
    quick_crashes: int = 0

    def delay_after_exit(self, ran_for_seconds: float) -> float | None:
        """Seconds to wait before restarting a child that ran `ran_for_seconds`; None: give up."""
        if ran_for_seconds >= QUICK_CRASH_SECONDS:
            self.quick_crashes = 0
        self.quick_crashes += 1
        if self.quick_crashes > MAX_QUICK_CRASHES:
            return None
        return min(FIRST_DELAY_SECONDS * 2 ** (self.quick_crashes - 1), MAX_DELAY_SECONDS)
