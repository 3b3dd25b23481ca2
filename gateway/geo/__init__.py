"""Locate stage: where is an address, legally?"""

from gateway.errors import GeoDatabaseError
from gateway.geo.database import GeoDatabaseReader
from gateway.geo.locator import Locator
from gateway.geo.resolver import Resolver

__all__ = ["GeoDatabaseError", "GeoDatabaseReader", "Locator", "Resolver"]
