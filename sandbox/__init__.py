"""Loopback HTTP simulators of Airtable, NCA toolkit and DigitalOcean Spaces.

They are real aiohttp servers on 127.0.0.1, so the controller's real clients
(pyairtable, httpx) are tested over the wire, with faults injected on demand.
"""

from .airtable import AirtableSimulator
from .faults import Faults, RecordedRequest
from .formula import Formula, FormulaError
from .nca import NcaJob, NcaSimulator
from .spaces import SpacesSimulator

__all__ = [
    "AirtableSimulator",
    "Faults",
    "Formula",
    "FormulaError",
    "NcaJob",
    "NcaSimulator",
    "RecordedRequest",
    "SpacesSimulator",
]
