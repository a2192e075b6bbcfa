"""Quickstart example: total the orders in a CSV file, per customer.

    python app.py orders.csv totals.json
    pyward run app.py orders.csv totals.json
"""
import csv
import json
import sys
from collections import defaultdict


def load(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def totals(rows):
    per_customer = defaultdict(float)
    for row in rows:
        per_customer[row["customer"]] += int(row["quantity"]) * float(row["unit_price"])
    return {name: round(amount, 2) for name, amount in sorted(per_customer.items())}


def main(argv):
    source, target = argv[1], argv[2]
    result = totals(load(source))
    with open(target, "w") as f:
        json.dump(result, f, indent=2)
    for name, amount in result.items():
        print(f"{name:>8}  {amount:9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
