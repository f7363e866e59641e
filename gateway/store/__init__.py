"""Persistence: tables, repositories, inbox/outbox, the audit chain and migrations."""
