"""Print a search_load results file (bench/results/search_load-*.json) as Markdown.

.venv/bin/python bench/report.py                      # the newest results file
.venv/bin/python bench/report.py bench/results/search_load-20261128T233935Z.json
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.search_load import Cell, goals, table  # noqa: E402


def main() -> None:
    paths = [Path(p) for p in sys.argv[1:]] or sorted(
        (ROOT / "bench" / "results").glob("search_load-*.json")
    )[-1:]
    for path in paths:
        result = json.loads(path.read_text())
        cells = [Cell(**c) for c in result["cells"]]
        targets = list(dict.fromkeys(c.target for c in cells))
        machine, settings = result["machine"], result["settings"]
        print(f"### {path.name}\n")
        print(f"`{result['command']}` — {result['seconds']:.0f} s, app {machine.get('git')}, "
              f"gunicorn {settings['gunicorn']}, floor connections "
              f"{settings['floor_connections']}, CPUs busy before the run "
              f"{machine.get('cpu_busy_before', float('nan')):.0%} "
              f"(load average {machine.get('loadavg_before', ['?'])[0]:.1f})\n")  # fmt: skip
        print(table(cells, targets))
        print()
        print("```\n" + goals(cells) + "\n```\n")


if __name__ == "__main__":
    main()
