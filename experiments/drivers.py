"""What the experiment drivers (recovery.py, maxrate.py, cost.py) share."""
import argparse
import csv


def arguments(doc):
    """A parser with the drivers' three positional arguments."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("exoflow", help="the exoflow binary")
    ap.add_argument("work", help="a scratch directory")
    ap.add_argument("out", help="the CSV to write")
    return ap


def write_rows(path, rows):
    """Writes a list of dicts with the same keys as CSV."""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
