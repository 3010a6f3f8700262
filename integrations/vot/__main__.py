"""``python -m integrations.vot``: the TraX tracker process (see ``integrations.vot.server``)."""
import sys

from .server import main

if __name__ == "__main__":
    sys.exit(main())
