"""Decode throughput on one core: ``measure_decode_rate()`` (exposed as ``homeward bench edge``).

The mix is what a hub sees: mostly PLX continuous notifications (a wearable
at 1 Hz), plus spot checks, cuffs, thermometers, scales and glucose records,
each with the optional fields real devices send.  Every vector must decode to
a Measurement; the loop calls the public :func:`edge.gatt.decode`.
"""

from __future__ import annotations

import platform
import sys
import time
from typing import Final

from edge.gatt import const
from edge.gatt.decode import decode
from edge.gatt.results import Measurement

#: (characteristic, bytes, weight in the mix)
MIX: Final[tuple[tuple[int, bytes, int], ...]] = (
    # PLX continuous: SpO2 97 %, PR 72, status 0, device/sensor status 0, PAI 5.2 %
    (const.PLX_CONTINUOUS_MEASUREMENT, bytes.fromhex("1C61004800000000000034F0"), 6),
    # PLX spot-check with time stamp 2024-03-15 08:30:05 and status from_storage
    (const.PLX_SPOT_CHECK_MEASUREMENT, bytes.fromhex("0361004800E807030F081E050002"), 1),
    # BP 120/80/93 mmHg + time stamp + pulse 60 + user 1 + status irregular pulse
    (const.BLOOD_PRESSURE_MEASUREMENT,
     bytes.fromhex("1E780050005D00E807030F081E053C00010400"), 1),
    # BP in kPa (16.0/10.7/12.4) + time stamp + pulse 60
    (const.BLOOD_PRESSURE_MEASUREMENT, bytes.fromhex("07A0F06BF07CF0E807030F081E053C00"), 1),
    # Temperature 36.7 degC + time stamp + site mouth
    (const.TEMPERATURE_MEASUREMENT, bytes.fromhex("066F0100FFE807030F081E0506"), 1),
    # Weight 72.45 kg + time stamp + user 1
    (const.WEIGHT_MEASUREMENT, bytes.fromhex("069A38E807030F081E0501"), 1),
    # Glucose seq 1, 2024-03-15 08:30:05, offset 0, 99 mg/dL capillary/finger, status 0
    (const.GLUCOSE_MEASUREMENT, bytes.fromhex("0B0100E807030F081E05000063B0110000"), 1),
)


def _workload() -> list[tuple[int, bytes]]:
    work = [(uuid, data) for uuid, data, weight in MIX for _ in range(weight)]
    for uuid, data in work:  # a broken vector would measure the error path
        if not isinstance(decode(uuid, data), Measurement):
            raise AssertionError(f"bench vector for 0x{uuid:04X} is not a reading")
    return work


def _mix_shares() -> dict[str, float]:
    total = sum(weight for _, _, weight in MIX)
    shares: dict[str, float] = {}
    for uuid, _, weight in MIX:
        key = f"0x{uuid:04X}"
        shares[key] = round(shares.get(key, 0.0) + weight / total, 3)
    return shares


def measure_decode_rate(seconds: float = 3.0) -> dict[str, object]:
    """Decode the mix in a loop for about ``seconds`` on this core; readings/s and context.

    ``readings_per_cpu_second`` divides by this process's CPU time, so other
    load on the machine does not lower it; ``readings_per_second`` is wall time.
    """
    work = _workload() * 64
    count = 0
    cpu_start = time.process_time()
    start = time.perf_counter()
    deadline = start + seconds
    now = start
    while now < deadline:
        for uuid, data in work:
            decode(uuid, data)
        count += len(work)
        now = time.perf_counter()
    elapsed = now - start
    cpu = time.process_time() - cpu_start
    return {
        # wall clock; on a busy machine the CPU figure below is the steadier one
        "readings_per_second": round(count / elapsed),
        "readings_per_cpu_second": round(count / cpu) if cpu > 0 else None,
        "cpu_seconds": round(cpu, 3),
        "readings": count,
        "seconds": round(elapsed, 3),
        "mix": _mix_shares(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "executable": sys.executable,
    }


if __name__ == "__main__":  # python -m bench.edge_decode [seconds]
    import json

    print(json.dumps(measure_decode_rate(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0),
                     indent=2))
