"""The numbers a simulated virtual ward is drawn from, each with where it comes from.

These are population figures for *synthetic* patients: they make a cohort look like a
caseload (so a rule's false-alert rate and workload mean something), they are not a model
of any one person.  Sources (checked against the publication, not a secondary summary):

- **Blood pressure, treated hypertension at home.**  NICE NG136 (2019, updated 2023)
  1.4: the home (HBPM) target is below 135/85 mmHg for people under 80 and below
  145/85 mmHg at 80 and over.  Baselines are drawn around 136/82 SD 10/7, so about half
  the hypertensive caseload sits above target (an engineering choice, not a survey figure).
- **Day-to-day variation of home BP.**  An engineering estimate: within-person SD of
  7.5 mmHg systolic and 4.5 diastolic, in the range the HBPM variability literature
  reports; it is the figure a threshold rule's false-alert rate is most sensitive to.
- **Cuff measurement error.**  ISO 81060-2:2018 (validation of automated
  sphygmomanometers): a validated cuff has a mean error within 5 mmHg and an SD within
  8 mmHg; validated devices sit well inside that, we use SD 4 / 3 mmHg.
- **Pulse rate.**  Nanchen, Heart 2018;104:1048-1049 ("Resting heart rate: what is
  normal?"): 60-100 /min, population mean about 70 /min, SD about 10.
- **SpO2.**  BTS Guideline for oxygen use in healthcare and emergency settings
  (O'Driscoll et al., Thorax 2017;72:i1-i90) 6.1: a normal SpO2 is 96-98 % in young
  adults and slightly lower in people over 70; in stable COPD commonly 92-95 % (the
  guideline's target for those at risk of hypercapnic failure is 88-92 %).
- **Oximeter error.**  ISO 80601-2-61:2017: a pulse oximeter's accuracy Arms must be 4 %
  or better over 70-100 %; finger-tip devices sold for home use test at about 2 %
  (we use SD 1.0 % device error on top of 0.6 % biological variation).
- **Body temperature.**  Obermeyer, Samra and Mullainathan, BMJ 2017;359:j5468: mean
  oral temperature of adult outpatients 36.6 degC, individual baselines SD about 0.2 degC;
  circadian amplitude about 0.25 degC with the trough in the early morning and the peak in
  the late afternoon (Refinetti and Menaker, Physiol Behav 1992;51:613-637).
- **Thermometer error.**  ISO 80601-2-56:2017: laboratory accuracy within 0.3 degC for a
  clinical thermometer; we use SD 0.1 degC.
- **Body weight in heart failure.**  Day-to-day fluctuation of a stable patient's
  morning weight: an engineering estimate of 0.4 kg SD (food, fluid, clothing, scale
  placement).  The label of a decompensation follows ESC Heart Failure Association
  advice (heartfailurematters.org): a rise of more than 2 kg in 3 days.
- **Blood glucose in insulin-treated diabetes.**  NICE NG17 (type 1, 2015, updated 2022)
  1.6: targets 5-7 mmol/L on waking and 4-7 mmol/L before meals; hypoglycaemia is below
  4.0 mmol/L, and below 3.0 mmol/L is clinically significant (level 2; International
  Hypoglycaemia Study Group, Diabetes Care 2017;40:155-157).
- **Glucose meter error.**  ISO 15197:2013: 95 % of results within 0.83 mmol/L below
  5.55 mmol/L and within 15 % above; we use SD 0.4 mmol/L or 7.5 %.
- **Adherence.**  Chaudhry et al., N Engl J Med 2010;363:2301-2309 (Tele-HF): by the end
  of the trial about 55 % of patients still used the system at least 3 days a week;
  programmes with a clinical team behind them report 80-90 % of scheduled readings in
  the first month.  Per-patient adherence is drawn from Beta(8.5, 1.5) (mean 85 %).
"""

from __future__ import annotations

from dataclasses import dataclass

from homeward.kinds import Kind


@dataclass(frozen=True, slots=True)
class Normal:
    """A normal distribution, truncated to [lo, hi] by the caller's clamp."""

    mean: float
    sd: float
    lo: float
    hi: float


