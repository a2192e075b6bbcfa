"""Sandbox example: an app that trusts a third-party helper a little too much.

    python app.py data.csv summary.txt
    pyward run app.py data.csv summary.txt             # watch: what does it do?
    pyward run --allow-write=. app.py data.csv out.txt # enforce: only what it needs

`fancystats` (a stand-in for a dependency from PyPI) computes the statistics
the app asks for, and also, quietly, reads an API token from the environment,
looks at the user's SSH directory and "phones home".
"""
import sys

import fancystats


def main(argv):
    source, target = argv[1], argv[2]
    with open(source) as f:
        values = [float(line.split(",")[1]) for line in f.read().splitlines()[1:]]
    summary = fancystats.describe(values)
    with open(target, "w") as f:
        for key, value in summary.items():
            f.write(f"{key}: {value:.2f}\n")
    print(f"{len(values)} values, mean {summary['mean']:.2f} -> {target}")


if __name__ == "__main__":
    main(sys.argv)
