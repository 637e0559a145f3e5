"""Board power on NVIDIA Jetson: INA3221 rails in sysfs, or ``tegrastats`` output.

Two sources, tried in this order by :func:`detect_power_source`:

* **sysfs** (no subprocess, ~ms resolution). Jetson modules carry one or more TI INA3221
  three-channel monitors. The kernel's ``ina3221`` hwmon driver (JetPack 5/6) exposes, per
  channel ``N`` in 1..3, ``inN_label`` (rail name), ``inN_input`` (bus voltage, mV) and
  ``currN_input`` (current, mA) under
  ``/sys/bus/i2c/drivers/ina3221/<bus-addr>/hwmon/hwmon<k>/`` (kernel doc
  ``Documentation/hwmon/ina3221.rst``). Power is ``mV * mA / 1000`` mW. Channels labelled ``NC``
  are not connected, and ``in7`` is the sum of shunt voltages, not a rail. Older JetPack 4 kernels
  use NVIDIA's ``ina3221x`` IIO driver: ``.../ina3221x/<bus-addr>/iio:device<k>/rail_name_<N>``
  and ``in_power<N>_input`` (mW), channels 0..2.
* **tegrastats**: lines such as ``... VDD_IN 5000mW/5000mW VDD_CPU_GPU_CV 800mW/810mW`` (Orin;
  current/average) or ``POM_5V_IN 2796/2796`` (Nano, TX2: no unit, mW).

The board's total input is the ``VDD_IN`` rail (Orin) or ``POM_5V_IN`` (Nano/TX2); where neither
exists (Xavier) the rails are summed. Carrier-board consumption outside the module's monitors is
not included: say so when reporting energy.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edgeseg.errors import EdgesegError

__all__ = [
    "PowerRail",
    "PowerSummary",
    "PowerSampler",
    "SysfsPowerSource",
    "TegrastatsPowerSource",
    "find_ina3221_rails",
    "parse_tegrastats_line",
    "total_power_mw",
    "detect_power_source",
]

# Rails that measure the whole module input; everything else is a sub-rail of it.
TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")

# "NAME 1234mW/1200mW" (JetPack 5/6) or "NAME 1234/1200" (JetPack 4). The look-ahead rejects
# "RAM 2000/7000MB"-style fields that share the NAME a/b shape but carry another unit.
_TEGRASTATS_RAIL = re.compile(r"\b([A-Za-z][A-Za-z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?=\s|$)")


@dataclass(frozen=True)
class PowerRail:
    """One monitored supply rail and the sysfs files that give its power.

    Args:
        name: the rail label, e.g. ``"VDD_IN"``.
        power_path: a file holding power in mW (IIO layout), or None.
        voltage_path: a file holding bus voltage in mV (hwmon layout), or None.
        current_path: a file holding current in mA (hwmon layout), or None.
    """

    name: str
    power_path: Path | None = None
    voltage_path: Path | None = None
    current_path: Path | None = None

    def read_mw(self) -> float:
        """Instantaneous power of this rail in mW."""
        if self.power_path is not None:
            return float(_read_int(self.power_path))
        if self.voltage_path is None or self.current_path is None:
            raise EdgesegError(f"rail {self.name}: needs a power file or voltage and current files")
        return _read_int(self.voltage_path) * _read_int(self.current_path) / 1000.0


def _read_int(path: Path) -> int:
    # Some drivers append a unit ("32760 mA"); the number is always the first token.
    return int(path.read_text().split()[0])


def find_ina3221_rails(sys_root: str | Path = "/sys") -> list[PowerRail]:
    """Every connected INA3221 rail under ``sys_root`` (both driver layouts).

    Args:
        sys_root: the sysfs mount point; tests point it at a tree they wrote.

    Returns:
        The rails, sorted by name; empty when the board has no INA3221 (not a Jetson).
    """
    root = Path(sys_root)
    rails: dict[str, PowerRail] = {}
    # JetPack 5/6: mainline hwmon driver.
    for hwmon in sorted(root.glob("bus/i2c/drivers/ina3221/*/hwmon/hwmon*")):
        for label_file in sorted(hwmon.glob("in*_label")):
            channel = label_file.name[2:].split("_")[0]
            label = label_file.read_text().strip()
            if channel == "7" or not label or label.upper().startswith("NC"):
                continue  # in7 is the sum of shunt voltages; NC = channel not connected
            volt, curr = hwmon / f"in{channel}_input", hwmon / f"curr{channel}_input"
            if volt.is_file() and curr.is_file():
                rails[label] = PowerRail(label, voltage_path=volt, current_path=curr)
    # JetPack 4: NVIDIA's IIO driver with a ready-made power channel.
    for iio in sorted(root.glob("bus/i2c/drivers/ina3221x/*/iio:device*")):
        for name_file in sorted(iio.glob("rail_name_*")):
            channel = name_file.name.rsplit("_", 1)[-1]
            label = name_file.read_text().strip()
            power = iio / f"in_power{channel}_input"
            if label and not label.upper().startswith("NC") and power.is_file():
                rails[label] = PowerRail(label, power_path=power)
    return [rails[k] for k in sorted(rails)]


def parse_tegrastats_line(line: str) -> dict[str, float]:
    """Current power of every rail in one ``tegrastats`` line, in mW.

    Args:
        line: one line of ``tegrastats`` output.

    Returns:
        ``{rail: mW}`` using the instantaneous (first) value of each ``now/avg`` pair; empty when
        the line has no power fields.
    """
    return {m.group(1): float(m.group(2)) for m in _TEGRASTATS_RAIL.finditer(line)}


def total_power_mw(rails_mw: dict[str, float]) -> float:
    """Module input power: the ``VDD_IN``/``POM_5V_IN`` rail, else the sum of all rails."""
    for name in TOTAL_RAILS:
        if name in rails_mw:
            return rails_mw[name]
    return float(sum(rails_mw.values()))


class SysfsPowerSource:
    """Reads the INA3221 rails directly from sysfs.

    Args:
        rails: the rails to read (from :func:`find_ina3221_rails`).
    """

    kind = "sysfs-ina3221"

    def __init__(self, rails: list[PowerRail]) -> None:
        if not rails:
            raise EdgesegError("no INA3221 power rails to read")
        self.rails = rails

    def read(self) -> dict[str, float]:
        """``{rail: mW}`` now."""
        return {r.name: r.read_mw() for r in self.rails}

    def close(self) -> None:
        """Nothing to release (files are opened per read)."""


class TegrastatsPowerSource:
    """Runs ``tegrastats --interval MS`` and keeps the rails of its latest line.

    Args:
        interval_ms: tegrastats' own sampling period.
        command: the executable; defaults to ``tegrastats`` on PATH.
    """

    kind = "tegrastats"

    def __init__(self, interval_ms: int = 100, command: str | None = None) -> None:
        exe = command or shutil.which("tegrastats")
        if exe is None:
            raise EdgesegError("tegrastats not found on PATH (it ships with JetPack)")
        self._latest: dict[str, float] = {}
        self._lock = threading.Lock()
        self._proc = subprocess.Popen(
            [exe, "--interval", str(interval_ms)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._reader = threading.Thread(target=self._pump, name="tegrastats-reader", daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        for line in self._proc.stdout or ():
            rails = parse_tegrastats_line(line)
            if rails:
                with self._lock:
                    self._latest = rails

    def read(self) -> dict[str, float]:
        """``{rail: mW}`` from the most recent line (empty until the first line arrives)."""
        with self._lock:
            return dict(self._latest)

    def close(self) -> None:
        """Stop the tegrastats process this source started."""
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        self._reader.join(timeout=2)


PowerSource = SysfsPowerSource | TegrastatsPowerSource


def detect_power_source(sys_root: str | Path = "/sys") -> PowerSource | None:
    """The best power source on this machine, or None off-Jetson.

    Sysfs is preferred (no subprocess, finer time resolution); tegrastats is the fallback when the
    INA3221 nodes are not readable.
    """
    rails = find_ina3221_rails(sys_root)
    if rails:
        source = SysfsPowerSource(rails)
        try:
            source.read()
            return source
        except (OSError, ValueError):
            pass  # present but unreadable (permissions): try tegrastats instead
    if shutil.which("tegrastats"):
        return TegrastatsPowerSource()
    return None


@dataclass
class PowerSummary:
    """Average power over a sampled interval.

    Attributes:
        source: which source produced the samples (``sysfs-ina3221`` / ``tegrastats``).
        samples: number of samples taken.
        duration_s: wall time between the first and last sample.
        avg_total_mw: mean module input power (see :func:`total_power_mw`).
        avg_rails_mw: mean power of each rail.
    """

    source: str
    samples: int
    duration_s: float
    avg_total_mw: float
    avg_rails_mw: dict[str, float] = field(default_factory=dict)

    def energy_per_item_mj(self, seconds: float, items: int) -> float:
        """Energy per processed item in mJ, given the timed work's duration and item count."""
        return self.avg_total_mw * seconds / max(items, 1)


