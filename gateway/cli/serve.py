"""`edgegw serve -c cloud.yaml`: the evidence API over the ledger (no TSDB needed)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from edge_config import load_cloud_config
from edge_config.listen import split_listen
from edge_config.secrets import redact_url
from gateway.cli.options import listen as listen_address


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from cloud_bridge.cloud.api.app import create_cloud_app
    from cloud_bridge.cloud.ledger.sqldb import unusable

    cfg = load_cloud_config(args.config)  # a ConfigError is reported by main()
    listen = args.listen or cfg.api.listen  # both checked: the option's type, the model
    host, port = split_listen(listen)
    if why := unusable(cfg.ledger.url):
        print(f"edgegw serve: the ledger {redact_url(cfg.ledger.url)} cannot be used: {why}", file=sys.stderr)
        return 2
    if cfg.api.token:
        print(
            "edgegw serve: api.token (or EDGEGW_API_TOKEN) is no longer accepted and is ignored; create an operator "
            "with `edgegw cloud user add NAME --role operator --enterprise ID -c cloud.yaml` (README, Authentication)",
            file=sys.stderr,
        )
    print(f"证据接口 / evidence API: http://{listen}/api/v1/enterprises  (ledger {redact_url(cfg.ledger.url)})")
    uvicorn.run(create_cloud_app(cfg), host=host, port=port, log_level="warning")
    return 0


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "serve", help="the cloud evidence API: networked ratio, online time, OEE per enterprise and period"
    )
    p.add_argument("-c", "--config", required=True, help="cloud.yaml")
    p.add_argument("--listen", type=listen_address, default=None, help="HOST:PORT (default: api.listen of cloud.yaml)")
    p.set_defaults(func=cmd_serve)