#: Per-condition baseline distributions, per metric (the patient's own steady state).
BASELINE: dict[str, dict[str, Normal]] = {
    "hypertension": {
        "systolic": Normal(136, 10, 110, 165), "diastolic": Normal(82, 7, 60, 100),
        "pulse_rate": Normal(70, 10, 50, 95), "spo2": Normal(97, 1.0, 95, 99),
        "body_temperature": Normal(36.6, 0.2, 36.0, 37.2),
        "body_weight": Normal(84, 15, 50, 140), "blood_glucose": Normal(6.0, 0.6, 4.8, 8.0),
    },
    "heart_failure": {
        "systolic": Normal(122, 12, 100, 150), "diastolic": Normal(72, 8, 55, 90),
        "pulse_rate": Normal(72, 9, 55, 95), "spo2": Normal(96, 1.2, 94, 99),
        "body_temperature": Normal(36.6, 0.2, 36.0, 37.2),
        "body_weight": Normal(82, 16, 50, 140), "blood_glucose": Normal(6.2, 0.7, 4.8, 8.5),
    },
    "copd": {
        "systolic": Normal(130, 12, 105, 160), "diastolic": Normal(78, 8, 60, 95),
        "pulse_rate": Normal(80, 9, 60, 100), "spo2": Normal(94, 1.2, 92, 97),
        "body_temperature": Normal(36.6, 0.2, 36.0, 37.2),
        "body_weight": Normal(74, 15, 45, 130), "blood_glucose": Normal(6.0, 0.6, 4.8, 8.0),
    },
    "diabetes": {
        "systolic": Normal(132, 11, 108, 160), "diastolic": Normal(79, 7, 60, 95),
        "pulse_rate": Normal(74, 9, 55, 95), "spo2": Normal(97, 1.0, 95, 99),
        "body_temperature": Normal(36.6, 0.2, 36.0, 37.2),
        "body_weight": Normal(90, 17, 55, 150), "blood_glucose": Normal(7.0, 1.0, 5.0, 9.5),
    },
    "post_discharge": {
        "systolic": Normal(128, 12, 105, 160), "diastolic": Normal(76, 8, 58, 95),
        "pulse_rate": Normal(76, 10, 55, 100), "spo2": Normal(96, 1.1, 94, 99),
        "body_temperature": Normal(36.6, 0.2, 36.0, 37.2),
        "body_weight": Normal(78, 15, 45, 130), "blood_glucose": Normal(6.0, 0.6, 4.8, 8.0),
    },
}

#: Within-person day-to-day (biological) variation, one SD, per metric.
BIOLOGICAL_SD: dict[str, float] = {
    "systolic": 7.5, "diastolic": 4.5, "pulse_rate": 4.0, "spo2": 0.6,
    "body_temperature": 0.12, "body_weight": 0.4, "blood_glucose": 0.9,
}

#: Device measurement error, one SD, per metric (glucose: the larger of the two).
DEVICE_SD: dict[str, float] = {
    "systolic": 4.0, "diastolic": 3.0, "pulse_rate": 2.0, "spo2": 1.0,
    "body_temperature": 0.1, "body_weight": 0.1, "blood_glucose": 0.4,
}
GLUCOSE_DEVICE_RELATIVE_SD = 0.075

#: Circadian amplitude (half of peak-to-trough) and the local hour of the peak.
CIRCADIAN: dict[str, tuple[float, float]] = {
    "systolic": (4.0, 10.0), "diastolic": (2.5, 10.0), "pulse_rate": (3.0, 15.0),
    "body_temperature": (0.25, 17.0),
}

#: Per-patient adherence: Beta(a, b), the share of scheduled readings taken.
ADHERENCE_BETA = (8.5, 1.5)
#: Of the readings taken: the share taken late (30 min to 3 h after the slot) and the
#: share repeated a few minutes later (the patient did not trust the first).
LATE_SHARE = 0.10
REPEAT_SHARE = 0.05

#: Which readings each condition's care plan asks for, at which local times (HH:MM).
#: COPD spot checks follow the oximetry-at-home pattern of three a day (NHS England
#: COVID Oximetry @home SOP); hypertension follows NICE NG136 1.2 (twice daily);
#: heart failure weighs every morning (ESC HFA) after voiding, before breakfast.
SCHEDULES: dict[str, dict[Kind, tuple[str, ...]]] = {
    "copd": {Kind.SPO2: ("08:00", "14:00", "20:00"), Kind.TEMPERATURE: ("08:00",),
             Kind.BLOOD_PRESSURE: ("08:00",)},
    "heart_failure": {Kind.WEIGHT: ("07:30",), Kind.BLOOD_PRESSURE: ("08:00", "20:00"),
                      Kind.SPO2: ("08:00",)},
    "hypertension": {Kind.BLOOD_PRESSURE: ("08:00", "20:00")},
    "diabetes": {Kind.GLUCOSE: ("07:30", "12:00", "17:30", "22:00"),
                 Kind.BLOOD_PRESSURE: ("08:00",)},
    "post_discharge": {Kind.SPO2: ("08:00", "18:00"), Kind.BLOOD_PRESSURE: ("08:00", "18:00"),
                       Kind.TEMPERATURE: ("08:00", "18:00")},
}

#: A caseload's mix of conditions (shares of the cohort).
CONDITION_MIX: dict[str, float] = {
    "copd": 0.25, "heart_failure": 0.25, "hypertension": 0.2, "diabetes": 0.15,
    "post_discharge": 0.15,
}
