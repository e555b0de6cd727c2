"""Started simulators and clients pointed at them, over real loopback HTTP."""

from collections.abc import AsyncIterator

import pytest

from controller.clients.airtable import AirtableClient
from controller.clients.nca import NcaClient
from controller.clients.spaces import SpacesClient
from sandbox import AirtableSimulator, NcaSimulator, SpacesSimulator

AIRTABLE_KEY = "patClientTestKey.000000"
NCA_KEY = "nca-client-test-key"
BASE = "appBASEaaaaaaaaaa"


@pytest.fixture
async def spaces_sim() -> AsyncIterator[SpacesSimulator]:
    async with SpacesSimulator() as sim:
        yield sim


@pytest.fixture
async def spaces(spaces_sim: SpacesSimulator) -> AsyncIterator[SpacesClient]:
    client = SpacesClient(spaces_sim.base_url, timeout=0.5)
    yield client
    await client.close()


@pytest.fixture
async def nca_sim(spaces_sim: SpacesSimulator) -> AsyncIterator[NcaSimulator]:
    async with NcaSimulator(NCA_KEY, spaces=spaces_sim, spaces_base_url=spaces_sim.base_url) as sim:
        yield sim


@pytest.fixture
async def nca(nca_sim: NcaSimulator) -> AsyncIterator[NcaClient]:
    client = NcaClient(nca_sim.url, NCA_KEY, timeout=0.5)
    yield client
    await client.close()


@pytest.fixture
async def airtable_sim() -> AsyncIterator[AirtableSimulator]:
    async with AirtableSimulator(AIRTABLE_KEY, rate_limit_per_s=5, penalty_s=0.6) as sim:
        yield sim


@pytest.fixture
async def airtable(airtable_sim: AirtableSimulator) -> AsyncIterator[AirtableClient]:
    client = AirtableClient(
        api_key=AIRTABLE_KEY,
        base_id=BASE,
        api_url=airtable_sim.url,
        requests_per_second=4.5,
        penalty_seconds=0.6,
        timeout=(1, 1),
        backoff_base=0.05,
        backoff_cap=0.2,
    )
    yield client
    await client.close()
