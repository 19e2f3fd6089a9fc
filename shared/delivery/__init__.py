"""Deliveries: what an event asks to send, how it is signed and sent, and when to retry."""
