"""The `edgegw` command line."""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import logging
import signal
import sys
from collections.abc import Sequence

from edge_config import ConfigError, json_schema, load_cloud_config, load_gateway_config
from edge_config.version import __version__
from gateway.cli.extras import missing_extra_message
from gateway.cli.options import listen, positive, whole


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("amqtt", "transitions", "pymodbus", "asyncua", "uvicorn.error"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL if noisy in ("amqtt", "transitions") else logging.WARNING)


async def _until_signal() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


# ---------------------------------------------------------------- commands


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.cli.demo import DemoSettings, run_demo

    settings = DemoSettings(
        seconds=args.seconds,
        industry=args.industry,
        devices=args.devices,
        looms=args.looms,
        api=args.api,
        data_dir=args.data_dir,
        influx_url=args.influx_url,
    )
    return asyncio.run(run_demo(settings))


def cmd_run(args: argparse.Namespace) -> int:
    from cloud_bridge.webauth import is_loopback
    from gateway.agent import Agent
    from gateway.compact import load_compact
    from gateway.heap import trim_heap
    from gateway.listen import ListenError
    from gateway.users import UserError, UserStore, users_path

    compact = load_compact(args.config)  # a ConfigError is reported by main()
    cfg = compact.light  # the config without its tag lists: the agent never holds every tag's model
    if cfg.api.token:
        logging.getLogger("edgegw").warning(
            "api.token (or EDGEGW_API_TOKEN) is ignored: create users and tokens with `edgegw user` (README)"
        )
    try:
        users = len(UserStore(users_path(cfg)))
    except UserError as e:
        print(f"edgegw run: {e}", file=sys.stderr)
        return 2
    if users == 0 and not is_loopback(cfg.api.host):
        print(
            f"edgegw run: 拒绝在 {cfg.api.listen} 上监听：尚未创建任何用户 / refusing to listen on {cfg.api.listen} "
            f"with no user: anyone on the network could read the gateway. Create one first:\n"
            f"  edgegw user add NAME --role admin -c {args.config}\n"
            f"or listen on 127.0.0.1 only (api.listen).",
            file=sys.stderr,
        )
        return 2

    async def main() -> None:
        stop = await _until_signal()
        agent = Agent(compact, config_path=args.config)
        trim_heap()  # what loading and validating the config left behind goes back to the system
        await agent.run(stop)

    try:
        asyncio.run(main())
    except ListenError as e:
        print(f"edgegw run: {e} — stop the other program or change api.listen", file=sys.stderr)
        return 2
    return 0


def cmd_config_validate(args: argparse.Namespace) -> int:
    loader = load_cloud_config if args.cloud else load_gateway_config
    failed = False
    for path in args.files:
        try:
            cfg = loader(path)
        except ConfigError as e:
            print(e, file=sys.stderr)
            failed = True
            continue
        devices = len(getattr(cfg, "devices", []))
        tags = sum(len(d.tags) for d in getattr(cfg, "devices", []))
        print(f"{path}: 有效 / valid ({devices} devices, {tags} tags)")
    return 2 if failed else 0


def cmd_config_schema(args: argparse.Namespace) -> int:
    print(json_schema("cloud" if args.cloud else "gateway"))
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from cloud_bridge.cloud.ingest.ingester import Ingester
    from cloud_bridge.cloud.ledger.sqldb import unusable
    from edge_config.secrets import redact_url

    cfg = load_cloud_config(args.config)  # a ConfigError is reported by main()
    if why := unusable(cfg.ledger.url):
        print(f"edgegw ingest: the ledger {redact_url(cfg.ledger.url)} cannot be used: {why}", file=sys.stderr)
        return 2

    listen = args.metrics_listen or cfg.ingest.metrics_listen  # both checked: the option's type, the model

    async def main() -> int:
        stop = await _until_signal()
        ingester = Ingester(cfg)
        stop_metrics = None
        if listen:
            from cloud_bridge.cloud.ingest.metrics import serve_metrics

            try:
                stop_metrics = serve_metrics(ingester, listen)
            except OSError as e:  # the address is taken, or not this machine's
                print(f"edgegw ingest: cannot listen on {listen}: {e.strerror or e}", file=sys.stderr)
                return 2
            print(f"采集入库指标 / ingester metrics: http://{listen}/metrics", flush=True)
        # What start-up made (modules, SQLAlchemy's among them) lives as long as the process: out of
        # the way of the full collections the ingest rate brings (each one would walk all of it).
        gc.freeze()
        ingester.start()
        await stop.wait()
        ingester.stop()
        if stop_metrics is not None:
            stop_metrics()
        return 0

    return asyncio.run(main())


