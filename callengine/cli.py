"""The ``callengine`` command: serve an agent, dial a server as a simulated provider, demo.

    callengine serve mypkg.agent:handler --port 8080
    callengine dial ws://127.0.0.1:8080/awaaz --provider awaaz --tone 440 --seconds 5
    callengine demo

Exit codes of ``serve``: 0 after a drain in which every agent exited; 1 cannot listen;
2 bad arguments, agent or configuration; 3 the shutdown abandoned agents that would not
exit; 128 + the signal number when a second SIGTERM/SIGINT stopped it at once. With
``--workers N`` (:mod:`callengine.workers`), the worst of its workers' codes.
``dial``: 0 when the call closed with 1000 or 1001, else 1 (the reason on stderr).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import inspect
import json
import logging
import os
import signal
import sys
from typing import Any, Sequence

import numpy as np
import trio

from .agents import BUNDLED
from .call.config import CallConfig
from .protocols.registry import CODECS
from .shutdown import EXIT_LISTEN, EXIT_OK, EXIT_STUCK, EXIT_USAGE, ShutdownGuard, exit_now

__all__ = ["main", "load_agent", "AgentLoadError"]

log = logging.getLogger("callengine.cli")

BUNDLED_AGENTS = tuple(BUNDLED)
LISTENING_LOGGER = "callengine.listening"


class AgentLoadError(Exception):
    """The AGENT argument does not name an importable async callable of one argument."""


def load_agent(spec: str):
    """``package.module:attribute``, ``package.module`` (attribute ``agent``) or the name of a
    bundled agent (echo, parrot, prompt, ivr, realtime-openai, realtime-gemini, cascade-sarvam). A class is
    instantiated without arguments.
    The agent must be callable with one positional argument, the call."""
    if spec in BUNDLED:
        spec = BUNDLED[spec]
    module_name, _, attr = spec.partition(":")
    attr = attr or "agent"
    if not module_name or not all(part.isidentifier() for part in module_name.split(".")):
        raise AgentLoadError(f"{spec!r} is not of the form package.module:attribute")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AgentLoadError(f"cannot import {module_name!r}: {exc}") from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AgentLoadError(f"{module_name!r} has no attribute {attr!r}") from None
    if inspect.isclass(obj):
        if not inspect.iscoroutinefunction(getattr(obj, "__call__", None)):
            raise AgentLoadError(f"{spec!r} is a class without an async __call__")
        try:
            obj = obj()
        except Exception as exc:
            raise AgentLoadError(f"cannot create {spec!r}: {exc!r}") from None
    target = obj if inspect.isfunction(obj) or inspect.ismethod(obj) else getattr(obj, "__call__", None)
    if target is None or not inspect.iscoroutinefunction(target):
        raise AgentLoadError(f"{spec!r} is not an async callable (async def agent(call): ...)")
    _check_signature(spec, target)
    return obj


def _check_signature(spec: str, target) -> None:
    # the engine calls agent(call): a wrong signature would fail every call with 1011
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):  # no signature to read (a C callable): let it be
        return
    try:
        sig.bind(object())
    except TypeError:
        raise AgentLoadError(f"{spec!r} must take exactly one positional argument, the call (async def agent(call): ...); its signature is {sig}") from None


def _cwd_first_on_path() -> None:
    """Import the agent from the current directory first, as ``python -m`` and uvicorn do:
    the ``callengine`` console script and scripts/run_engine.py start with their own
    directory on sys.path instead, so ``mypkg.agent:handler`` would not be found."""
    cwd = os.getcwd()
    if not sys.path or sys.path[0] not in ("", ".", cwd):
        sys.path.insert(0, cwd)


# --- logging ------------------------------------------------------------------------------


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.name == "callengine.calls":
            try:
                data = json.loads(msg)
            except ValueError:
                data = {"message": msg}
        else:
            data = {"message": msg}
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):  # structured extras (scheme, host, port of "listening")
            data = {**fields, **data}
        out = {"ts": round(record.created, 3), "level": record.levelname.lower(), "logger": record.name, **data}
        call = getattr(record, "call", "")
        if call and "call" not in out:
            out["call"] = call  # the call this line belongs to (an agent's own lines too)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class _TextFormatter(logging.Formatter):
    """``time level logger: message``, with ``[call]`` before the message inside a call
    (record.call, set for every record made in a call's tasks, the agent's included)."""

    def __init__(self, pid: bool = False) -> None:
        super().__init__(f"%(asctime)s %(levelname)-7s %(name)s{'[%(process)d]' if pid else ''}: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = super().formatMessage(record)
        call = getattr(record, "call", "")
        if call and call not in record.message:
            head, sep, tail = text.partition(": ")
            return f"{head}{sep}[{call}] {tail}"
        return text


def _add_pid(record: logging.LogRecord) -> bool:
    fields = getattr(record, "fields", None)
    record.fields = {**(fields if isinstance(fields, dict) else {}), "pid": record.process}
    return True


def setup_logging(fmt: str = "text", level: str = "info", *, announce: bool = False, worker: bool = False) -> None:
    """Logs on stderr, as text or one JSON object a line. ``announce``: the server's one
    "listening" record goes to stdout instead, whatever the level (it carries the port).
    ``worker``: one of ``--workers N``: each line names the process (``name[pid]``, or a
    ``pid`` field), and the supervisor, not the worker, says where it listens."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter(worker))
    if worker:
        handler.addFilter(_add_pid)
        logging.getLogger(LISTENING_LOGGER).disabled = True
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper()))
    if announce:
        handler.addFilter(lambda record: record.name != LISTENING_LOGGER)
        out = logging.StreamHandler(sys.stdout)
        out.setFormatter(_JsonFormatter() if fmt == "json" else logging.Formatter("%(message)s"))
        out.addFilter(lambda record: record.name == LISTENING_LOGGER)
        root.handlers.append(out)
        logging.getLogger(LISTENING_LOGGER).setLevel(logging.INFO)


