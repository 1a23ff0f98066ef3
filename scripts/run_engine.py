#!/usr/bin/env python3
"""The engine script: serve an agent to Awaaz AI / Knowlarity, same options as `callengine serve`.

    python scripts/run_engine.py mypkg.agent:handler --port 8080 --token s3cret
"""

import argparse
import sys

from callengine.cli import add_serve_arguments, cmd_serve


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="run_engine.py", description=(__doc__ or "").splitlines()[0])
    add_serve_arguments(parser)
    return cmd_serve(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
