"""DICOM over TCP (DIMSE on the upper layer protocol): associations followed PDU by PDU and
each data set judged as a DICOM dataset (see session.py)."""

from gateway.dimse.pdu import starts_like_associate_rq
from gateway.dimse.session import DimseSession

__all__ = ["DimseSession", "starts_like_associate_rq"]