# --- serve --------------------------------------------------------------------------------


def _env_token() -> str | None:
    """``--token``'s default: ``$CALLENGINE_TOKEN`` (unset or empty: no token)."""
    return os.environ.get("CALLENGINE_TOKEN") or None


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``callengine serve`` (shared with scripts/run_engine.py)."""
    p.add_argument("agent", help="package.module:attribute, package.module (attribute 'agent') or a bundled agent: " + ", ".join(BUNDLED_AGENTS))
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    p.add_argument("--provider", choices=list(CODECS), help="force one provider on every path (default: route by path, then detect)")
    p.add_argument("--route", action="append", default=[], metavar="PREFIX=PROVIDER[,OPTION=VALUE...]", help="paths under PREFIX are PROVIDER's calls, with these codec options and call settings, e.g. /knowlarity-stream=knowlarity or /raw=awaaz,wav_wrap=off or /k=knowlarity,lead_ms=200,chunk_ms=200 (repeatable)")
    p.add_argument("--codec-option", action="append", default=[], metavar="PROVIDER.OPTION=VALUE", help="a codec option or call setting for every call of that provider, e.g. awaaz.wav_wrap=off, awaaz.mark_echo=off, knowlarity.kill_audio=off, knowlarity.default_rate=8000, knowlarity.lead_ms=200, awaaz.idle_timeout_s=60 (repeatable)")
    p.add_argument("--token", default=_env_token(), help="shared secret: a path segment, ?token=, 'Authorization: Bearer' or X-Callengine-Token (default: $CALLENGINE_TOKEN, the better place: a command line is visible to every user of the machine)")
    p.add_argument("--certfile", help="TLS certificate (PEM) to serve wss://")
    p.add_argument("--keyfile", help="TLS private key (PEM)")
    p.add_argument("--max-calls", type=int, default=500, help="concurrent calls before answering 503, in each worker process (default 500)")
    p.add_argument(
        "--workers", type=int, default=1, metavar="N",
        help="worker processes sharing the port (default 1: this process serves); a supervisor forwards signals, restarts a worker that dies, and /metrics on any worker reports them all",
    )  # fmt: skip
    p.add_argument("--worker-of", type=int, help=argparse.SUPPRESS)  # a worker's channel to its supervisor
    p.add_argument("--listen-fd", type=int, action="append", default=[], help=argparse.SUPPRESS)  # inherited listening sockets
    p.add_argument(
        "--max-pending-handshakes", type=int,
        help="connections mid-handshake before answering 503 (default: from the descriptor limit, a quarter of it beyond 64, 8 to 1024)",
    )  # fmt: skip
    p.add_argument("--max-message-size", type=int, default=256 * 1024, help="largest inbound message in bytes (default 262144)")
    p.add_argument("--lead-ms", type=float, help="audio kept queued at the provider (default: 100 Awaaz, 400 Knowlarity)")
    p.add_argument("--chunk-ms", type=float, help="outbound message duration (default: 20 Awaaz, 200 Knowlarity clips)")
    p.add_argument("--start-delay-ms", type=float, help="how long the provider takes to start audio that arrives while nothing plays; the playout counts it (default: 0, 100 for Knowlarity's utterance clips)")
    p.add_argument("--barge-in", dest="barge_in", action="store_true", default=True, help="stop playback when the caller talks (default)")
    p.add_argument("--no-barge-in", dest="barge_in", action="store_false", help="never stop playback for the caller's speech")
    p.add_argument("--min-speech-ms", type=float, default=200.0, help="speech needed before a barge-in (default 200)")
    p.add_argument("--barge-in-mode", choices=["cut", "pause"], default="cut", help="cut: clear playback at once on speech over the bot (default); pause: hold it, resume from the position heard after a backchannel (haan, hmm), cut after an interruption")
    p.add_argument("--backchannel-max-ms", type=float, default=800.0, help="with --barge-in-mode pause: speech this long is an interruption, shorter a backchannel (default 800)")
    p.add_argument("--backchannel-resume-ms", type=float, default=300.0, help="with --barge-in-mode pause: quiet after a backchannel before the bot resumes (default 300)")
    p.add_argument("--vad", choices=["energy", "webrtc", "silero"], default="energy", help="voice activity detector (default energy)")
    p.add_argument("--inband-dtmf", choices=["auto", "on", "off"], default="auto", help="detect key tones in the caller's audio (auto: where the provider sends no DTMF events, i.e. Knowlarity)")
    p.add_argument("--agent-rate", type=int, default=16000, help="sample rate of the agent's audio (default 16000)")
    p.add_argument("--idle-timeout", type=float, default=30.0, help="end a call whose provider sends nothing for this long (s)")
    p.add_argument("--drain-grace", type=float, default=30.0, help="on SIGTERM/SIGINT (or SIGUSR1, which a following SIGTERM does not cut short), let live calls run this long (s); a second signal stops at once")
    p.add_argument("--send-timeout", type=float, default=5.0, help="end a call whose provider stops reading for this long (s, default 5)")
    p.add_argument("--keepalive", type=float, default=1.0, help="ping the provider this often to find one that stopped reading (s, default 1; 0: no pings)")
    p.add_argument("--cleanup-grace", type=float, default=2.0, help="time an ended call's agent has to exit before it is reported stuck (s, default 2)")
    p.add_argument("--record-dir", metavar="DIR", help="record each call as a stereo WAV in DIR (caller left, what the caller heard right)")
    p.add_argument("--provider-api", choices=["on", "off"], default="on", help="hang up and transfer through the provider's REST API where the socket cannot (credentials from the environment; default on)")
    p.add_argument("--log-format", choices=["text", "json"], default="text")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info")


def _option(pair: str, where: str) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE read as a boolean (on/off, true/false, yes/no), a number or
    text."""
    key, sep, text = pair.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"bad option {pair!r} in {where}: use OPTION=VALUE")
    word = text.strip()
    value: object = word
    if word.lower() in ("on", "true", "yes"):
        value = True
    elif word.lower() in ("off", "false", "no"):
        value = False
    else:
        try:
            value = int(word)
        except ValueError:
            try:
                value = float(word)
            except ValueError:
                pass
    return key.strip(), value


