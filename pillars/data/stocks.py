"""Daily stock prices: four large US stocks 2000-2013 (as bokeh-sampledata ships them) and the S&P 500 and
NASDAQ Composite indices 1999-2018 (as the `arch` package ships them), as trading days and adjusted closes.

The adjusted close folds splits and dividends into the price, so the log change from one adjusted close to
the next is the day's total return; the raw close jumps at every split (Apple's 2:1 of 2005, 7:1 of 2014).
"""
from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np

from pillars.data.registry import DataError, Dataset, Installed, PyPI, RawFile, Web, load, register

STOCKS = ("AAPL", "IBM", "MSFT", "GOOG")   # the file's FB has 196 days only: too short to split into years
INDICES = {"sp500": "S&P 500", "nasdaq": "NASDAQ Composite"}
SERIES = (*INDICES, *STOCKS)
_ARCH = "https://raw.githubusercontent.com/bashtage/arch/v8.0.0/arch/data/"


def read_prices(path: Path, date_format: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A gzipped CSV of daily prices with columns Date and Adj Close (and Ticker, when it holds several
    stocks): ticker ("" for none) -> (trading days as datetime64[D], adjusted closes as float64), in time
    order. `date_format`: "iso" (2000-03-01) or "us" (3/1/2000)."""
    with gzip.open(path, "rt", newline="", encoding="ascii") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"Date", "Adj Close"} <= set(rows[0]):
        raise DataError(f"{path}: not a table of daily prices (no Date and Adj Close columns): delete it and "
                        "fetch it again")
    by_ticker: dict[str, list[tuple[str, float]]] = {}
    for row in rows:
        day = row["Date"]
        if date_format == "us":
            month, d, year = day.split("/")
            day = f"{year}-{int(month):02d}-{int(d):02d}"
        by_ticker.setdefault(row.get("Ticker", ""), []).append((day, float(row["Adj Close"])))
    out = {}
    for ticker, pairs in by_ticker.items():
        days = np.array([d for d, _ in pairs], dtype="datetime64[D]")
        close = np.array([c for _, c in pairs], dtype=np.float64)
        order = np.argsort(days, kind="stable")
        days, close = days[order], close[order]
        if np.any(np.diff(days.astype(np.int64)) <= 0) or not np.all(close > 0):
            raise DataError(f"{path}: {ticker or 'the series'} repeats a day or has a price that is not positive: "
                            "delete it and fetch it again")
        out[ticker] = (days, close)
    return out


def _arrays(series: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    out = {}
    for name, (days, close) in series.items():
        out[f"{name}_day"], out[f"{name}_adj_close"] = days.astype(np.int64), close
    return out


def _parse_stocks(paths: dict[str, Path]) -> dict[str, np.ndarray]:
    tickers = read_prices(paths["stocks.csv.gz"], "iso")
    missing = [t for t in STOCKS if t not in tickers]
    if missing:
        raise DataError(f"{paths['stocks.csv.gz']}: no prices of {', '.join(missing)}: delete it and fetch it again")
    return _arrays({t: tickers[t] for t in STOCKS})


def _parse_indices(paths: dict[str, Path]) -> dict[str, np.ndarray]:
    return _arrays({name: read_prices(paths[f"{name}.csv.gz"], "us")[""] for name in INDICES})


register(Dataset(
    name="stocks",
    kind="time series",
    description="daily prices of Apple, IBM, Microsoft (2000-03-01 to 2013-03-01) and Google (from its listing, "
                "2004-08-19), from Quandl's WIKI data as bokeh-sampledata ships them",
    licence="public domain (Quandl WIKI, per bokeh-sampledata); package BSD-3-Clause",
    size="AAPL, IBM, MSFT 3,270 trading days each, GOOG 2,148: day and adjusted close",
    files=(RawFile("stocks.csv.gz", "5abadf99b2d394f920120a27de6f0df129859d71d4cfb0bf661bcc99446ab1fd",
                   "bokeh_sampledata/_data/stocks.csv.gz"),),
    sources=(Installed("bokeh_sampledata"),
             PyPI("bokeh-sampledata", "2026.1", "f40331a40ca30c64a1c1471835aad9006b61b0d9731a3f649ee8cbbf48d3822f")),
    parse=_parse_stocks,
    meta={"series": list(STOCKS)},
))

register(Dataset(
    name="stock-indices",
    kind="time series",
    description="daily closes of the S&P 500 and the NASDAQ Composite, 1999-01-04 to 2018-12-31, as the arch "
                "package ships them for its examples",
    licence="NCSA (the arch package)",
    size="5,031 trading days each: day and adjusted close",
    files=(RawFile("sp500.csv.gz", "1e028cbb9c400cc018c816ccc439b33c919387e726c3ed5ca2c05c82746059de",
                   "arch/data/sp500/sp500.csv.gz", _ARCH + "sp500/sp500.csv.gz"),
           RawFile("nasdaq.csv.gz", "b2009535343ebb14e0aa11ed086788d2997a416ffe4f9450eed9a561ae30ac59",
                   "arch/data/nasdaq/nasdaq.csv.gz", _ARCH + "nasdaq/nasdaq.csv.gz")),
    # the wheel's checksum is of the CPython 3.11 build; other Pythons take the installed package
    sources=(Installed("arch"),
             PyPI("arch", "8.0.0", "975ec3bdf7926335742ac362251fafe32b448b8f194dead062f22a00beef772d"), Web()),
    parse=_parse_indices,
    meta={"series": list(INDICES)},
))


def prices(series: str, log=lambda s: None) -> tuple[np.ndarray, np.ndarray]:
    """(trading days as datetime64[D], adjusted closes) of one series of SERIES."""
    if series not in SERIES:
        raise ValueError(f"series must be one of {', '.join(SERIES)}, not {series!r}")
    arrays = load("stock-indices" if series in INDICES else "stocks", log)
    return arrays[f"{series}_day"].astype("datetime64[D]"), arrays[f"{series}_adj_close"]
