"""Demo data and background helpers, one module per system.

Each ``tools/demo_<system>.py`` may define ``setup()`` (idempotent: loads its demo data
once), ``background()`` (a list of ``(name, shell command)`` to run while the demo is up)
and ``after_start()`` (runs when the UI is up, e.g. to unpause or trigger DAGs).
"""
from __future__ import annotations

import importlib
import sys

SYSTEMS = ("demo_telemetry", "demo_breezeway", "demo_polymarket", "demo_airflow")


def _modules():
    for name in SYSTEMS:
        try:
            yield importlib.import_module(f"tools.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"tools.{name}":
                raise


def main(action: str) -> int:
    for mod in _modules():
        if action == "setup" and hasattr(mod, "setup"):
            mod.setup()
        elif action == "background" and hasattr(mod, "background"):
            for name, cmd in mod.background():
                print(f"{name} {cmd}")
        elif action == "after-start" and hasattr(mod, "after_start"):
            mod.after_start()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "setup"))
