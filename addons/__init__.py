"""mitmproxy glue: the only package that imports mitmproxy."""
