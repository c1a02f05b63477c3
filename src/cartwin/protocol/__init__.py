"""The trial protocol: schema, loading and validation."""

from cartwin.protocol.load import LoadedProtocol, ProtocolError, load_protocol, parse_protocol, schedule_days
from cartwin.protocol.schema import Protocol

__all__ = ["LoadedProtocol", "Protocol", "ProtocolError", "load_protocol", "parse_protocol", "schedule_days"]
