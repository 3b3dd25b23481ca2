"""Every audit event streamed to the security team's SIEM (docs/siem.md).

``trail`` reads events back out of the audit trail by chain and keeps each output's durable
cursor, ``formats`` turns a row into CEF, OCSF, Splunk HEC or plain JSON, ``transport`` sends
them (syslog, HTTP, a file) and ``forwarder`` runs one thread per output. Delivery is driven
by the trail, never by the request path: the proxy does not wait for a SIEM.
"""
