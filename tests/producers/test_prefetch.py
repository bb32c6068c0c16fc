"""Reading in a child process changes nothing but the speed."""

from __future__ import annotations

import pytest
from driftrec.core.errors import ConfigError
from driftrec.producers.prefetch import prefetched
from driftrec.producers.replay import encode_records
from driftrec.producers.sources import open_source

OPTIONS = {"n_events": "3000", "seed": "5"}


def test_prefetched_equals_reading_in_process() -> None:
    local = list(encode_records(open_source("default", "synthetic", options=OPTIONS)))
    remote = list(prefetched("default", "synthetic", options=OPTIONS))
    assert remote == local
    assert sum(kind not in {"item", "rejected"} for kind, *_ in remote) == 3000


def test_errors_of_the_source_reach_the_caller() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        list(prefetched("/nonexistent/events.csv", "csv"))
