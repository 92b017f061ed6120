"""`occface-node` (also `python -m occface_ros.ros.node`): runs one OccfaceNode (occface_node.py)
until SIGINT/SIGTERM, then shuts down in order and exits 0.

The entry installs its own SIGINT/SIGTERM handlers before anything heavy is imported, and rclpy
gets none (`SignalHandlerOptions.NO`): rclpy's handler shuts the context down from under the
executor and the worker thread (`RCLError: ... context is not valid`, `take_message` on a
destroyed subscription). Here a signal only sets an event: the executor polls it between waits,
then the worker is stopped, the executor and node destroyed and the context shut down, in that
order. During start-up (imports, rclpy.init and, with `autostart`, the node's configure and
activate: parameters, model loading) the signal abandons the start at once. A configure that fails
(bad config or parameter, missing model or weights) does not end the process: the managed node
stays unconfigured with the reason in the log and on /diagnostics (docs/ros.md, "Lifecycle").
Errors before the node exists (ROS wheels or interfaces missing) exit 2. A signal while a
transition requested over `~/change_state` runs is acted on when that transition returns.

This module imports only the standard library when loaded (the node's names, OccfaceNode,
OUTPUT_QOS, ..., are forwarded from occface_node.py on first use), so a signal right after
launch is already ours.
"""
from __future__ import annotations

import atexit
import ctypes
import os
import signal
import sys
import threading

SPIN_POLL_S = 0.1  # the executor's longest wait: a signal is acted on within this
SHUTDOWN_TIMEOUT_S = 5.0  # worker join and executor shutdown, each


class _StopRequested(BaseException):
    """Raised by the signal handler while the node starts up, to abandon the start-up.
    A BaseException so that no `except Exception` on the way swallows it."""


class _StopSignals:
    """SIGINT/SIGTERM set `stopped`; while `starting`, the first one also raises _StopRequested."""

    def __init__(self):
        self.stopped = threading.Event()
        self.starting = True
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers belong to the main thread (main() called from a test thread)
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        first = not self.stopped.is_set()
        self.stopped.set()
        if first and self.starting:
            raise _StopRequested


def main(argv: list[str] | None = None, pipeline_factory=None, end_process: bool = True) -> int:
    """Console script `occface-node [--ros-args ...]`: 0 after SIGINT/SIGTERM (also during start-up),
    2 when the node cannot be created. `pipeline_factory`: as OccfaceNode's (`occface bench-ros --canned`
    passes CannedPipeline). With `end_process` (the console script) the process ends here once
    everything is shut down (see _end_process); else the code is returned."""
    signals = _StopSignals()
    signals.install()
    try:
        code = _run(sys.argv if argv is None else argv, pipeline_factory, signals)
    except _StopRequested:  # a signal during start-up, before or after _run's own handling
        code = 0
    finally:
        signals.restore()
    if end_process and threading.current_thread() is threading.main_thread():
        _end_process(code)
    return code


def _end_process(code: int) -> None:
    """Exit without the interpreter's teardown. The node, context and pipeline are closed by now;
    what is left is freeing torch's and the DDS libraries' modules, which takes ~1 s on a loaded
    2-core CPU (measured: 0.9-1.2 s after the last atexit handler), longer than a supervisor's
    stop should. atexit handlers (logging) and the Python and C stdio buffers still run/flush."""
    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a closed pipe or file: nothing left to flush into
                pass
        try:
            ctypes.CDLL(None).fflush(None)  # rcutils/spdlog write through C stdio
        except (OSError, AttributeError):  # no C library to ask: nothing buffered there that we know of
            pass
        os._exit(code)


def _run(argv: list[str], pipeline_factory, signals: _StopSignals) -> int:
    node = executor = None
    rclpy = None
    try:
        import rclpy
        from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions

        from ..config import ConfigError
        from ..paths import MissingModelError
        from .occface_node import OccfaceNode

        startup_errors = (ConfigError, MissingModelError, ImportError)
    except ImportError as exc:  # ROS wheels or the built interfaces missing
        print(f"occface-node: error: {exc}", file=sys.stderr)
        return 2
    try:
        rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
        executor = SingleThreadedExecutor()
        node = OccfaceNode(pipeline_factory=pipeline_factory)
        executor.add_node(node)
        signals.starting = False  # from here a signal only sets the event
        while not signals.stopped.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=SPIN_POLL_S)
    except _StopRequested:
        pass
    except ExternalShutdownException:  # the context was shut down by someone else: also a clean stop
        pass
    except startup_errors as exc:
        if not signals.stopped.is_set():
            print(f"occface-node: error: {exc}", file=sys.stderr)
            return 2
    except Exception as exc:  # noqa: BLE001 - an RCLError from a context that a signal is tearing down is a stop
        if not signals.stopped.is_set():
            raise
        print(f"occface-node: stopping: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        signals.starting = False
        _close(node, executor, rclpy)
    return 0


def _close(node, executor, rclpy) -> None:
    """The node's lifecycle shutdown first (worker, pipeline, publishers), then executor, node and
    context; a failure is one line, not a traceback."""
    steps = []
    if node is not None:
        steps.append(("shut the node down", lambda: node.shutdown(SHUTDOWN_TIMEOUT_S)))
    if executor is not None:
        steps.append(("stop the executor", lambda: executor.shutdown(timeout_sec=SHUTDOWN_TIMEOUT_S)))
    if node is not None:
        steps.append(("destroy the node", node.destroy_node))
    if rclpy is not None:
        steps.append(("shut rclpy down", rclpy.try_shutdown))
    for what, step in steps:
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - keep closing the rest
            print(f"occface-node: could not {what}: {type(exc).__name__}: {exc}", file=sys.stderr)


def __getattr__(name: str):
    """OccfaceNode, OUTPUT_QOS, TF_QOS, ... from occface_node.py, imported on first use (PEP 562)."""
    if name.startswith("__"):
        raise AttributeError(name)
    from . import occface_node

    return getattr(occface_node, name)


if __name__ == "__main__":
    sys.exit(main())
