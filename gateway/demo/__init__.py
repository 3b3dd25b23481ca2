"""``phi-gateway demo``: the gateway, a receiver abroad on loopback, synthetic traffic."""
