"""Carrier adapters behind :class:`dialer.ports.Carrier` (Twilio; Asterisk and the simulator)."""
