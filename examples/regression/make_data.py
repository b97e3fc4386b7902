"""Regenerate data/train.csv and data/test.csv (already shipped; run only to change them).

A synthetic energy-use table: 8 numeric features (temperature, humidity, occupancy, ...) and a
target that depends on them non-linearly, with noise. Seeded, so the files are reproducible.
"""

from __future__ import annotations

import csv
import math
import random
from pathlib import Path

FEATURES = ["temp", "humidity", "occupancy", "hour", "weekday", "area", "insulation", "solar"]


def row(rng: random.Random) -> list[float]:
    temp = rng.uniform(-5, 35)
    humidity = rng.uniform(20, 90)
    occupancy = rng.randint(0, 40)
    hour = rng.randint(0, 23)
    weekday = rng.randint(0, 6)
    area = rng.uniform(50, 400)
    insulation = rng.uniform(0, 1)
    solar = rng.uniform(0, 1000)
    heating = max(0.0, 18 - temp) * (1.5 - insulation)
    cooling = max(0.0, temp - 24) * (1 + humidity / 100)
    daytime = math.sin(math.pi * hour / 24) ** 2
    kwh = (
        0.02 * area * (heating + cooling)
        + 0.4 * occupancy * daytime * (1 if weekday < 5 else 0.6)
        - 0.004 * solar
        + rng.gauss(0, 1.5)
    )
    return [
        round(v, 3)
        for v in (temp, humidity, occupancy, hour, weekday, area, insulation, solar, kwh)
    ]


def main() -> None:
    rng = random.Random(2026)
    out = Path(__file__).resolve().parent / "data"
    out.mkdir(exist_ok=True)
    for name, n in (("train.csv", 2400), ("test.csv", 600)):
        with (out / name).open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow([*FEATURES, "kwh"])
            w.writerows(row(rng) for _ in range(n))


if __name__ == "__main__":
    main()
