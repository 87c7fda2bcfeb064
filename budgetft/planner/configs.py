"""Trial configurations: sampled from each method's search space with the job's seed.

The first trial of each method is the method's default point (a known-good setting): under
ASHA it meets no competition at its rungs and runs longest, so it should be the best guess.
"""

from __future__ import annotations

import math
import random
import zlib

from budgetft import methods
from budgetft.search_space import Param, parse_space, point


def sample(param: Param, rng: random.Random):
    if param.kind == "fixed":
        return param.values[0]
    if param.kind == "choice":
        return rng.choice(param.values)
    low, high = param.values
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
        config.update({name: sample(p, rng) for name, p in space.items()})
        key = tuple(sorted(config.items()))
        if key not in seen:  # a small discrete space may not have n distinct points
            seen.add(key)
            configs.append(config)
    return configs
