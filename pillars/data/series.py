"""Time series: hourly weather of a typical year at two US stations (TMY3 files shipped with pvlib), a reader
for the user's own CSV series, and the seasonal period of a series from its autocorrelation.

TMY3 ("typical meteorological year") files hold 8760 hourly rows, each month taken from a different real
year, so the series has seams at month boundaries. A row's time is the end of its hour: "01:00" covers
00:00-01:00, stored here as hour_of_day 0.
"""
from __future__ import annotations

import csv
import io
import re
import warnings
from pathlib import Path

import numpy as np

from pillars.config import note
from pillars.data.registry import Dataset, InputFileError, Installed, PyPI, RawFile, Web, load, register
from pillars.data.text import read_user_text

# station key -> (file, USAF id, place)
WEATHER_STATIONS = {
    "greensboro": ("723170TYA.CSV", "723170", "Greensboro Piedmont Triad International, NC"),
    "sand-point": ("703165TY.csv", "703165", "Sand Point, AK"),
}
WEATHER_COLUMNS = {
    "temperature": "Dry-bulb (C)",
    "dew_point": "Dew-point (C)",
    "humidity": "RHum (%)",
    "pressure": "Pressure (mbar)",
    "wind_speed": "Wspd (m/s)",
    "wind_direction": "Wdir (degrees)",
    "ghi": "GHI (W/m^2)",
    "dni": "DNI (W/m^2)",
    "dhi": "DHI (W/m^2)",
    "cloud_cover": "TotCld (tenths)",
}
_PVLIB = "https://raw.githubusercontent.com/pvlib/pvlib-python/v0.16.1/pvlib/data/"
_TMY_SHA = {
    "723170TYA.CSV": "1e96f84638ce98e6b29002bc45a27aa69bb29b0ed0368d3b52b7b1f81610c6c9",
    "703165TY.csv": "f0333a68a116f5ae92f1285a2ab8784d8e00e52a367445658ac88d72d93d8ca4",
}


