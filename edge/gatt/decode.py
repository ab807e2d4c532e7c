"""The single entry point: characteristic UUID -> parser, as a table."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Final

from . import const
from .blood_pressure import (
    decode_blood_pressure_feature,
    decode_blood_pressure_measurement,
    decode_intermediate_cuff_pressure,
)
from .device_info import (
    STRING_NAMES,
    decode_battery_level,
    decode_pnp_id,
    decode_string,
    decode_system_id,
)
from .errors import GattParseError
from .fields import Bytes
from .glucose import decode_glucose_context, decode_glucose_measurement
from .pulse_oximeter import decode_plx_continuous, decode_plx_features, decode_plx_spot_check
from .racp import decode_racp
from .results import GattResult
from .thermometer import decode_temperature_measurement, decode_temperature_type
from .time_service import decode_current_time, decode_date_time
from .weight_scale import decode_weight_measurement, decode_weight_scale_feature

_LOGGER = logging.getLogger(__name__)

Decoder = Callable[[Bytes], GattResult]

DECODERS: Final[dict[int, Decoder]] = {
    const.BLOOD_PRESSURE_MEASUREMENT: decode_blood_pressure_measurement,
    const.INTERMEDIATE_CUFF_PRESSURE: decode_intermediate_cuff_pressure,
    const.BLOOD_PRESSURE_FEATURE: decode_blood_pressure_feature,
    const.PLX_SPOT_CHECK_MEASUREMENT: decode_plx_spot_check,
    const.PLX_CONTINUOUS_MEASUREMENT: decode_plx_continuous,
    const.PLX_FEATURES: decode_plx_features,
    const.TEMPERATURE_MEASUREMENT: decode_temperature_measurement,
    const.TEMPERATURE_TYPE: decode_temperature_type,
    const.WEIGHT_MEASUREMENT: decode_weight_measurement,
    const.WEIGHT_SCALE_FEATURE: decode_weight_scale_feature,
    const.GLUCOSE_MEASUREMENT: decode_glucose_measurement,
    const.GLUCOSE_MEASUREMENT_CONTEXT: decode_glucose_context,
    const.RECORD_ACCESS_CONTROL_POINT: decode_racp,
    const.DATE_TIME: decode_date_time,
    const.CURRENT_TIME: decode_current_time,
    const.BATTERY_LEVEL: decode_battery_level,
    const.SYSTEM_ID: decode_system_id,
    const.PNP_ID: decode_pnp_id,
    **{uuid: partial(decode_string, uuid) for uuid in STRING_NAMES},
}

#: Every characteristic :func:`decode` accepts.
SUPPORTED_CHARACTERISTICS: Final = frozenset(DECODERS)
#: Characteristics whose result is a storable reading (Measurement) -- glucose may
#: also give a ControlSolution.
MEASUREMENT_CHARACTERISTICS: Final = frozenset({
    const.BLOOD_PRESSURE_MEASUREMENT,
    const.PLX_SPOT_CHECK_MEASUREMENT,
    const.PLX_CONTINUOUS_MEASUREMENT,
    const.TEMPERATURE_MEASUREMENT,
    const.WEIGHT_MEASUREMENT,
    const.GLUCOSE_MEASUREMENT,
})


def decode(characteristic: int, data: Bytes) -> GattResult:
    """Decode the value of a GATT characteristic (16-bit UUID) into a typed result.

    Accepts bytes, bytearray (what bleak delivers) or memoryview.  Raises
    :class:`GattParseError` with a reason for bytes it cannot accept and for an
    unsupported characteristic; never IndexError or struct.error.
    """
    decoder = DECODERS.get(characteristic)
    if decoder is None:
        raise GattParseError(f"unsupported characteristic 0x{characteristic:04X}")
    try:
        return decoder(data)
    except GattParseError as err:
        if _LOGGER.isEnabledFor(logging.DEBUG):
            _LOGGER.debug("0x%04X rejected (%s): %s", characteristic, err, bytes(data).hex())
        raise
