"""Trial configurations: the method's known-good default first, then samples around it.

The first trial of each method is the method's default point (a known-good setting, with its
source in the method's module): under ASHA it meets no competition at its rungs and runs
longest, so it should be the best guess. Further trials sample around it rather than uniformly
over the space: with few affordable trainings, search around an expert prior beats uniform
search (PriorBand, 2023). Continuous parameters move by a factor of e^N(0, 0.6) (x0.55..x1.8
for one standard deviation) within the space's range; a choice keeps the default half the time.
"""

from __future__ import annotations

import math
import random
import zlib

from budgetft import methods
from budgetft.search_space import Param, parse_space, point


SPREAD = 0.6  # standard deviation of a sample around the default, in log units


def sample(param: Param, rng: random.Random, around=None):
    """A value of `param`: near `around` (the default) when given, else uniform over its space."""
    if param.kind == "fixed":
        return param.values[0]
    if param.kind == "choice":
        if around in param.values and rng.random() < 0.5:
            return around
        return rng.choice(param.values)
    low, high = param.values
    if around is not None and isinstance(around, (int, float)) and low <= around <= high:
        if param.kind == "randint":
            return min(high, max(low, round(around * math.exp(rng.gauss(0.0, SPREAD)))))
        if param.kind == "loguniform" or around > 0:
            return min(high, max(low, around * math.exp(rng.gauss(0.0, SPREAD))))
        return min(high, max(low, around + rng.gauss(0.0, SPREAD * (high - low) / 4)))
    if param.kind == "loguniform":
        return math.exp(rng.uniform(math.log(low), math.log(high)))
    if param.kind == "randint":
        return rng.randint(low, high)
    return rng.uniform(low, high)


def trial_configs(space_raw: dict, method_name: str, n: int, seed: int, tried: list[dict] = ()) -> list[dict]:
    """n distinct configurations, none of them one already `tried` (by an earlier round or
    session of the run): the default point first if it is new, then samples."""
    method = methods.get(method_name)
    space = parse_space(space_raw)
    rng = random.Random(seed * 1_000_003 + zlib.crc32(method.name.encode()))
    seen = {tuple(sorted(c.items())) for c in tried}
    configs = []
    default = point(space, method.defaults)
    if tuple(sorted(default.items())) not in seen:
        configs.append(default)
        seen.add(tuple(sorted(default.items())))
    attempts = 0
    while len(configs) < n and attempts < 50 * n:
        attempts += 1
        config = dict(method.defaults)
        config.update({name: sample(p, rng, around=default.get(name)) for name, p in space.items()})
        key = tuple(sorted(config.items()))
        if key not in seen:  # a small discrete space may not have n distinct points
            seen.add(key)
            configs.append(config)
    return configs
