"""The event envelope and the transactional outbox."""