class PowerSampler:
    """Samples a power source in a background thread while a block runs.

    ``with PowerSampler(source) as s: run(); summary = s.summary()``.

    Args:
        source: where readings come from (:func:`detect_power_source`).
        interval_s: seconds between samples. Defaults to 0.05.
        clock: time function, injectable for tests. Defaults to ``time.perf_counter``.
    """

    def __init__(
        self, source: PowerSource, interval_s: float | None = None, clock: Callable[[], float] | None = None
    ) -> None:
        self.source = source
        self.interval_s = 0.05 if interval_s is None else interval_s
        self._clock = clock or time.perf_counter
        self._samples: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PowerSampler:
        self._stop.clear()
        self._samples.clear()
        self._thread = threading.Thread(target=self._run, name="power-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._take()  # one last reading so short blocks still get a sample at their end

    def _take(self) -> None:
        try:
            rails = self.source.read()
        except (OSError, ValueError):
            return  # a transient sysfs read error loses one sample, not the benchmark
        if rails:
            self._samples.append((self._clock(), rails))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._take()
            self._stop.wait(self.interval_s)

    def summary(self) -> PowerSummary | None:
        """Averages over the samples taken; None when the source gave no reading."""
        if not self._samples:
            return None
        names = sorted({n for _, rails in self._samples for n in rails})
        avg_rails = {n: sum(r.get(n, 0.0) for _, r in self._samples) / len(self._samples) for n in names}
        totals = [total_power_mw(r) for _, r in self._samples]
        return PowerSummary(
            source=self.source.kind,
            samples=len(self._samples),
            duration_s=self._samples[-1][0] - self._samples[0][0],
            avg_total_mw=sum(totals) / len(totals),
            avg_rails_mw=avg_rails,
        )
