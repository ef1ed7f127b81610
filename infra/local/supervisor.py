"""Keep one service process running: `python supervisor.py STATE_FILE -- COMMAND...`.

`make up` starts each service under this supervisor. A child that exits without being asked to
(a crash, a signal, an error exit) is started again after a short backoff (0.5 s doubling to
10 s, back to 0.5 s once a child has run a minute). The supervisor writes what it knows to
STATE_FILE as JSON (child pid, restarts, the last exit and when) for `make status`. SIGTERM or
SIGINT stops the child (SIGKILL after 15 s) and then the supervisor. Standard library only: it
runs before and without the project's venv packages.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 10.0
HEALTHY_AFTER_S = 60.0
STOP_GRACE_S = 15.0


def describe_exit(returncode: int) -> str:
    """`exit 1` or `killed by SIGSEGV`."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit {returncode}"


class Supervisor:
    """One child command, restarted until told to stop."""

    def __init__(self, state_file: Path, command: list[str]) -> None:
        """Supervise `command`, reporting into `state_file`."""
        self.state_file = state_file
        self.command = command
        self.stopping = False
        self.child: subprocess.Popen[bytes] | None = None
        self.state: dict[str, object] = {"supervisor_pid": os.getpid(), "restarts": 0}

    def write_state(self) -> None:
        """Replace the state file atomically."""
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state))
        tmp.replace(self.state_file)

    def stop(self, signum: int, frame: object) -> None:
        """Signal handler: stop the child, and do not start it again."""
        self.stopping = True
        if self.child is not None and self.child.poll() is None:
            self.child.terminate()

    def run(self) -> int:
        """Run the child until told to stop; the exit code is the last child's."""
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        backoff = BACKOFF_FIRST_S
        returncode = 0
        while not self.stopping:
            started = time.monotonic()
            self.child = subprocess.Popen(self.command)
            self.state["pid"] = self.child.pid
            self.write_state()
            returncode = self.wait_child()
            if self.stopping:
                break
            ran_s = time.monotonic() - started
            backoff = BACKOFF_FIRST_S if ran_s >= HEALTHY_AFTER_S else backoff
            self.state.update(
                restarts=int(str(self.state["restarts"])) + 1,
                last_exit=describe_exit(returncode),
                last_exit_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                pid=None,
            )
            self.write_state()
            print(
                f"supervisor: {self.command[0]} {describe_exit(returncode)} after {ran_s:.1f} s;"
                f" starting it again in {backoff:g} s",
                file=sys.stderr,
                flush=True,
            )
            deadline = time.monotonic() + backoff
            while not self.stopping and time.monotonic() < deadline:
                time.sleep(0.05)
            backoff = min(backoff * 2, BACKOFF_MAX_S)
        self.state_file.unlink(missing_ok=True)
        return returncode

    def wait_child(self) -> int:
        """Wait for the child; once stopping, give it STOP_GRACE_S before SIGKILL."""
        assert self.child is not None
        kill_at: float | None = None
        while True:
            try:
                return self.child.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                if self.stopping:
                    kill_at = kill_at or time.monotonic() + STOP_GRACE_S
                    if time.monotonic() >= kill_at:
                        self.child.kill()


def main(argv: list[str]) -> int:
    """`supervisor.py STATE_FILE -- COMMAND...`."""
    if len(argv) < 3 or argv[1] != "--":
        print("usage: supervisor.py STATE_FILE -- COMMAND...", file=sys.stderr)
        return 2
    return Supervisor(Path(argv[0]), argv[2:]).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
