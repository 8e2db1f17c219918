"""Run by hooks/alma-hook with the Python that has alma_hooks; fails open if it has not."""
import sys

try:
    from alma_hooks.entry import main
except BaseException:  # noqa: BLE001 - not installed here: a memory hook must never break the session
    sys.exit(0)
sys.exit(main())