def read_tmy3(path: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """A TMY3 CSV: the station line (id, name, state, time zone, latitude, longitude, elevation) and the
    hourly columns named in WEATHER_COLUMNS as float32, plus year, month, day and hour_of_day."""
    with open(path, newline="", encoding="ascii") as f:
        rows = list(csv.reader(f))
    if len(rows) < 3:
        raise InputFileError(f"{path}: not a TMY3 file (a station line, a header line, then hourly rows)")
    station, header, data = rows[0], rows[1], rows[2:]
    missing = [c for c in WEATHER_COLUMNS.values() if c not in header]
    if missing:
        raise InputFileError(f"{path}: not a TMY3 file, no column {', '.join(missing)}")
    out = {}
    for key, column in WEATHER_COLUMNS.items():
        i = header.index(column)
        out[key] = np.array([float(r[i]) for r in data], dtype=np.float32)
    date = [r[0].split("/") for r in data]
    out["month"] = np.array([int(d[0]) for d in date], dtype=np.int64)
    out["day"] = np.array([int(d[1]) for d in date], dtype=np.int64)
    out["year"] = np.array([int(d[2]) for d in date], dtype=np.int64)
    out["hour_of_day"] = np.array([int(r[1].split(":")[0]) - 1 for r in data], dtype=np.int64)
    return station, out


def _parse_weather(paths: dict[str, Path]) -> dict[str, np.ndarray]:
    tables = [read_tmy3(paths[file])[1] for file, _, _ in WEATHER_STATIONS.values()]
    first = tables[0]
    for t in tables:
        if len(t["temperature"]) != 8760:
            raise InputFileError(f"a TMY3 file has {len(t['temperature'])} hours, expected 8760")
        for key in ("month", "day", "hour_of_day"):
            if not np.array_equal(t[key], first[key]):
                raise InputFileError("the TMY3 files do not share one calendar of hours")
    arrays = {key: np.stack([t[key] for t in tables]) for key in list(WEATHER_COLUMNS) + ["year"]}
    arrays.update({"hour": np.arange(8760, dtype=np.int64), "month": first["month"], "day": first["day"],
                   "hour_of_day": first["hour_of_day"]})
    return arrays


register(Dataset(
    name="weather",
    kind="time series",
    description="hourly weather of a typical meteorological year (NREL TMY3, as shipped with pvlib 0.16.1) "
                "at Greensboro, NC and Sand Point, AK: temperature, humidity, pressure, wind, sunlight",
    licence="public domain (NREL); package BSD-3-Clause",
    size="2 stations x 8760 hours, 10 variables (arrays of shape (2, 8760))",
    files=tuple(RawFile(file, _TMY_SHA[file], f"pvlib/data/{file}", _PVLIB + file)
                for file, _, _ in WEATHER_STATIONS.values()),
    sources=(Installed("pvlib"),
             PyPI("pvlib", "0.16.1", "4e61b5228a13f782413d7cf8cc48eb6e62e7bf55d155958fa9fd72420b63603d"),
             Web()),
    parse=_parse_weather,
    meta={"stations": [f"{k}: {place} (USAF {usaf})" for k, (_, usaf, place) in WEATHER_STATIONS.items()],
          "columns": {k: v for k, v in WEATHER_COLUMNS.items()},
          "note": "each month comes from a different year (seams at month boundaries); Sand Point's pressure "
                  "is a constant 1012 mbar"},
))


def weather(station: str = "greensboro", column: str = "temperature") -> np.ndarray:
    """One hourly series (8760 float32 values) of the weather dataset."""
    if station not in WEATHER_STATIONS:
        raise ValueError(f"station must be one of {', '.join(WEATHER_STATIONS)}, not {station!r}")
    if column not in WEATHER_COLUMNS:
        raise ValueError(f"column must be one of {', '.join(WEATHER_COLUMNS)}, not {column!r}")
    return load("weather")[column][list(WEATHER_STATIONS).index(station)]


# ----------------------------------------------------------------------------- the user's own series

def load_csv_series(path: str | Path, column: str | int) -> np.ndarray:
    """One numeric column of a CSV file whose first line names the columns, as float32 in time order: the file's
    order, reversed when a date column of ISO dates runs newest first (`newest_first`).
    `column` is a name from that line, else a 0-based position (so a file whose columns are named 1, 2, 3 is
    read by name). Commas, semicolons or tabs separate fields."""
    path = Path(path).expanduser()
    text = read_user_text(path, "UTF-8 CSV")
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text, newline=None), dialect)
    try:   # each row with the number of its (last) line in the file, blank lines left out
        rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except csv.Error as e:
        raise InputFileError(f"{path}, line {reader.line_num}: not CSV ({e}); fix the line") from None
    if not rows:
        raise InputFileError(f"{path}: the file is empty; the first line must name the columns, "
                             "the next lines hold one value per column")
    header = [h.strip() for h in rows[0][1]]
    if all(is_number(h) for h in header):   # names may be numbers, but data may have no line of names
        note(f"note: the first line of {path} ({', '.join(header[:5])}{', ...' if len(header) > 5 else ''}) is read "
             "as the names of the columns, though it holds only numbers; if it is data, add a line of names "
             "above it")
    index = column_index(path, header, column)
    values = []
    for line_number, row in rows[1:]:
        cell = row[index].strip() if index < len(row) else None
        if cell is None:
            raise InputFileError(f"{path}, line {line_number}: {len(row)} fields, but column {header[index]!r} "
                                 f"is field {index + 1}; every line needs a value in every column")
        if any(c.strip() for c in row[len(header):]):   # 1,234.50 with a comma delimiter: every field shifts
            raise InputFileError(f"{path}, line {line_number}: {len(row)} fields where the first line names "
                                 f"{len(header)}, so its values may sit under the wrong columns; quote a value "
                                 "that holds the delimiter (\"1,234.50\"), or drop the thousands separators")
        try:
            value = float(cell)
        except ValueError:
            raise InputFileError(f"{path}, line {line_number}: {cell!r} in column {header[index]!r} is not a "
                                 "number; fix the value (a decimal point, no units or thousands separators) "
                                 "or delete the line") from None
        if not abs(value) <= float(np.finfo(np.float32).max):   # NaN, infinite, or beyond float32
            raise InputFileError(f"{path}, line {line_number}: {cell!r} in column {header[index]!r} is not a "
                                 "finite number within float32's range (3.4e38); fill in the gap, or fix or "
                                 "delete the line")
        values.append(value)
    if len(values) < 2:
        raise InputFileError(f"{path}: column {header[index]!r} has {len(values)} value(s); a series needs "
                             "at least 2")
    series = np.array(values, dtype=np.float32)
    return series[::-1].copy() if newest_first(path, header, rows[1:]) else series


ISO_DATE = re.compile(r"\d{4}-\d{2}")
TIME_COLUMN = re.compile(r"date|time|day|month|period", re.IGNORECASE)


