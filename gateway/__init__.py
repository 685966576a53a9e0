"""The alatau-gateway service: config, poller, store, uploader, control, health, CLI."""
