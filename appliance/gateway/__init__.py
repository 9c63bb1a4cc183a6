"""The asyncio front for long-lived connections: log follows now, /derp and terminals next."""