def newest_first(path: Path, header: list[str], rows: list[tuple[int, list[str]]]) -> bool:
    """Whether the file runs backwards in time, by its first column named as a time (Date, Datetime,
    Timestamp, Day, Month, ...) that holds ISO dates (2020-03-01, 2020-03, or with a time): many price downloads
    list the newest day first, and a series must run forwards for its split into training, validation and
    test to hold out the future. Dates out of order are refused; no such column, or dates in another form,
    leave the file order as it is."""
    for i, name in enumerate(header):
        cells = [row[i].strip() if i < len(row) else "" for _, row in rows]
        if not TIME_COLUMN.search(name) or not all(ISO_DATE.match(c) for c in cells):
            continue
        try:
            with warnings.catch_warnings():   # numpy warns of a time zone (2024-01-03T10:00Z) and reads it
                warnings.simplefilter("ignore")
                times = np.array([c.replace(" ", "T", 1) for c in cells], dtype="datetime64[s]").astype(np.int64)
        except ValueError:
            continue
        steps = np.diff(times)
        if (steps >= 0).all():
            return False
        if (steps <= 0).all():
            note(f"note: {path} runs from the newest {name} ({cells[0]}) to the oldest ({cells[-1]}); it is read "
                 "in time order, oldest first")
            return True
        forwards = steps[steps != 0][0] > 0   # the file's direction, from its first change of date
        k = int(np.argmax(steps < 0)) if forwards else int(np.argmax(steps > 0))
        raise InputFileError(f"{path}, line {rows[k + 1][0]}: {name} {cells[k + 1]} after {cells[k]} breaks the "
                             f"file's time order; sort the lines by {name} (a series is read in time order)")
    return False


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def column_index(path: Path, header: list[str], column: str | int) -> int:
    """The position of `column` in the header: by name first, then as a 0-based position."""
    name = str(column).strip()
    named = [i for i, h in enumerate(header) if h == name]
    if len(named) > 1:
        raise InputFileError(f"{path}: {len(named)} columns are named {name!r} (fields "
                             f"{', '.join(str(i + 1) for i in named)}); rename them so that the name picks one")
    if named:
        return named[0]
    if name.isdecimal() and int(name) < len(header):
        return int(name)
    where = f" and no column {name} (0-based: 0 to {len(header) - 1})" if name.isdecimal() else ""
    alike = [h for h in header if h.lower() == name.lower()]
    hint = f" ({alike[0]!r} differs only in case)" if alike else ""
    raise InputFileError(f"{path}: no column named {name!r}{where}{hint}; the columns are: {', '.join(header)}")


def autocorrelation(series: np.ndarray, max_lag: int) -> np.ndarray:
    """The sample autocorrelation at lags 0..max_lag (1 at lag 0)."""
    x = np.asarray(series, dtype=np.float64)
    x = x - x.mean()
    n = len(x)
    size = 1 << int(np.ceil(np.log2(2 * n)))
    spectrum = np.fft.rfft(x, size)
    acf = np.fft.irfft(spectrum * np.conj(spectrum), size)[:max_lag + 1]
    return acf / acf[0]


def _highest_peak(x: np.ndarray, min_period: int, max_period: int) -> tuple[int, float] | None:
    """The lag in min_period..max_period whose autocorrelation tops both neighbours, highest of all such
    lags, counting only lags after the autocorrelation has first fallen and begun to rise again."""
    acf = autocorrelation(x, max_period + 1)
    rising = np.flatnonzero(np.diff(acf) > 0)
    if len(rising) == 0:
        return None
    peaks = [k for k in range(max(min_period, int(rising[0]) + 1), max_period + 1)
             if acf[k] > acf[k - 1] and acf[k] >= acf[k + 1]]
    if not peaks:
        return None
    best = max(peaks, key=lambda k: (acf[k], -k))
    return best, float(acf[best])


def infer_season(series: np.ndarray, min_period: int = 2, max_period: int | None = None,
                 min_autocorrelation: float = 0.2) -> int | None:
    """The seasonal period of a series (24 for hourly temperature, 12 for monthly sales), from the peaks of
    its autocorrelation at lags min_period..max_period (default a third of the length).

    Slow swings (weather fronts, a trend) tilt the autocorrelation and pull its peaks off the period, so
    the first peak found only sets the width of a centred moving average; the series less that average
    keeps the seasonal swing and loses the slow ones, and its highest autocorrelation peak is the period.
    None when no peak reaches `min_autocorrelation` (noise, a random walk: no season to find)."""
    x = np.asarray(series, dtype=np.float64)
    if x.ndim != 1 or not np.all(np.isfinite(x)):
        raise ValueError("infer_season needs a 1-D series of finite numbers")
    max_period = max_period or len(x) // 3
    if len(x) < 3 * max(min_period, 2) or max_period < min_period:
        raise ValueError(f"a series of {len(x)} values is too short to find a period of at least "
                         f"{min_period} (it needs three periods)")
    max_period = min(max_period, len(x) - 2)
    if np.ptp(x) == 0:
        return None
    first = _highest_peak(x, min_period, max_period)
    if first is None:
        return None
    width = first[0]
    residual = x[(width - 1) // 2:][:len(x) - width + 1] - np.convolve(x, np.ones(width) / width, mode="valid")
    found = _highest_peak(residual, min_period, min(max_period, len(residual) - 2))
    if found is None or found[1] < min_autocorrelation:
        return None
    return found[0]