# ---------------------------------------------------------------- parser

# Command groups that live in their own modules; each has `register(sub)`.
COMMAND_MODULES: list[str] = [
    "gateway.cli.bench",
    "gateway.cli.tags",
    "gateway.cli.opcua",
    "gateway.cli.evidence",
    "gateway.cli.serve",
    "gateway.cli.buffer",
    "gateway.cli.users",
    "gateway.cli.cloud_users",
    "gateway.cli.simulate",
    "gateway.cli.trust",  # after evidence and cloud_users: it adds to their groups
]


def build_parser(commands: bool = True) -> argparse.ArgumentParser:
    """The command line; `commands=False` leaves out the groups in COMMAND_MODULES (`edgegw run` does not
    need them: 0.6 MB of the agent's memory)."""
    p = argparse.ArgumentParser(prog="edgegw", description="车间数据采集边缘网关 / shop-floor edge gateway")
    p.add_argument("--version", action="version", version=f"edgegw {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="embedded broker + simulated workshop + gateway + ingester + API")
    d.add_argument("--seconds", type=positive(), default=None, help="stop after N seconds and print a summary")
    d.add_argument("--industry", default=None, help="textiles (default), power, chemicals, nonferrous, food, "
                   "new_materials or all (a mixed workshop)")  # fmt: skip
    d.add_argument("--devices", type=whole(1), default=None, help="machines of each kind (default 1; textiles: looms)")
    d.add_argument("--looms", type=whole(1), default=3, help="air-jet looms of the textiles demo (default 3)")
    d.add_argument("--api", type=listen, default="127.0.0.1:8080", help="edge API listen address")
    d.add_argument("--data-dir", default="./edgegw-data/demo", help="where the buffer and ledger live")
    d.add_argument("--influx-url", default=None, help="also write to an InfluxDB v2 API (e.g. VictoriaMetrics)")
    d.set_defaults(func=cmd_demo)

    r = sub.add_parser("run", help="run the edge agent")
    r.add_argument("-c", "--config", required=True, help="gateway.yaml")
    r.set_defaults(func=cmd_run)

    c = sub.add_parser("config", help="validate config files or print their JSON Schema")
    csub = c.add_subparsers(dest="config_command", required=True)
    v = csub.add_parser("validate", help="exit 0, or 2 with one file:line: path: message per error")
    v.add_argument("files", nargs="+")
    v.add_argument("--cloud", action="store_true", help="the files are cloud.yaml (ingester / API)")
    v.set_defaults(func=cmd_config_validate)
    s = csub.add_parser("schema", help="JSON Schema for editors")
    s.add_argument("--cloud", action="store_true", help="schema of cloud.yaml instead of gateway.yaml")
    s.set_defaults(func=cmd_config_schema)

    i = sub.add_parser("ingest", help="run the cloud ingester")
    i.add_argument("-c", "--config", required=True, help="cloud.yaml")
    i.add_argument(
        "--metrics-listen", type=listen, default=None, help="HOST:PORT of /metrics (default: ingest.metrics_listen)"
    )
    i.set_defaults(func=cmd_ingest)

    for name in COMMAND_MODULES if commands else ():
        importlib.import_module(name).register(sub)
    return p


def _command(argv: Sequence[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def _database_error(e: BaseException) -> str | None:
    """The reason of a database error (refused, lost, no rights: SQLAlchemy's DBAPIError), else None. Only
    the commands that use a database have loaded SQLAlchemy; the others do not import it for this."""
    if "sqlalchemy.exc" not in sys.modules:
        return None
    from sqlalchemy.exc import DBAPIError

    if not isinstance(e, DBAPIError):
        return None
    from cloud_bridge.cloud.ledger.sqldb import db_reason

    return db_reason(e)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(commands=_command(argv) != "run").parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return int(args.func(args))
    except ConfigError as e:  # every command that loads a config: one `file:line: path: message` per error
        print(e, file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:  # an optional dependency of this command is not installed
        message = missing_extra_message(args.command, e.name or "")
        if message is None:
            raise
        print(message, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except OSError as e:  # a file or directory the command needs: missing, not a directory, not writable, full
        logging.getLogger("edgegw").debug("%s", e, exc_info=True)  # the traceback with -v
        where = f"{e.filename}: " if e.filename else ""
        print(f"edgegw {args.command}: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except Exception as e:
        if (why := _database_error(e)) is None:
            raise
        logging.getLogger("edgegw").debug("%s", e, exc_info=True)
        print(f"edgegw {args.command}: the database cannot be used: {why}", file=sys.stderr)
        return 2  # not 1: for the evidence commands 1 says the evidence failed its check


if __name__ == "__main__":
    sys.exit(main())
