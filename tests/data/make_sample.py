"""Rebuild tests/data/online_retail_sample from the bundled Online Retail files.

A small, real slice with every kind of known dirt: the first invoices of two months plus every
line of invoices that carry cancellations, missing customers, non-product codes, zero prices or
exact duplicate lines. Run: .venv/bin/python tests/data/make_sample.py
"""

from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "data" / "online-retail"
TARGET = Path(__file__).resolve().parent / "online_retail_sample"


def sample_month(month: str, first_invoices: int) -> pd.DataFrame:
    df = pd.read_csv(SOURCE / f"online_retail_{month}.csv.gz", dtype=str, keep_default_na=False)
    invoices = list(dict.fromkeys(df.InvoiceNo))
    keep = set(invoices[:first_invoices])
    dirt = [
        df.InvoiceNo.str.startswith("C"),
        df.CustomerID == "",
        df.StockCode.isin(["POST", "DOT", "M", "D", "C2"]),
        df.UnitPrice.astype(float) <= 0,
        df.duplicated(keep=False),
    ]
    for mask in dirt:
        keep.update(list(dict.fromkeys(df.InvoiceNo[mask]))[:3])
    return df[df.InvoiceNo.isin(keep)]


if __name__ == "__main__":
    TARGET.mkdir(exist_ok=True)
    for month, n in (("2010-12", 40), ("2011-01", 25)):
        part = sample_month(month, n)
        part.to_csv(TARGET / f"online_retail_{month}.csv", index=False)
        print(month, len(part), "lines")
