"""A build run as its own process, slowed down so a test can kill it at different stages."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engine import build_index
from tests.fakes import FakeEncoder


class SlowFakeEncoder(FakeEncoder):
    def encode(self, texts: Sequence[str], **kwargs: object) -> np.ndarray:
        time.sleep(0.002 * len(texts))
        return super().encode(texts)


if __name__ == "__main__":
    index_dir, catalog = Path(sys.argv[1]), Path(sys.argv[2])
    print(build_index([catalog], index_dir, SlowFakeEncoder()).summary())
