"""Jetson power readers, on sysfs trees written in the documented layouts and on tegrastats lines."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from edgeseg.errors import EdgesegError
from edgeseg.power import (
    PowerSampler,
    SysfsPowerSource,
    detect_power_source,
    find_ina3221_rails,
    parse_tegrastats_line,
    total_power_mw,
)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def _orin_hwmon_tree(root: Path) -> Path:
    """The JetPack 6 layout of an Orin Nano: one INA3221 on i2c bus 1 at 0x40, three rails + in7."""
    hw = root / "bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"
    rails = {1: ("VDD_IN", 5000, 1200), 2: ("VDD_CPU_GPU_CV", 4960, 400), 3: ("VDD_SOC", 4980, 300)}
    for ch, (label, mv, ma) in rails.items():
        _write(hw / f"in{ch}_label", label)
        _write(hw / f"in{ch}_input", str(mv))
        _write(hw / f"curr{ch}_input", str(ma))
        _write(hw / f"curr{ch}_crit", "32760 mA")
    _write(hw / "in7_label", "sum of shunt voltages")
    _write(hw / "in7_input", "1234")
    _write(hw / "name", "ina3221")
    return hw


def test_hwmon_layout_rails_and_power(tmp_path: Path) -> None:
    _orin_hwmon_tree(tmp_path)
    rails = find_ina3221_rails(tmp_path)
    assert [r.name for r in rails] == ["VDD_CPU_GPU_CV", "VDD_IN", "VDD_SOC"]
    readings = SysfsPowerSource(rails).read()
    assert readings["VDD_IN"] == pytest.approx(5000 * 1200 / 1000)  # mV * mA -> mW
    assert readings["VDD_SOC"] == pytest.approx(4980 * 300 / 1000)
    assert total_power_mw(readings) == pytest.approx(6000.0)  # VDD_IN is the module total


def test_hwmon_skips_not_connected_channel(tmp_path: Path) -> None:
    hw = _orin_hwmon_tree(tmp_path)
    _write(hw / "in3_label", "NC")
    assert "NC" not in {r.name for r in find_ina3221_rails(tmp_path)}
    assert len(find_ina3221_rails(tmp_path)) == 2


def test_iio_layout_jetpack4(tmp_path: Path) -> None:
    dev = tmp_path / "bus/i2c/drivers/ina3221x/6-0040/iio:device0"
    for ch, (name, mw) in enumerate([("POM_5V_IN", 2796), ("POM_5V_GPU", 120), ("POM_5V_CPU", 447)]):
        _write(dev / f"rail_name_{ch}", name)
        _write(dev / f"in_power{ch}_input", str(mw))
    source = SysfsPowerSource(find_ina3221_rails(tmp_path))
    readings = source.read()
    assert readings == {"POM_5V_CPU": 447.0, "POM_5V_GPU": 120.0, "POM_5V_IN": 2796.0}
    assert total_power_mw(readings) == 2796.0


def test_no_jetson_means_no_rails(tmp_path: Path) -> None:
    assert find_ina3221_rails(tmp_path) == []
    with pytest.raises(EdgesegError):
        SysfsPowerSource([])


def test_detect_prefers_sysfs(tmp_path: Path) -> None:
    _orin_hwmon_tree(tmp_path)
    source = detect_power_source(tmp_path)
    assert isinstance(source, SysfsPowerSource)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # JetPack 6 (Orin): NAME now/avg with mW units, among RAM/CPU/temperature fields.
        (
            "11-23-2024 10:00:00 RAM 2000/7000MB (lfb 4x4MB) SWAP 0/3000MB (cached 0MB) CPU [2%@729,off] "
            "EMC_FREQ 0% GR3D_FREQ 0% cpu@47.5C VDD_IN 5000mW/4900mW VDD_CPU_GPU_CV 800mW/810mW "
            "VDD_SOC 1200mW/1190mW",
            {"VDD_IN": 5000.0, "VDD_CPU_GPU_CV": 800.0, "VDD_SOC": 1200.0},
        ),
        # JetPack 4 (Nano): no unit, values in mW.
        (
            "RAM 1500/3964MB (lfb 100x4MB) CPU [5%@102,3%@102] EMC_FREQ 0% GR3D_FREQ 0% PLL@29C "
            "POM_5V_IN 2796/2796 POM_5V_GPU 0/0 POM_5V_CPU 447/447",
            {"POM_5V_IN": 2796.0, "POM_5V_GPU": 0.0, "POM_5V_CPU": 447.0},
        ),
        ("RAM 1500/3964MB (lfb 100x4MB) CPU [5%@102]", {}),
    ],
)
def test_parse_tegrastats(line: str, expected: dict[str, float]) -> None:
    assert parse_tegrastats_line(line) == expected


def test_total_without_input_rail_sums() -> None:
    # Xavier reports GPU/CPU/SOC/... rails but no single module-input rail.
    assert total_power_mw(parse_tegrastats_line("GPU 100/100 CPU 311/311 SOC 1092/1092")) == 1503.0


class _ScriptedSource:
    """A power source whose readings are a fixed script (the sampler's averaging is under test)."""

    kind = "scripted"

    def __init__(self, values: list[float]) -> None:
        self._values = itertools.cycle(values)

    def read(self) -> dict[str, float]:
        return {"VDD_IN": next(self._values)}


def test_sampler_averages_and_energy() -> None:
    ticks = itertools.count()
    source = _ScriptedSource([4000.0, 6000.0])
    sampler = PowerSampler(source, interval_s=0.001, clock=lambda: float(next(ticks)))
    with sampler:
        while len(sampler._samples) < 4:
            time.sleep(0.001)
    summary = sampler.summary()
    assert summary is not None and summary.samples >= 5
    assert 4000.0 <= summary.avg_total_mw <= 6000.0
    # 5 W for 2 s over 100 frames is 100 mJ per frame.
    summary.avg_total_mw = 5000.0
    assert summary.energy_per_item_mj(2.0, 100) == pytest.approx(100.0)


def test_tegrastats_source_reads_lines_and_stops_its_process(tmp_path: Path) -> None:
    """The subprocess plumbing, with a script that prints JetPack 6 tegrastats lines (no Jetson here)."""
    from edgeseg.power import TegrastatsPowerSource

    script = tmp_path / "tegrastats"
    script.write_text("#!/bin/sh\nwhile true; do echo 'RAM 1/2MB VDD_IN 4200mW/4100mW VDD_SOC 900mW/880mW'; "
                      "sleep 0.02; done\n")
    script.chmod(0o755)
    source = TegrastatsPowerSource(interval_ms=20, command=str(script))
    try:
        deadline = time.monotonic() + 5
        while not source.read() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert source.read() == {"VDD_IN": 4200.0, "VDD_SOC": 900.0}
    finally:
        source.close()
    assert source._proc.poll() is not None  # the process it started is gone
