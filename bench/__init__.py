"""One-command benchmark: the gateway against bare mitmdump on the same traffic."""
