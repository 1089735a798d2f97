"""Choosing how many drafted tokens to verify: the hardware-aware prefix scheduler (paper, Algorithm 1),
target cost profiles and online per-slot acceptance estimates. The policy classes that use them live
in :mod:`dspark_hf.verification.policies`."""

from dspark_hf.verification.scheduling.acceptance_estimates import SlotAcceptanceEstimator
from dspark_hf.verification.scheduling.cost_profile import CostProfile, ProfileMissingError, find_profile, profile_key, profile_path, save_profile
from dspark_hf.verification.scheduling.prefix_scheduler import cumulative_survival, expected_tokens, schedule_prefixes

__all__ = [
    "CostProfile",
    "ProfileMissingError",
    "SlotAcceptanceEstimator",
    "cumulative_survival",
    "expected_tokens",
    "find_profile",
    "profile_key",
    "profile_path",
    "save_profile",
    "schedule_prefixes",
]
