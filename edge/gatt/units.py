"""Device units to the canonical units of homeward.kinds.METRICS, and their rounding.

A value the device sent in the canonical unit is passed through as decoded
(the double nearest the decimal on the wire).  A converted value is rounded
to the precision below -- finer than any home device resolves, coarse
enough to drop conversion noise (120.0078 mmHg -> 120.0).
"""

from __future__ import annotations

from typing import Final

#: 1 mmHg = 133.322 387 415 Pa (conventional millimetre of mercury; NIST SP 811 B.8,
#: BIPM SI Brochure table 8): 1 mmHg = 0.133322 kPa.
KPA_PER_MMHG: Final = 0.133322387415
#: 1 lb = 0.453 592 37 kg exactly (International Yard and Pound Agreement, 1959; NIST SP 811).
KG_PER_LB: Final = 0.45359237
#: 1 in = 0.0254 m exactly (same agreement).
M_PER_INCH: Final = 0.0254
#: Molar mass of D-glucose C6H12O6, 180.156 g/mol (PubChem CID 5793);
#: hence mmol/L = mg/dL / 18.0156.
GLUCOSE_G_PER_MOL: Final = 180.156
#: Glucose Measurement concentration in kg/L: x 100 000 = mg/dL (SIG XML 0x2A18).
MG_DL_PER_KG_L: Final = 100_000.0

MMHG_DECIMALS: Final = 1
CELSIUS_DECIMALS: Final = 2  # 0.1 degF = 0.056 degC
KG_DECIMALS: Final = 3  # 0.01 lb = 4.5 g; 0.005 kg steps are exact at 3 dp
MMOL_L_DECIMALS: Final = 2  # 1 mg/dL = 0.056 mmol/L
METRE_DECIMALS: Final = 3


def kpa_to_mmhg(kpa: float) -> float:
    return round(kpa / KPA_PER_MMHG, MMHG_DECIMALS)


def fahrenheit_to_celsius(fahrenheit: float) -> float:
    return round((fahrenheit - 32.0) * 5.0 / 9.0, CELSIUS_DECIMALS)


def lb_to_kg(lb: float) -> float:
    return round(lb * KG_PER_LB, KG_DECIMALS)


def inch_to_m(inch: float) -> float:
    return round(inch * M_PER_INCH, METRE_DECIMALS)


def kg_per_l_to_mmol_per_l(kg_per_l: float) -> float:
    """kg/L -> g/L (x1000) -> mol/L (/180.156) -> mmol/L (x1000)."""
    return round(kg_per_l * 1_000_000.0 / GLUCOSE_G_PER_MOL, MMOL_L_DECIMALS)


def mg_dl_to_mmol_per_l(mg_dl: float) -> float:
    return round(mg_dl * 10.0 / GLUCOSE_G_PER_MOL, MMOL_L_DECIMALS)


def mol_per_l_to_mmol_per_l(mol_per_l: float) -> float:
    return round(mol_per_l * 1000.0, MMOL_L_DECIMALS)
