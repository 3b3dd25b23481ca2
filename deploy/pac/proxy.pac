// Proxy auto-configuration for sites that use the PHI egress gateway as an explicit proxy
// (deploy/README.md). Serve it as application/x-ns-proxy-autoconfig, e.g.
// http://wpad.hospital.example/proxy.pac, and point browsers and clients at it.
//
// DIRECT BYPASSES INSPECTION: nothing sent DIRECT is judged, recorded or blocked by the
// gateway. Keep the DIRECT list to the hospital's own networks, and block outbound traffic
// at the firewall for everything but the gateways, so that a client ignoring this file
// cannot leave either.
function FindProxyForURL(url, host) {
    // Plain host names (no dot) and the site's own domains: intranet.
    if (isPlainHostName(host) ||
        shExpMatch(host, "*.local") ||
        dnsDomainIs(host, ".hospital.example")) {
        return "DIRECT";
    }
    // Literal private addresses only: resolving every name here (isInNet on a name) would
    // cost a DNS lookup per request and let a public name that resolves to a private address
    // decide the route.
    if (/^\d+\.\d+\.\d+\.\d+$/.test(host) &&
        (isInNet(host, "10.0.0.0", "255.0.0.0") ||
         isInNet(host, "172.16.0.0", "255.240.0.0") ||
         isInNet(host, "192.168.0.0", "255.255.0.0") ||
         isInNet(host, "127.0.0.0", "255.0.0.0"))) {
        return "DIRECT";
    }
    // Everything else through the gateways: the VIP of the HAProxy pair, then, should the
    // whole pair be unreachable, the second site's gateways. Never a final DIRECT.
    return "PROXY 10.20.0.10:8080; PROXY 10.30.0.10:8080";
}
