"""How vLLM's two serialisers print embedding components: orjson of a numpy float32 array
(OPT_SERIALIZE_NUMPY, vLLM 0.21+) and json.dumps of tensor.tolist() (up to 0.20), for values that
are multiples of 1e-7 in [-1, 1]."""

import json
import random

import numpy as np
import orjson

rng = random.Random(20261201)
units = sorted(
    {
        0,
        1,
        -1,
        9,
        -9,
        10,
        99,
        10**7,
        -(10**7),
        *(rng.randint(-(10**7), 10**7) for _ in range(1500)),
        *(rng.randint(-(10**4), 10**4) for _ in range(300)),
    }
)
arr = np.array([u / 1e7 for u in units], dtype=np.float32)
print(
    json.dumps(
        {
            "orjson": orjson.__version__,
            "numpy": np.__version__,
            "units_of_1e-7": units,
            "orjson_float32": orjson.dumps(arr, option=orjson.OPT_SERIALIZE_NUMPY).decode(),
            "json_dumps_tolist": json.dumps(arr.tolist(), separators=(",", ":")),
        }
    )
)
