"""``python -m operators``: run the AutoLFADSJob operator as the Deployment does.

Equivalent to ``kopf run --standalone --all-namespaces --liveness=http://0.0.0.0:8081/healthz -m
operators.main``; one replica is expected (the Deployment uses the Recreate strategy), so kopf's peering
is not used.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence

LIVENESS_ENV = "AUTOLFADS_LIVENESS_ENDPOINT"
DEFAULT_LIVENESS = "http://0.0.0.0:8081/healthz"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m operators", description=__doc__.splitlines()[0])
    parser.add_argument(
        "-n", "--namespace", action="append", default=[], metavar="NS",
        help="watch only this namespace (repeatable); default: all namespaces",
    )
    parser.add_argument(
        "--liveness", default=os.environ.get(LIVENESS_ENV, DEFAULT_LIVENESS), metavar="URL",
        help=f"kopf liveness endpoint (env {LIVENESS_ENV}; default {DEFAULT_LIVENESS}); '' turns it off",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)

    import kopf

    import operators.main  # noqa: F401  (registers the handlers)

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    kopf.run(
        standalone=True,
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        liveness_endpoint=args.liveness or None,
    )


if __name__ == "__main__":
    main()