def server_config_from_args(args: argparse.Namespace):
    from .server_config import ServerConfig, split_settings

    call = CallConfig(
        agent_rate=args.agent_rate,
        lead_ms=args.lead_ms,
        chunk_ms=args.chunk_ms,
        start_delay_ms=args.start_delay_ms,
        barge_in=args.barge_in,
        min_speech_ms=args.min_speech_ms,
        barge_in_mode=args.barge_in_mode,
        backchannel_max_ms=args.backchannel_max_ms,
        backchannel_resume_ms=args.backchannel_resume_ms,
        vad=args.vad,
        idle_timeout_s=args.idle_timeout,
        cleanup_grace_s=args.cleanup_grace,
        send_timeout_s=args.send_timeout,
        inband_dtmf={"auto": None, "on": True, "off": False}[args.inband_dtmf],
        keepalive_s=args.keepalive or None,
        record_dir=getattr(args, "record_dir", None),
    )
    options = {}
    if args.max_pending_handshakes is not None:
        options["max_pending_handshakes"] = args.max_pending_handshakes
    routes = []
    for item in args.route:
        prefix, sep, rest = item.partition("=")
        provider, *pairs = rest.split(",")
        if not sep or not prefix or not provider:
            raise ValueError(f"bad --route {item!r}: use PREFIX=PROVIDER[,OPTION=VALUE...], e.g. /knowlarity-stream=knowlarity")
        routes.append((prefix, provider.strip().lower(), dict(_option(pair, f"--route {item}") for pair in pairs)))
    per_provider: dict[str, dict[str, object]] = {}
    for item in args.codec_option:
        name, dot, pair = item.partition(".")
        if not dot:
            raise ValueError(f"bad --codec-option {item!r}: use PROVIDER.OPTION=VALUE, e.g. awaaz.wav_wrap=off")
        key, value = _option(pair, f"--codec-option {item}")
        per_provider.setdefault(name.strip().lower(), {})[key] = value
    # a name of a call setting (lead_ms, chunk_ms, inband_dtmf, ...) is that provider's call
    # setting; every other name is an option of its codec
    split = {name: split_settings(settings) for name, settings in per_provider.items()}
    options["codec_options"] = {name: codec for name, (codec, _) in split.items() if codec}
    options["call_options"] = {name: call for name, (_, call) in split.items() if call}
    return ServerConfig(
        host=args.host,
        port=args.port,
        provider=args.provider,
        routes=tuple(routes),
        token=args.token,
        certfile=args.certfile,
        keyfile=args.keyfile,
        max_calls=args.max_calls,
        max_message_size=args.max_message_size,
        drain_grace_s=args.drain_grace,
        call=call,
        provider_api=getattr(args, "provider_api", "on") == "on",
        **options,
    )


