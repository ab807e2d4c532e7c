"""What each kind of virtual device exposes over GATT: a table, one entry per kind.

Services and characteristics follow /work/shared/reference/ble-gatt.md section 1
(Bluetooth SIG service definitions).  Every device also carries Battery
(0x180F), Device Information (0x180A) and Current Time (0x1805).  A
characteristic that notifies or indicates gets a CCCD (0x2902) descriptor.
"""

from __future__ import annotations

from dataclasses import dataclass

from homeward.kinds import Kind

# Services
BLOOD_PRESSURE_SERVICE = 0x1810
PULSE_OXIMETER_SERVICE = 0x1822
HEALTH_THERMOMETER_SERVICE = 0x1809
WEIGHT_SCALE_SERVICE = 0x181D
GLUCOSE_SERVICE = 0x1808
BATTERY_SERVICE = 0x180F
DEVICE_INFORMATION_SERVICE = 0x180A
CURRENT_TIME_SERVICE = 0x1805

# Characteristics
BLOOD_PRESSURE_MEASUREMENT = 0x2A35
BLOOD_PRESSURE_FEATURE = 0x2A49
PLX_SPOT_CHECK = 0x2A5E
PLX_CONTINUOUS = 0x2A5F
PLX_FEATURES = 0x2A60
TEMPERATURE_MEASUREMENT = 0x2A1C
TEMPERATURE_TYPE = 0x2A1D
WEIGHT_MEASUREMENT = 0x2A9D
WEIGHT_SCALE_FEATURE = 0x2A9E
GLUCOSE_MEASUREMENT = 0x2A18
GLUCOSE_CONTEXT = 0x2A34
GLUCOSE_FEATURE = 0x2A51
RECORD_ACCESS_CONTROL_POINT = 0x2A52
BATTERY_LEVEL = 0x2A19
MANUFACTURER_NAME = 0x2A29
MODEL_NUMBER = 0x2A24
SERIAL_NUMBER = 0x2A25
FIRMWARE_REVISION = 0x2A26
CURRENT_TIME = 0x2A2B

CCCD = 0x2902

READ = "read"
WRITE = "write"
NOTIFY = "notify"
INDICATE = "indicate"


def uuid16(value: int) -> str:
    """The 128-bit form bleak uses for a 16-bit SIG UUID (reference section 1.0)."""
    return f"0000{value:04x}-0000-1000-8000-00805f9b34fb"


@dataclass(frozen=True, slots=True)
class CharacteristicSpec:
    uuid16: int
    properties: tuple[str, ...]

    @property
    def subscribable(self) -> bool:
        return NOTIFY in self.properties or INDICATE in self.properties


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    uuid16: int
    characteristics: tuple[CharacteristicSpec, ...]


@dataclass(frozen=True, slots=True)
class DeviceProfile:
    kind: Kind
    model: str
    health_service: ServiceSpec
    #: where new and stored measurements are sent
    measurement: int
    #: stored records are fetched by the client through RACP (0x2A52); the
    #: others push what they hold as soon as the client subscribes and forget
    #: each record once its indication is confirmed (store and forward).
    racp: bool

    @property
    def services(self) -> tuple[ServiceSpec, ...]:
        return (self.health_service, *COMMON_SERVICES)

    @property
    def advertised_service(self) -> str:
        return uuid16(self.health_service.uuid16)


def _c(uuid: int, *properties: str) -> CharacteristicSpec:
    return CharacteristicSpec(uuid, properties)


COMMON_SERVICES = (
    ServiceSpec(BATTERY_SERVICE, (_c(BATTERY_LEVEL, READ, NOTIFY),)),
    ServiceSpec(
        DEVICE_INFORMATION_SERVICE,
        (
            _c(MANUFACTURER_NAME, READ),
            _c(MODEL_NUMBER, READ),
            _c(SERIAL_NUMBER, READ),
            _c(FIRMWARE_REVISION, READ),
        ),
    ),
    # Current Time: Read + Notify mandatory, Write optional (reference section 1.7).
    ServiceSpec(CURRENT_TIME_SERVICE, (_c(CURRENT_TIME, READ, WRITE, NOTIFY),)),
)

PROFILES: dict[Kind, DeviceProfile] = {
    Kind.BLOOD_PRESSURE: DeviceProfile(
        Kind.BLOOD_PRESSURE,
        "HW-BP1 cuff",
        ServiceSpec(
            BLOOD_PRESSURE_SERVICE,
            (_c(BLOOD_PRESSURE_MEASUREMENT, INDICATE), _c(BLOOD_PRESSURE_FEATURE, READ)),
        ),
        BLOOD_PRESSURE_MEASUREMENT,
        racp=False,
    ),
    Kind.SPO2: DeviceProfile(
        Kind.SPO2,
        "HW-OX1 oximeter",
        ServiceSpec(
            PULSE_OXIMETER_SERVICE,
            (
                _c(PLX_SPOT_CHECK, INDICATE),
                _c(PLX_CONTINUOUS, NOTIFY),
                _c(PLX_FEATURES, READ),
                _c(RECORD_ACCESS_CONTROL_POINT, WRITE, INDICATE),
            ),
        ),
        PLX_SPOT_CHECK,
        racp=True,
    ),
    Kind.TEMPERATURE: DeviceProfile(
        Kind.TEMPERATURE,
        "HW-TH1 thermometer",
        ServiceSpec(
            HEALTH_THERMOMETER_SERVICE,
            (_c(TEMPERATURE_MEASUREMENT, INDICATE), _c(TEMPERATURE_TYPE, READ)),
        ),
        TEMPERATURE_MEASUREMENT,
        racp=False,
    ),
    Kind.WEIGHT: DeviceProfile(
        Kind.WEIGHT,
        "HW-SC1 scale",
        ServiceSpec(
            WEIGHT_SCALE_SERVICE,
            (_c(WEIGHT_MEASUREMENT, INDICATE), _c(WEIGHT_SCALE_FEATURE, READ)),
        ),
        WEIGHT_MEASUREMENT,
        racp=False,
    ),
    Kind.GLUCOSE: DeviceProfile(
        Kind.GLUCOSE,
        "HW-GL1 glucose meter",
        ServiceSpec(
            GLUCOSE_SERVICE,
            (
                _c(GLUCOSE_MEASUREMENT, NOTIFY),
                _c(GLUCOSE_CONTEXT, NOTIFY),
                _c(GLUCOSE_FEATURE, READ),
                _c(RECORD_ACCESS_CONTROL_POINT, WRITE, INDICATE),
            ),
        ),
        GLUCOSE_MEASUREMENT,
        racp=True,
    ),
}
