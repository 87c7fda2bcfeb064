"""Hardware telemetry: what the machine is, what it costs, how busy it is, what that means
for packing trials and choosing precision, and the energy (and CO2) each trial took. Nothing
heavy (torch, pynvml, matplotlib) is imported until a function needs it."""

from budgetft.telemetry.energy import EnergyUse, energy_use
from budgetft.telemetry.hardware import GpuInfo, Hardware, HardwareError, PriceChoice, detect, local_price
from budgetft.telemetry.packing import PackingDecision, choose_packing, input_bound_warning, packing_candidates
from budgetft.telemetry.precision import Precision, apply_precision, choose_precision
from budgetft.telemetry.sampler import TelemetrySampler
from budgetft.telemetry.summary import TrialUsage, plot_utilization, read_samples, trial_usage

__all__ = [
    "EnergyUse", "energy_use",
    "GpuInfo", "Hardware", "HardwareError", "PriceChoice", "detect", "local_price",
    "PackingDecision", "choose_packing", "input_bound_warning", "packing_candidates",
    "Precision", "apply_precision", "choose_precision",
    "TelemetrySampler",
    "TrialUsage", "plot_utilization", "read_samples", "trial_usage",
]