def shutdown_deadline_s(config) -> float:
    """From the first signal to the forced exit: the server's own deadlines plus 1 s."""
    return config.drain_grace_s + config.call.cleanup_grace_s + config.call.close_timeout_s + 1.0


async def run_server(agent, config, fd_limit: tuple[int | None, int | None] = (None, None), on_listening=None) -> int:
    """Serve until SIGTERM or SIGINT, then drain (see the module docstring's exit codes).
    ``fd_limit``: the soft descriptor limit before and after raising it, to log.
    ``on_listening``: called once listening, with the signal handlers in place."""
    from .server import CallServer

    server = CallServer(agent, config)
    guard = ShutdownGuard(shutdown_deadline_s(config), describe=lambda: ", ".join(server.live_call_labels()))
    # SIGUSR1 starts the drain without counting as a stop (Kubernetes' preStop hook sends it;
    # the kubelet's SIGTERM then comes on top)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGUSR1) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            _log_fd_limit(fd_limit[0], fd_limit[1], config)  # once listening: a failure to listen stays one line
            if on_listening is not None:
                on_listening()
            started_by = None
            async for signum in signals:
                started_by = signum
                log.info("received %s: draining (grace %.1f s; a second signal stops at once)", signal.Signals(signum).name, config.drain_grace_s)
                break
            guard.arm(by=started_by)
            stuck = await server.drain()
            if stuck:
                log.error("exiting with code %d: %d agent(s) did not exit", EXIT_STUCK, len(stuck))
                log.info("callengine stopped: %s", json.dumps(server.statistics()))
                exit_now(EXIT_STUCK)  # trio.run cannot return while their tasks linger
            nursery.cancel_scope.cancel()
    guard.disarm()
    return EXIT_OK


