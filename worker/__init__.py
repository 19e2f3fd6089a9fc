"""The event worker: outbox relay to RabbitMQ, and callback/webhook delivery."""
