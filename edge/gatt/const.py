"""Bluetooth SIG assigned numbers used by the GATT decoders.

16-bit UUIDs as ints (what :func:`edge.gatt.decode` takes) and the 128-bit
string form bleak uses.  Source: Bluetooth SIG GATT XML definitions
(github.com/oesmith/gatt-xml), summarised in
shared/reference/ble-gatt.md section 1.
"""

from __future__ import annotations

from typing import Final

#: ``0000XXXX-0000-1000-8000-00805f9b34fb`` -- Bluetooth Base UUID (Core spec Vol 3 Part B 2.5.1).
BASE_UUID_SUFFIX: Final = "-0000-1000-8000-00805f9b34fb"


def uuid128(uuid16: int) -> str:
    """The 128-bit string form of a 16-bit SIG UUID, lower case (as bleak reports it)."""
    if not 0 <= uuid16 <= 0xFFFF:
        raise ValueError(f"not a 16-bit UUID: {uuid16!r}")
    return f"0000{uuid16:04x}{BASE_UUID_SUFFIX}"


def uuid16(uuid: str) -> int | None:
    """The 16-bit UUID inside a SIG 128-bit UUID string, or None for a vendor UUID."""
    text = uuid.lower()
    if len(text) == 36 and text.startswith("0000") and text.endswith(BASE_UUID_SUFFIX):
        try:
            return int(text[4:8], 16)
        except ValueError:
            return None
    return None


# --- services -----------------------------------------------------------------------------
CURRENT_TIME_SERVICE: Final = 0x1805
GLUCOSE_SERVICE: Final = 0x1808
HEALTH_THERMOMETER_SERVICE: Final = 0x1809
DEVICE_INFORMATION_SERVICE: Final = 0x180A
BATTERY_SERVICE: Final = 0x180F
BLOOD_PRESSURE_SERVICE: Final = 0x1810
WEIGHT_SCALE_SERVICE: Final = 0x181D
PULSE_OXIMETER_SERVICE: Final = 0x1822

# --- characteristics ----------------------------------------------------------------------
# Blood Pressure Service
BLOOD_PRESSURE_MEASUREMENT: Final = 0x2A35
INTERMEDIATE_CUFF_PRESSURE: Final = 0x2A36
BLOOD_PRESSURE_FEATURE: Final = 0x2A49
# Pulse Oximeter Service
PLX_SPOT_CHECK_MEASUREMENT: Final = 0x2A5E
PLX_CONTINUOUS_MEASUREMENT: Final = 0x2A5F
PLX_FEATURES: Final = 0x2A60
# Health Thermometer Service
TEMPERATURE_MEASUREMENT: Final = 0x2A1C
TEMPERATURE_TYPE: Final = 0x2A1D
# Weight Scale Service
WEIGHT_MEASUREMENT: Final = 0x2A9D
WEIGHT_SCALE_FEATURE: Final = 0x2A9E
# Glucose Service
GLUCOSE_MEASUREMENT: Final = 0x2A18
GLUCOSE_MEASUREMENT_CONTEXT: Final = 0x2A34
RECORD_ACCESS_CONTROL_POINT: Final = 0x2A52
# Time
DATE_TIME: Final = 0x2A08
CURRENT_TIME: Final = 0x2A2B
# Battery
BATTERY_LEVEL: Final = 0x2A19
# Device Information Service
SYSTEM_ID: Final = 0x2A23
MODEL_NUMBER_STRING: Final = 0x2A24
SERIAL_NUMBER_STRING: Final = 0x2A25
FIRMWARE_REVISION_STRING: Final = 0x2A26
HARDWARE_REVISION_STRING: Final = 0x2A27
SOFTWARE_REVISION_STRING: Final = 0x2A28
MANUFACTURER_NAME_STRING: Final = 0x2A29
PNP_ID: Final = 0x2A50

# Descriptor
CLIENT_CHARACTERISTIC_CONFIGURATION: Final = 0x2902
#: CCCD values (little-endian uint16): enable notifications / indications / neither.
CCCD_NOTIFY: Final = b"\x01\x00"
CCCD_INDICATE: Final = b"\x02\x00"
CCCD_DISABLE: Final = b"\x00\x00"

#: Human-readable names, for logs and error messages.
CHARACTERISTIC_NAMES: Final[dict[int, str]] = {
    BLOOD_PRESSURE_MEASUREMENT: "Blood Pressure Measurement",
    INTERMEDIATE_CUFF_PRESSURE: "Intermediate Cuff Pressure",
    BLOOD_PRESSURE_FEATURE: "Blood Pressure Feature",
    PLX_SPOT_CHECK_MEASUREMENT: "PLX Spot-Check Measurement",
    PLX_CONTINUOUS_MEASUREMENT: "PLX Continuous Measurement",
    PLX_FEATURES: "PLX Features",
    TEMPERATURE_MEASUREMENT: "Temperature Measurement",
    TEMPERATURE_TYPE: "Temperature Type",
    WEIGHT_MEASUREMENT: "Weight Measurement",
    WEIGHT_SCALE_FEATURE: "Weight Scale Feature",
    GLUCOSE_MEASUREMENT: "Glucose Measurement",
    GLUCOSE_MEASUREMENT_CONTEXT: "Glucose Measurement Context",
    RECORD_ACCESS_CONTROL_POINT: "Record Access Control Point",
    DATE_TIME: "Date Time",
    CURRENT_TIME: "Current Time",
    BATTERY_LEVEL: "Battery Level",
    SYSTEM_ID: "System ID",
    MODEL_NUMBER_STRING: "Model Number String",
    SERIAL_NUMBER_STRING: "Serial Number String",
    FIRMWARE_REVISION_STRING: "Firmware Revision String",
    HARDWARE_REVISION_STRING: "Hardware Revision String",
    SOFTWARE_REVISION_STRING: "Software Revision String",
    MANUFACTURER_NAME_STRING: "Manufacturer Name String",
    PNP_ID: "PnP ID",
}