def tune_gc_for_serving() -> None:
    """Keep the cyclic garbage collector from stalling live calls.

    What exists once the agent is loaded (modules, functions, the agent) lives as long as
    the process: freeze it, so the collector stops rescanning it, and collect the young
    generations less often. A full collection with the default thresholds stalls every live
    call at once, long enough for an audible gap. Cyclic garbage waits longer to be freed
    (a finished call leaves none: its parts are freed by reference counting); young cycles
    are still collected every 5,000 allocations.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(5000, 50, 100)


def _log_fd_limit(before: int | None, after: int | None, config) -> None:
    from .limits import RESERVED_FDS

    if after is None:
        log.info("file descriptor limit: unlimited")
        return
    log.info("file descriptor limit: %d%s", after, f" (soft limit raised from {before})" if before != after else "")
    need = config.max_calls + config.max_pending_handshakes + RESERVED_FDS
    if need > after:
        log.warning(
            "max_calls (%d) + max_pending_handshakes (%d) + %d reserved exceed the descriptor limit (%d): calls may fail; raise `ulimit -n` or lower them",
            config.max_calls, config.max_pending_handshakes, RESERVED_FDS, after,
        )  # fmt: skip


def cmd_serve(args: argparse.Namespace) -> int:
    from .limits import raise_fd_limit

    worker = getattr(args, "worker_of", None)
    setup_logging(args.log_format, args.log_level, announce=worker is None, worker=worker is not None)
    _cwd_first_on_path()
    before, after = raise_fd_limit()  # first: the default pending-handshake cap is sized from it
    if worker is None and getattr(args, "workers", 1) != 1:
        try:
            config = server_config_from_args(args)  # the agent is the workers' to load
        except ValueError as exc:
            print(f"callengine: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        from .workers import supervise

        return supervise(args, config)
    try:
        agent = load_agent(args.agent)
        config = server_config_from_args(args)
    except (AgentLoadError, ValueError) as exc:
        print(f"callengine: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    on_listening = None
    if worker is not None:
        import attrs

        from .workers import WorkerChannel

        fds = tuple(args.listen_fd)
        config = attrs.evolve(config, reuse_port=not fds, listen_fds=fds, metrics_dir=os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        on_listening = WorkerChannel(worker).ready
    tune_gc_for_serving()
    failure: BaseException | None = None
    code = EXIT_OK
    try:
        code = trio.run(run_server, agent, config, (before, after), on_listening)
    except* OSError as group:  # trio's nurseries wrap it in an exception group
        failure = group.exceptions[0]
        while isinstance(failure, BaseExceptionGroup):
            failure = failure.exceptions[0]
    except* KeyboardInterrupt:  # Ctrl-C before the signal handlers were installed
        code = 128 + signal.SIGINT
    if worker is not None:  # trio restored SIGUSR1's default: a late supervisor EOF must not kill us
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    if failure is not None:
        reason = getattr(failure, "strerror", None) or failure
        print(f"callengine: error: cannot listen on {args.host}:{args.port}: {reason}", file=sys.stderr)
        return EXIT_LISTEN
    return code


# --- dial ---------------------------------------------------------------------------------


def _load_caller_audio(args) -> tuple[np.ndarray | None, int]:
    from .audio.generate import tone
    from .audio.wav import read_wav

    if args.wav:
        wav = read_wav(args.wav)
        return np.frombuffer(wav.pcm, dtype="<i2"), wav.sample_rate
    if args.tone:
        return tone(args.tone, args.tone_seconds, 16000, dbfs=-15), 16000
    return None, 16000


def cmd_dial(args: argparse.Namespace) -> int:
    from .testing.dial import DialError, build_start, close_problem, parse_dtmf, simulate_call
    from .testing.quirks import check_quirks

    setup_logging("text", args.log_level)
    try:
        quirks = check_quirks(args.provider, args.quirk)
        dtmf = parse_dtmf(args.dtmf)
        audio, rate = _load_caller_audio(args)
        start = build_start(args.provider, params=args.param or (), caller=args.caller, called=args.called)
    except (ValueError, OSError) as exc:
        print(f"callengine: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    headers = [(b"authorization", f"Bearer {args.token}".encode())] if args.token else None
    try:
        summary = trio.run(
            lambda: simulate_call(
                args.url, args.provider, audio=audio, audio_rate=rate, speak_at=args.speak_at, dtmf=dtmf, seconds=args.seconds,
                record=args.record, extra_headers=headers, start=start, quirks=quirks,
            )
        )  # fmt: skip
    except DialError as exc:
        print(f"callengine: error: {exc}", file=sys.stderr)
        return 1
    problem = close_problem(summary)
    if problem:
        print(f"callengine: error: {problem}", file=sys.stderr)
        return 1
    return 0


# --- entry point --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="callengine", description="Run voice AI agents on phone calls (Awaaz AI, Knowlarity).")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"callengine {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="serve an agent to providers over WebSocket")
    add_serve_arguments(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("dial", help="call a server as a simulated provider and print the timeline")
    p.add_argument("url", help="ws:// or wss:// URL, e.g. ws://127.0.0.1:8080/awaaz")
    p.add_argument("--provider", choices=list(CODECS), required=True)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--wav", help="what the caller says: a WAV file")
    src.add_argument("--tone", type=float, help="what the caller says: a tone of this frequency (Hz)")
    p.add_argument("--tone-seconds", type=float, default=1.0, help="length of --tone (default 1 s)")
    p.add_argument("--speak-at", type=float, default=0.5, help="when the caller starts talking (s, default 0.5)")
    p.add_argument("--dtmf", help='key presses, e.g. "1@2.5,3@6" (DTMF events on Awaaz, tones on Knowlarity)')
    p.add_argument("--seconds", type=float, default=10.0, help="hang up after this long unless the engine ends first")
    p.add_argument("--record", help="write what the caller heard to this WAV file")
    p.add_argument("--token", default=_env_token(), help="send this shared secret as 'Authorization: Bearer' (default: $CALLENGINE_TOKEN)")
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="a custom parameter of the call's start message (repeatable)")
    p.add_argument("--caller", help="the caller's number in the start message (default +919800000001)")
    p.add_argument("--called", help="the number called, in the start message (default +918000000002)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="warning")
    from .testing.quirks import add_quirk_argument

    add_quirk_argument(p)
    p.set_defaults(func=cmd_dial)

    p = sub.add_parser("demo", help="run the engine and two simulated calls in-process")
    p.add_argument("--record-dir", default=".", help="where to write demo-awaaz.wav and demo-knowlarity.wav")
    p.add_argument("--seconds", type=float, default=9.0, help="length of each call (default 9)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="warning")
    p.set_defaults(func=_cmd_demo)

    from .cli_call import add_call_parser

    add_call_parser(sub)
    try:
        from .testing.load import add_load_parser
    except ImportError:
        pass
    else:
        add_load_parser(sub)
    return parser


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import cmd_demo

    return cmd_demo(args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
