"""LoRAT in the VOT toolkit (vot-toolkit 0.9.0, TraX): the only code importing ``vot`` or ``trax``.

* ``python -m lorat_tracker.integrations.vot`` - the TraX tracker process the toolkit starts (``server``).
* ``lorat vot register`` - writes the workspace's ``trackers.ini`` entry (``registration``).
* ``lorat vot workspace`` - builds a workspace that never downloads (``workspace``).
* ``lorat vot ARGS...`` - the ``vot`` command with 0.9.0's multistart/realtime bugs patched (``compat``).
* plain ``vot`` - the same patches, applied by a start-up hook when the toolkit is imported (``hook``).

Importing this package imports neither ``vot`` nor ``trax``; each module imports them when used.
"""

# The trackers.ini entry passes the tracker's options to the server as these variables
# (``TrackerSpec.to_env(ENV_PREFIX)`` / ``from_env``): LORAT_VOT_WEIGHTS, LORAT_VOT_THREADS, ...
ENV_PREFIX = "LORAT_VOT_"
