"""``python -m lorat_tracker.integrations.vot``: the TraX tracker process (see ``lorat_tracker.integrations.vot.server``)."""
import sys

from .server import main

if __name__ == "__main__":
    sys.exit(main())
