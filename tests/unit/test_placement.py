"""One placement rule: the claim's SQL and the Python check agree on every job and node
(generated), and the rule is the one a job's config states."""

from __future__ import annotations

import sqlite3

from hypothesis import given, settings
from hypothesis import strategies as st

from gridx.coordinator.db.placement import MATCHES, columns, node_params
from gridx.schemas.agent import SANDBOX_LEVELS, Capabilities
from gridx.schemas.jobs import JobConfig
from gridx.schemas.placement import Placement

ARCHES = st.sampled_from(["x86_64", "aarch64", ""])
placements = st.builds(
    Placement,
    require_docker=st.booleans(),
    min_sandbox=st.sampled_from(SANDBOX_LEVELS),
    require_gpu=st.booleans(),
    min_cpus=st.integers(0, 8),
    min_memory_mb=st.integers(0, 4096),
    arch=st.none() | ARCHES,
)
nodes = st.builds(
    Capabilities,
    docker=st.booleans(),
    sandbox=st.sampled_from(SANDBOX_LEVELS),
    gpus=st.integers(0, 2),
    cpus=st.integers(0, 8),
    memory_mb=st.integers(0, 4096),
    arch=ARCHES,
)
TABLE = """CREATE TABLE jobs (require_docker INTEGER, min_sandbox INTEGER, require_gpu INTEGER,
    min_cpus INTEGER, min_memory_mb INTEGER, arch TEXT)"""


@settings(max_examples=400, deadline=None)
@given(placement=placements, caps=nodes)
def test_the_claim_sql_and_the_python_check_agree(placement: Placement, caps: Capabilities) -> None:
    db = sqlite3.connect(":memory:")
    db.execute(TABLE)
    cols = columns(placement)
    db.execute(
        f"INSERT INTO jobs ({', '.join(cols)}) VALUES ({', '.join(':' + c for c in cols)})", cols
    )
    matched = db.execute(f"SELECT count(*) FROM jobs j WHERE {MATCHES}", node_params(caps))
    assert bool(matched.fetchone()[0]) == placement.allows(caps)


def test_a_job_config_states_its_placement() -> None:
    config = JobConfig(require_gpu=True, min_sandbox="strong", min_cpus=4, arch="aarch64")
    assert config.placement == Placement(
        require_gpu=True, min_sandbox="strong", min_cpus=4, arch="aarch64"
    )
    weak = Capabilities(gpus=1, sandbox="weak", cpus=8, arch="aarch64")
    assert not config.placement.allows(weak)
    assert config.placement.allows(Capabilities(gpus=1, sandbox="strong", cpus=4, arch="aarch64"))
    caps = Capabilities(cpus=4, memory_mb=8000, sandbox="strong", arch="aarch64")
    for refused in (
        JobConfig(require_docker=True),
        JobConfig(require_gpu=True),
        JobConfig(min_memory_mb=9000),
        JobConfig(arch="x86_64"),
    ):
        assert not refused.placement.allows(caps)
